"""Evaluation and benchmarks (docs/eval.md).

- metrics: FAD, centroid accuracy, CCDS, recall@k, as pure functions on embeddings;
- embeddings: the aisfx sound-effect embedding, with its Essentia front-end reimplemented;
- clap: the small audio–text contrastive model for adherence and diversity (`studio train clap`);
- corpus: the held-out clips per category and the prompt that asks for each category;
- run: `studio eval` (and `studio eval adherence`); bench: `studio bench`; cli: their commands.
"""
