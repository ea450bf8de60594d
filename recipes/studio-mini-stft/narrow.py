"""Narrow a trained STFT decoder: keep its most used channels, for a decode that costs less.

    python recipes/studio-mini-stft/narrow.py MODEL WIDTH OUT

The decoder's residual stream keeps the WIDTH channels its layers read most strongly (the
LayerNorm gain before each reader times the norm of the reader's weights on that channel), and
each block's MLP the 3 × WIDTH hidden units with the largest in × out weight norms. Everything
else, the encoder included, is copied as it is, so the latents do not change: fine-tune the
narrowed decoder with `studio train autoencoder --init OUT --freeze-encoder` (README.md).
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import torch

from studio.models import build_model, load_model, save_model
from studio.models.config import ModelConfig
from studio.models.spectral import FrameTrunk


def channel_scores(trunk: FrameTrunk) -> torch.Tensor:
    """How strongly the trunk's layers read each channel of its residual stream."""
    readers = [(block.norm, block.up) for block in trunk.blocks] + [(trunk.norm_out, trunk.proj_out)]
    return sum(norm.weight.abs() * linear.weight.norm(dim=0) for norm, linear in readers)


def narrowed_trunk(trunk: FrameTrunk, width: int) -> FrameTrunk:
    keep = channel_scores(trunk).topk(width).indices.sort().values
    kernel = trunk.blocks[0].mix.kernel_size[0]
    new = FrameTrunk(trunk.proj_in.in_features, width, len(trunk.blocks), kernel, trunk.proj_out.out_features)
    with torch.no_grad():
        new.proj_in.weight.copy_(trunk.proj_in.weight[keep])
        new.proj_in.bias.copy_(trunk.proj_in.bias[keep])
        for norm, old in ((new.norm_in, trunk.norm_in), (new.norm_out, trunk.norm_out)):
            norm.weight.copy_(old.weight[keep])
            norm.bias.copy_(old.bias[keep])
        new.proj_out.weight.copy_(trunk.proj_out.weight[:, keep])
        new.proj_out.bias.copy_(trunk.proj_out.bias)
        for block, old in zip(new.blocks, trunk.blocks, strict=True):
            hidden = (old.up.weight.norm(dim=1) * old.down.weight.norm(dim=0)).topk(block.up.out_features)
            units = hidden.indices.sort().values
            block.mix.weight.copy_(old.mix.weight[keep])
            block.mix.bias.copy_(old.mix.bias[keep])
            block.norm.weight.copy_(old.norm.weight[keep])
            block.norm.bias.copy_(old.norm.bias[keep])
            block.up.weight.copy_(old.up.weight[units][:, keep])
            block.up.bias.copy_(old.up.bias[units])
            block.down.weight.copy_(old.down.weight[keep][:, units])
            block.down.bias.copy_(old.down.bias[keep])
            block.gain.copy_(old.gain[keep])
    return new


def narrow(model_folder: Path, width: int, out: Path) -> Path:
    model = load_model(model_folder)
    if model.vae.decoder.band_head is not None:
        raise SystemExit(
            f"{model_folder}'s decoder has a band head, whose trained weights narrowing would drop: "
            "narrow a decoder before it gets one (stage 4 came before stage 7)"
        )
    raw = copy.deepcopy(model.config.raw)
    raw["model"]["pretransform"]["config"]["decoder"]["config"]["width"] = width
    narrowed = build_model(ModelConfig.from_dict(raw))
    narrowed.load_state_dict(
        {k: v for k, v in model.state_dict().items() if not k.startswith("vae.decoder.")}, strict=False
    )
    narrowed.vae.decoder.trunk = narrowed_trunk(model.vae.decoder.trunk, width)
    return save_model(narrowed, out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="a model folder with an STFT decoder")
    parser.add_argument("width", type=int, help="the narrowed decoder's width")
    parser.add_argument("out", type=Path, help="the model folder to write")
    args = parser.parse_args()
    print(narrow(args.model, args.width, args.out))


if __name__ == "__main__":
    main()
