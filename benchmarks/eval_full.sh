#!/usr/bin/env bash
# The full evaluation (docs/eval.md): train the corpus's contrastive model if it has none, then score
# the model on the twelve core categories, 4 takes each, every sampler setting and diversity value.
#
#   benchmarks/eval_full.sh [MODEL] [CORPUS] [extra `studio eval` options…]
#
# MODEL defaults to studio-mini, CORPUS to $STUDIO_CORPUS_DIR or ./corpus. Writes
# reports/<model>/eval.json, eval.md and PNGs. On two CPU cores with a tiny model the evaluation takes
# minutes; the CLAP training (first run only) takes 10–20 minutes more.
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-studio-mini}
corpus=${2:-${STUDIO_CORPUS_DIR:-corpus}}
shift $(($# < 2 ? $# : 2))
if [ ! -f "$corpus/clap/clap.json" ]; then
  python -m studio train clap --corpus "$corpus"
fi
python -m studio eval --model "$model" --corpus "$corpus" "$@"
