"""Decode time of several models' VAEs, interleaved in one run so a shared machine's drift falls on
all of them alike.

    python benchmarks/vae_decode.py --models studio-mini recipes/studio-mini-stft/model \
        [--dtypes float32,bfloat16] [--batch 1,8] [--rounds 15] [--out reports/bench/vae-decode-cpu-DATE.json]

Each round decodes random latents of every model's full length once per batch size, models in
turn; the first round is a warm-up. With several `--dtypes` each model is also placed as the
engine places it with its denoiser in that dtype (studio/models/precision.py) and timed as a model
of its own, "name (dtype)". Reported per model and batch: median, min and max seconds
and the median per take, with the machine described as `studio bench` describes it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from datetime import date
from pathlib import Path

import torch

from studio.commands import whole_numbers
from studio.eval.bench import describe_machine
from studio.models import load_model
from studio.models.precision import pick_dtype, place_model
from studio.models.registry import model_label, resolve_model


@torch.no_grad()  # not inference_mode: the Oobleck decoder caches its weight-normed weights by version
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", required=True, help="model names or folders")
    parser.add_argument("--dtypes", default="float32", help="comma list of denoiser dtypes (default float32)")
    parser.add_argument("--batch", type=whole_numbers, default=(1, 8))
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--out", type=Path, default=Path(f"reports/bench/vae-decode-cpu-{date.today()}.json"))
    args = parser.parse_args()

    device = torch.device("cpu")
    models = {}
    dtypes = args.dtypes.split(",")
    for name in args.models:
        entry = resolve_model(name)
        for dtype in dtypes:
            model = load_model(entry.path)
            place_model(model, device, pick_dtype(device, dtype))
            latents = {
                batch: torch.randn(
                    batch,
                    model.config.autoencoder.latent_dim,
                    model.config.latent_length,
                    generator=torch.Generator().manual_seed(batch),
                )
                for batch in args.batch
            }
            where = entry.path.resolve()  # shown relative to here: no home paths in the report
            shown = where.relative_to(Path.cwd()) if where.is_relative_to(Path.cwd()) else where
            label = model_label(entry.name) + (f" ({dtype})" if len(dtypes) > 1 else "")
            models[label] = (model, latents, str(shown))
    times: dict[str, dict[int, list[float]]] = {name: {b: [] for b in args.batch} for name in models}
    for round_index in range(args.rounds + 1):
        for name, (model, latents, _) in models.items():
            for batch in args.batch:
                start = time.perf_counter()
                model.vae.decode(latents[batch])
                if round_index:  # the first round warms caches and allocators up
                    times[name][batch].append(time.perf_counter() - start)
    report = {
        "date": str(date.today()),
        "what": "VAE decode of one full-length take per batch row, random latents, interleaved rounds",
        "rounds": args.rounds,
        "machine": describe_machine(device),
        "models": {
            name: {
                "weights": path,
                "decoder_dtype": str(model.vae.decoder_dtype).removeprefix("torch."),
                "audio_seconds": model.config.max_seconds,
                "batches": {
                    str(batch): {
                        "median_s": statistics.median(values),
                        "min_s": min(values),
                        "max_s": max(values),
                        "per_take_s": statistics.median(values) / batch,
                    }
                    for batch, values in times[name].items()
                },
            }
            for name, (model, _, path) in models.items()
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    for name, entry in report["models"].items():
        cells = ", ".join(
            f"batch {b}: {v['median_s'] * 1000:.1f} ms ({v['per_take_s'] * 1000:.1f} ms a take)"
            for b, v in entry["batches"].items()
        )
        print(f"{name}: {cells}")
    print(args.out)


if __name__ == "__main__":
    main()
