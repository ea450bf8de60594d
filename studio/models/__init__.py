"""Model code for the stable-audio-tools `diffusion_cond` format and our `mar_cond` models.

The names below load on first use: the model code imports torch, which the registry, configs and
`studio models` do without.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from studio.models.checkpoint import Model, build_model, load_model, save_model
    from studio.models.config import ModelConfig
    from studio.models.mar import MarModel
    from studio.models.model import AudioModel, Conditioning

_HOMES = {
    "AudioModel": "model",
    "Conditioning": "model",
    "MarModel": "mar",
    "Model": "checkpoint",
    "ModelConfig": "config",
    "build_model": "checkpoint",
    "load_model": "checkpoint",
    "save_model": "checkpoint",
}
__all__ = [
    "AudioModel",
    "Conditioning",
    "MarModel",
    "Model",
    "ModelConfig",
    "build_model",
    "load_model",
    "save_model",
]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'studio.models' has no attribute '{name}'")
    return getattr(import_module(f"studio.models.{_HOMES[name]}"), name)
