"""The precision policy: which dtype each part of a model computes in, by device.

- The denoiser (a DiT, or a MAR backbone and head) computes in the engine's dtype: float32 on the
  CPU; on CUDA bfloat16 where the GPU has bf16 tensor cores (compute capability 8.0 and up), else
  float16. Inside it the timestep features, the rotary angles and every LayerNorm compute in
  float32 from float32 parameters, and the sampler's times are never rounded to half precision.
- The VAE stays float32: a bfloat16 decode of stable-audio-open-small measured 37 dB SNR against
  float32, audible on quiet tails.
- The conditioners' projections stay float32 (they are tiny); T5 runs in float16 on CUDA, as the
  reference runs it (conditioners.py).
- On CUDA float32 means IEEE float32: TF32 is off for matmuls and convolutions, so `--dtype
  float32` and the VAE's float32 decode are what they say.
"""

from __future__ import annotations

import torch
from torch import nn

from studio.errors import StudioError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# Parameters and buffers that keep float32 inside a half-precision denoiser: the timestep
# frequencies and the rotary frequencies (a bf16 inverse frequency shifts every angle).
FLOAT32_TENSORS = ("time_weight", "rotary_inv_freq")


def pick_dtype(device: torch.device, requested: str | None = None) -> torch.dtype:
    """The denoiser's compute dtype: the one asked for, else the device's best."""
    if requested:
        if requested not in DTYPES:
            raise StudioError(f"unknown dtype '{requested}'", f"use one of {sorted(DTYPES)}")
        return DTYPES[requested]
    if device.type == "cuda":
        # is_bf16_supported() also counts emulated bf16, which is slower than fp16 on pre-Ampere GPUs.
        return torch.bfloat16 if torch.cuda.get_device_capability(device) >= (8, 0) else torch.float16
    if device.type == "mps":
        return torch.float16
    return torch.float32


def denoiser_parts(model: nn.Module) -> list[nn.Module]:
    """The modules that run once per sampling step, where half precision pays."""
    return [part for name in ("dit", "backbone", "head") if (part := getattr(model, name, None)) is not None]


def keep_float32_islands(module: nn.Module) -> None:
    """Put the LayerNorms and the FLOAT32_TENSORS of a half-precision module back in float32."""
    for sub in module.modules():
        if isinstance(sub, nn.LayerNorm):
            sub.float()
        tensors = [*sub.named_parameters(recurse=False), *sub.named_buffers(recurse=False)]
        for name, tensor in tensors:
            if name in FLOAT32_TENSORS:
                tensor.data = tensor.data.float()


def ieee_float32() -> None:
    """float32 matmuls and convolutions on CUDA without TF32's 10-bit mantissa."""
    torch.backends.cuda.matmul.fp32_precision = "ieee"
    torch.backends.cudnn.fp32_precision = "ieee"


def place_model(model: nn.Module, device: torch.device, dtype: torch.dtype) -> nn.Module:
    """Move a float32 model to `device` with its denoiser in `dtype`, the rest as the policy says."""
    model.to(device)
    if device.type == "cuda":
        ieee_float32()
    if dtype != torch.float32:
        for part in denoiser_parts(model):
            part.to(dtype)
            keep_float32_islands(part)
    return model
