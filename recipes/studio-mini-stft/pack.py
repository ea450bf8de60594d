"""Pack an autoencoder run's export as the committed model folder: its encoder and decoder in float16,
under `model_config.json` of this recipe (whose DiT is a placeholder; see README.md).

    python recipes/studio-mini-stft/pack.py RUN/model recipes/studio-mini-stft/model

The run trains only the VAE; the DiT and the prompt projection in its export are untrained, so the
packed folder keeps the placeholder's freshly initialised ones (a few hundred kilobytes) rather
than carrying 17 MB of random weights into the repository. `studio train flow --init FOLDER
--config CONFIG` then trains a real DiT over these latents.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from studio.models import ModelConfig, build_model, load_model, save_model
from studio.models.registry import CONFIG_FILE

HERE = Path(__file__).resolve().parent


def pack(run_model: Path, out: Path, config: Path = HERE / CONFIG_FILE) -> Path:
    trained = load_model(run_model)
    torch.manual_seed(0)
    packed = build_model(ModelConfig.from_file(config))
    packed.vae.load_state_dict(trained.vae.state_dict())
    save_model(packed, out, torch.float16)
    reloaded = load_model(out)
    for name, tensor in trained.vae.state_dict().items():
        torch.testing.assert_close(reloaded.vae.state_dict()[name], tensor.half().float())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_model", type=Path, help="an autoencoder run's export (RUN/model)")
    parser.add_argument("out", type=Path, help="the model folder to write")
    args = parser.parse_args()
    print(pack(args.run_model, args.out))
    print(json.dumps(ModelConfig.from_file(args.out / CONFIG_FILE).raw["model"]["pretransform"], indent=1))


if __name__ == "__main__":
    main()
