"""Checkpoints in the stable-audio-tools format: model_config.json + model.safetensors (or model.ckpt).

Our modules use their own names; `checkpoint_key` is the one adapter that maps each of our
state-dict keys to the key the reference checkpoints use, so loading and saving share one table.
MAR models (mar_cond) keep the reference names for their VAE and conditioners and store their
backbone and head under "model.mar." with our own names, as Studio's STFT autoencoder stores its
encoder and decoder under "pretransform.model.".
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from studio.errors import CheckpointError
from studio.models.config import ModelConfig, OobleckConfig
from studio.models.mar import MarModel
from studio.models.model import AudioModel
from studio.models.registry import CONFIG_FILE, WEIGHT_FILES

Model = AudioModel | MarModel


_DIT_RULES: list[tuple[str, str]] = [
    (r"time_weight", "timestep_features.weight"),
    (r"time_mlp\.(\d)\.(\w+)", r"to_timestep_embed.\1.\2"),
    (r"context_mlp\.(\d)\.(\w+)", r"to_cond_embed.\1.\2"),
    (r"global_mlp\.(\d)\.(\w+)", r"to_global_embed.\1.\2"),
    (r"input_conv\.weight", "preprocess_conv.weight"),
    (r"output_conv\.weight", "postprocess_conv.weight"),
    (r"proj_in\.weight", "transformer.project_in.weight"),
    (r"proj_out\.weight", "transformer.project_out.weight"),
    (r"rotary_inv_freq", "transformer.rotary_pos_emb.inv_freq"),
    (r"beat_in\.weight", "beat_in.weight"),  # Studio's beat grid has no reference layout
    (r"blocks\.(\d+)\.self_norm\.weight", r"transformer.layers.\1.pre_norm.gamma"),
    (r"blocks\.(\d+)\.self_norm\.bias", r"transformer.layers.\1.pre_norm.beta"),
    (r"blocks\.(\d+)\.cross_norm\.weight", r"transformer.layers.\1.cross_attend_norm.gamma"),
    (r"blocks\.(\d+)\.cross_norm\.bias", r"transformer.layers.\1.cross_attend_norm.beta"),
    (r"blocks\.(\d+)\.ff_norm\.weight", r"transformer.layers.\1.ff_norm.gamma"),
    (r"blocks\.(\d+)\.ff_norm\.bias", r"transformer.layers.\1.ff_norm.beta"),
    (r"blocks\.(\d+)\.self_attn\.qkv\.weight", r"transformer.layers.\1.self_attn.to_qkv.weight"),
    (r"blocks\.(\d+)\.(self|cross)_attn\.out\.weight", r"transformer.layers.\1.\2_attn.to_out.weight"),
    (r"blocks\.(\d+)\.cross_attn\.(q|kv)\.weight", r"transformer.layers.\1.cross_attn.to_\2.weight"),
    (r"blocks\.(\d+)\.(self|cross)_attn\.([qk]_norm\.\w+)", r"transformer.layers.\1.\2_attn.\3"),
    (r"blocks\.(\d+)\.ff\.up\.(\w+)", r"transformer.layers.\1.ff.ff.0.proj.\2"),
    (r"blocks\.(\d+)\.ff\.down\.(\w+)", r"transformer.layers.\1.ff.ff.2.\2"),
]

_CONDITIONER_RULES: list[tuple[str, str]] = [
    (r"(\w+)\.freqs", r"\1.embedder.embedding.0.weights"),
    (r"(\w+)\.proj\.(\w+)", r"\1.embedder.embedding.1.\2"),
    (r"(\w+)\.proj_out\.(\w+)", r"\1.proj_out.\2"),
    # Prompt-fact conditioners (note, bpm) have no reference layout: they keep our names.
    (r"(\w+)\.(number\.freqs|number\.proj\.\w+|cycle\.weight|absent)", r"\1.\2"),
]

# Positions inside the reference's nn.Sequential containers.
_RESIDUAL_UNIT = {"act1": 0, "conv1": 1, "act2": 2, "conv2": 3}
_ENCODER_BLOCK = {"act": 3, "down": 4}  # residual units are 0..2
_DECODER_BLOCK = {"act": 0, "up": 1}  # residual units are 2..4


def _apply(rules: list[tuple[str, str]], key: str) -> str | None:
    for pattern, replacement in rules:
        if re.fullmatch(pattern, key):
            return re.sub(pattern, replacement, key)
    return None


def _oobleck_key(key: str, num_blocks: int) -> str | None:
    match = re.fullmatch(r"(encoder|decoder)\.(in_conv|out_act|out_conv|blocks\.(\d+))\.(.+)", key)
    if match is None:
        return None
    side, part, block, rest = match.groups()
    if block is None:
        index = {"in_conv": 0, "out_act": num_blocks + 1, "out_conv": num_blocks + 2}[part]
        return f"{side}.layers.{index}.{rest}"
    first_unit = 0 if side == "encoder" else 2
    positions = _ENCODER_BLOCK if side == "encoder" else _DECODER_BLOCK
    unit = re.fullmatch(r"res_units\.(\d)\.(act1|conv1|act2|conv2)\.(.+)", rest)
    if unit is not None:
        inner = f"layers.{first_unit + int(unit[1])}.layers.{_RESIDUAL_UNIT[unit[2]]}.{unit[3]}"
    else:
        name, _, param = rest.partition(".")
        inner = f"layers.{positions[name]}.{param}"
    return f"{side}.layers.{int(block) + 1}.{inner}"


def _stft_key(key: str) -> str | None:
    """Studio's STFT autoencoder sides (spectral.py) have no reference layout: they keep our names."""
    return key if re.fullmatch(r"(encoder\.trunk|decoder\.(trunk|band_head|partial_head))\..+", key) else None


def checkpoint_key(key: str, num_vae_blocks: int) -> str:
    """Our state-dict key -> the stable-audio-tools key for the same tensor."""
    prefixes: list[tuple[str, str, Callable[[str], str | None]]] = [
        ("dit.", "model.model.", lambda k: _apply(_DIT_RULES, k)),
        ("conditioners.", "conditioner.conditioners.", lambda k: _apply(_CONDITIONER_RULES, k)),
        ("vae.", "pretransform.model.", lambda k: _oobleck_key(k, num_vae_blocks) or _stft_key(k)),
        ("backbone.", "model.mar.backbone.", lambda k: k),
        ("head.", "model.mar.head.", lambda k: k),
    ]
    for ours, theirs, convert in prefixes:
        if key.startswith(ours):
            mapped = convert(key[len(ours) :])
            if mapped is not None:
                return theirs + mapped
    raise KeyError(f"no checkpoint name for parameter '{key}'")


def key_table(model: Model) -> dict[str, str]:
    """{checkpoint key: our key} for every tensor in the model's state dict."""
    encoder = model.config.autoencoder.encoder
    blocks = len(encoder.strides) if isinstance(encoder, OobleckConfig) else 0
    return {checkpoint_key(k, blocks): k for k in model.state_dict()}


def weights_file(folder: Path) -> Path:
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return folder / name
    raise CheckpointError(
        f"{folder}: no weights file (looked for {' or '.join(WEIGHT_FILES)})",
        "put the model's weights next to its model_config.json",
    )


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        if path.suffix == ".safetensors":
            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (SafetensorError, OSError, RuntimeError, ValueError, EOFError) as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(
            f"{path}: cannot read weights ({first_line})",
            "the file is corrupt or truncated; download it again",
        ) from exc
    except Exception as exc:  # torch.load's unpickler raises several unrelated types
        raise CheckpointError(
            f"{path}: not a weights-only PyTorch checkpoint ({exc})".splitlines()[0]
        ) from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: does not hold a state dict of tensors")
    return state


def name_listing(keys: list[str], limit: int = 8) -> str:
    """The first `limit` names, comma-separated, then how many more there are."""
    shown = ", ".join(keys[:limit])
    return shown + (f" … and {len(keys) - limit} more" if len(keys) > limit else "")


def load_weights(model: Model, path: Path) -> None:
    """Strictly load a checkpoint's tensors into the model, naming every mismatch."""
    state = read_state_dict(path)
    table = key_table(model)
    ours = model.state_dict()
    # T5 weights are never part of our model; some exports carry them, and they are not ours to load.
    state = {k: v for k, v in state.items() if not re.match(r"conditioner\.conditioners\.\w+\.model\.", k)}
    missing = sorted(k for k in table if k not in state)
    unexpected = sorted(k for k in state if k not in table)
    wrong_shape = sorted(
        f"{k} {tuple(state[k].shape)} vs {tuple(ours[table[k]].shape)}"
        for k in table
        if k in state and state[k].shape != ours[table[k]].shape
    )
    problems = []
    if missing:
        problems.append(f"missing keys ({len(missing)}): {name_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected keys ({len(unexpected)}): {name_listing(unexpected)}")
    if wrong_shape:
        problems.append(
            f"shape mismatches (file vs config) ({len(wrong_shape)}): {name_listing(wrong_shape)}"
        )
    if problems:
        raise CheckpointError(
            f"{path}: weights do not match {CONFIG_FILE}: " + "; ".join(problems),
            "use the model_config.json that was saved with these weights",
        )
    # Copies, not views: a safetensors file's tensors sit back to back in one buffer at offsets
    # kernels do not like (most are not 64-byte aligned); a fresh allocation is.
    owned = {table[k]: v.to(torch.float32, copy=True) for k, v in state.items()}
    model.load_state_dict(owned, strict=True, assign=True)


def build_model(config: ModelConfig) -> Model:
    """A freshly initialised model of the config's kind: AudioModel (diffusion_cond) or MarModel."""
    return MarModel(config) if config.mar is not None else AudioModel(config)


def load_model(folder: str | Path) -> Model:
    """Build a model from a folder holding model_config.json and its weights."""
    folder = Path(folder)
    config = ModelConfig.from_file(folder / CONFIG_FILE)
    path = weights_file(folder)
    with torch.device("meta"):
        model = build_model(config)
    load_weights(model, path)
    # Non-persistent buffers are not in the checkpoint; recreate them on a real device.
    for module in model.modules():
        for name, buffer in list(module.named_buffers(recurse=False)):
            if buffer.is_meta:
                module.register_buffer(name, torch.empty(0), persistent=False)
    return model.eval()


def save_model(model: Model, folder: str | Path, dtype: torch.dtype = torch.float32) -> Path:
    """Write config + safetensors with the reference key names (what load_model reads back).
    `dtype` float16 halves a shipped model's size; load_model gives float32 back either way."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    table = key_table(model)
    state = model.state_dict()
    tensors = {theirs: state[ours].detach().to(dtype).contiguous().cpu() for theirs, ours in table.items()}
    save_file(tensors, str(folder / WEIGHT_FILES[0]))
    (folder / CONFIG_FILE).write_text(json.dumps(model.config.raw, indent=2))
    return folder
