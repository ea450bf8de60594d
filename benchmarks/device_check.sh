#!/usr/bin/env bash
# One command on a GPU machine (issue 26): the parity fixtures on CUDA against the reference's
# recorded outputs at their tolerances, then stable-audio-open-small's architecture through
# `studio bench` at batch 1 and 8 on the engine's default fast path (bf16 DiT, compiled, one CUDA
# graph a take) and, to compare, eagerly at batch 1. Everything lands in OUT_DIR: parity.json,
# cuda-<date>.json (per-stage medians, whole takes, peak VRAM, the computed floor), the logs and
# nvidia-smi's view, each written as its part ends. About 5 minutes on an H100, most of it
# compiling; at most 9.5 (timeouts 170 + 330 + 70 s): call it with timeout_s 600.
#
#   benchmarks/device_check.sh OUT_DIR
#
# On a bare machine that reaches nothing, run benchmarks/device_prepare.sh here first and carry
# .whl and .fixtures (see that script); the repository itself needs no install. To rehearse it on
# a CPU: DEVICE=cpu BENCH="--model studio-mini" benchmarks/device_check.sh /tmp/check
set -uo pipefail
out=${1:?usage: benchmarks/device_check.sh OUT_DIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$(dirname "$0")/.."
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
if [ -d .fixtures ]; then
  export STUDIO_SAO_FIXTURES=$PWD/.fixtures/sao-parity STUDIO_T5_FIXTURES=$PWD/.fixtures/sao-t5
fi
export STUDIO_MODELS_DIR=${STUDIO_MODELS_DIR:-/tmp/studio-models}
device=${DEVICE:-cuda}
read -r -a bench <<< "${BENCH:---arch sao-small}"
nvidia-smi > "$out/nvidia-smi.txt" 2>&1
python3 -c "import torch; print(torch.__version__, torch.cuda.is_available() and torch.cuda.get_device_name())" \
  | tee "$out/torch.txt"
status=0
timeout 170 python3 benchmarks/device_parity.py --device "$device" --out "$out/parity.json" 2>&1 \
  | tee "$out/parity.log" || status=1
timeout 330 python3 -m studio bench "${bench[@]}" --device "$device" --batch 1,8 --runs 10 --warmup 2 \
  --out "$out" 2>&1 | tee "$out/bench.log" || status=1
timeout 70 python3 -m studio bench "${bench[@]}" --device "$device" --batch 1 --runs 10 --warmup 2 \
  --fast-path eager --out "$out/eager" 2>&1 | tee -a "$out/bench.log" || status=1
exit $status
