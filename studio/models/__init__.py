"""Model code for the stable-audio-tools `diffusion_cond` format."""

from studio.models.checkpoint import load_model, save_model
from studio.models.config import ModelConfig
from studio.models.model import AudioModel, Conditioning

__all__ = ["AudioModel", "Conditioning", "ModelConfig", "load_model", "save_model"]
