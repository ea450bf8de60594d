"""Model code for the stable-audio-tools `diffusion_cond` format and our `mar_cond` models."""

from studio.models.checkpoint import Model, build_model, load_model, save_model
from studio.models.config import ModelConfig
from studio.models.mar import MarModel
from studio.models.model import AudioModel, Conditioning

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
