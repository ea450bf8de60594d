"""Give a model folder the decoder of a decoder-only autoencoder run over the same encoder.

    python recipes/studio-mini-v04/graft_decoder.py AE_RUN/model models/studio-mini OUT

`studio train autoencoder --freeze-encoder` trains a decoder (of a new layout too: a band head,
say) under an encoder it leaves exactly as it was, so the latents a DiT was trained on do not move
and the DiT keeps working with the better decoder. This writes OUT as the model folder with its
DiT, conditioners and sampling defaults as they are and the run's decoder, the decoder section of
its config taken from the run; weights in float16. It refuses a run whose encoder differs from the
model's (as stored in float16): that DiT was trained on other latents. The model card is not
written here.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from studio.models import ModelConfig, build_model, load_model, save_model
from studio.training.loop import copy_matching_weights


def _autoencoder_section(config: ModelConfig, side: str) -> dict:
    return json.loads(json.dumps(config.raw["model"]["pretransform"]["config"][side]))


def graft(run_model: Path, model_folder: Path, out: Path) -> Path:
    run, model = load_model(run_model), load_model(model_folder)
    run_encoder, encoder = run.vae.encoder.state_dict(), model.vae.encoder.state_dict()
    differing = [
        name
        for name, tensor in encoder.items()
        if name not in run_encoder or not torch.equal(run_encoder[name].half(), tensor.half())
    ]
    if differing or _autoencoder_section(run.config, "encoder") != _autoencoder_section(
        model.config, "encoder"
    ):
        raise SystemExit(
            f"{run_model}'s encoder is not {model_folder}'s ({len(differing)} tensors differ): a DiT "
            "over the old latents would not fit the new decoder; train the decoder with "
            f"--freeze-encoder --init {model_folder}"
        )
    raw = json.loads(json.dumps(model.config.raw))
    raw["model"]["pretransform"]["config"]["decoder"] = _autoencoder_section(run.config, "decoder")
    grafted = build_model(ModelConfig.from_dict(raw, source=str(model_folder / "model_config.json")))
    fresh = copy_matching_weights(grafted, model)
    grafted.vae.decoder.load_state_dict(run.vae.decoder.state_dict())
    assert all(name.startswith("vae.decoder.") for name in fresh), fresh
    save_model(grafted, out, torch.float16)
    reloaded = load_model(out)
    for name, tensor in run.vae.decoder.state_dict().items():
        torch.testing.assert_close(reloaded.vae.decoder.state_dict()[name], tensor.half().float())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_model", type=Path, help="a decoder-only autoencoder run's export (RUN/model)")
    parser.add_argument("model", type=Path, help="the model folder whose encoder the run kept")
    parser.add_argument("out", type=Path, help="the model folder to write (its README.md is kept)")
    args = parser.parse_args()
    print(graft(args.run_model, args.model, args.out))


if __name__ == "__main__":
    main()
