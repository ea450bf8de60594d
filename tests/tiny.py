"""Small random models in our checkpoint format, for tests that need a whole model quickly."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch

from studio.models import ModelConfig, build_model, save_model
from studio.models.spectral import StftDecoder

TINY = {
    "model_type": "diffusion_cond",
    "sample_size": 65536,
    "sample_rate": 44100,
    "audio_channels": 2,
    "model": {
        "pretransform": {
            "type": "autoencoder",
            "iterate_batch": True,
            "config": {
                "encoder": {
                    "type": "oobleck",
                    "config": {
                        "in_channels": 2,
                        "channels": 4,
                        "c_mults": [1, 2, 4, 8, 16],
                        "strides": [2, 4, 4, 8, 8],
                        "latent_dim": 16,
                        "use_snake": True,
                    },
                },
                "decoder": {
                    "type": "oobleck",
                    "config": {
                        "out_channels": 2,
                        "channels": 4,
                        "c_mults": [1, 2, 4, 8, 16],
                        "strides": [2, 4, 4, 8, 8],
                        "latent_dim": 8,
                        "use_snake": True,
                        "final_tanh": False,
                    },
                },
                "bottleneck": {"type": "vae"},
                "latent_dim": 8,
                "downsampling_ratio": 2048,
                "io_channels": 2,
            },
        },
        "conditioning": {
            "configs": [
                {"id": "prompt", "type": "minilm", "config": {"max_length": 16}},
                {"id": "seconds_total", "type": "number", "config": {"min_val": 0, "max_val": 256}},
            ],
            "cond_dim": 64,
        },
        "diffusion": {
            "cross_attention_cond_ids": ["prompt", "seconds_total"],
            "global_cond_ids": ["seconds_total"],
            "diffusion_objective": "rf_denoiser",
            "type": "dit",
            "config": {
                "io_channels": 8,
                "embed_dim": 64,
                "depth": 2,
                "num_heads": 2,
                "cond_token_dim": 64,
                "global_cond_dim": 64,
                "transformer_type": "continuous_transformer",
                "attn_kwargs": {"qk_norm": "ln"},
            },
        },
        "io_channels": 8,
    },
}


def tiny_config(**changes) -> dict:
    """TINY with dotted-path overrides, e.g. tiny_config(**{"model.diffusion.diffusion_objective": "x"})."""
    return _override(TINY, **changes)


def _override(base: dict, **changes) -> dict:
    config = copy.deepcopy(base)
    for dotted, value in changes.items():
        node = config
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = value
    return config


def tiny_stft_config(**changes) -> dict:
    """TINY over Studio's STFT autoencoder (hop 512, 2048-point frames, one ConvNeXt block a side),
    with dotted-path overrides as tiny_config."""

    def side(io_key: str, latent_dim: int) -> dict:
        return {
            "type": "stft",
            "config": {
                io_key: 2,
                "n_fft": 2048,
                "hop_length": 512,
                "width": 32,
                "depth": 1,
                "latent_dim": latent_dim,
            },
        }

    config = tiny_config(**{
        "model.pretransform.config.encoder": side("in_channels", 16),
        "model.pretransform.config.decoder": side("out_channels", 8),
        "model.pretransform.config.downsampling_ratio": 512,
    })  # fmt: skip
    return _override(config, **changes)


def tiny_mar_config(head: str = "diffusion", sample_size: int = 16384, **changes) -> dict:
    """A mar_cond model over TINY's VAE and conditioners (8 latent frames by default), with
    dotted-path overrides as tiny_config."""
    config = tiny_config(model_type="mar_cond", sample_size=sample_size)
    del config["model"]["diffusion"]
    config["model"]["mar"] = {
        "io_channels": 8,
        "embed_dim": 32,
        "depth": 2,
        "num_heads": 1,
        "mask_ratio_min": 0.7,
        "head": {"type": head, "width": 32, "depth": 2, "steps": 4, "temperature": 1.0},
    }
    return _override(config, **changes)


def make_model_folder(folder: Path, config: dict | None = None, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    model = build_model(ModelConfig.from_dict(config or tiny_config()))
    # Random init leaves the output near silence; make the decoder louder so takes are audible.
    with torch.no_grad():
        if isinstance(model.vae.decoder, StftDecoder):
            model.vae.decoder.trunk.proj_out.bias.add_(2.0)
        else:
            model.vae.decoder.out_conv.weight_g.mul_(20)
    save_model(model, folder)
    return folder


def write_config(folder: Path, config: dict) -> None:
    (folder / "model_config.json").write_text(json.dumps(config))
