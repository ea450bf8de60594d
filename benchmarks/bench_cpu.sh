#!/usr/bin/env bash
# CPU speed (docs/eval.md, "Benchmark"): the project's model at batch 1 and 8, then the full-size
# stable-audio-open-small architecture (random weights unless its checkpoint is here). Results are
# merged into reports/bench/cpu-<date>.json.
#
#   benchmarks/bench_cpu.sh [MODEL]
#
# sao-small on two cores takes about 6 s per DiT step and 60 s per VAE decode at batch 1, so its
# batch 8 (roughly 15 minutes and, estimated from batch 1, 18 GB of RAM for one run) is timed once,
# without warm-up, and only when SAO_BATCH8=1.
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-studio-mini}
python -m studio bench --device cpu --model "$model" --batch 1,8 --runs 5 --warmup 1
python -m studio bench --device cpu --arch sao-small --batch 1 --runs 3 --warmup 1
if [ "${SAO_BATCH8:-0}" = 1 ]; then
  python -m studio bench --device cpu --arch sao-small --batch 8 --runs 1 --warmup 0
fi
