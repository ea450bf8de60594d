"""The precision policy: which dtype each part of a model computes in, by device.

- The denoiser (a DiT, or a MAR backbone and head) computes in the engine's dtype: on CUDA bfloat16
  where the GPU has bf16 tensor cores (compute capability 8.0 and up), else float16; on a CPU
  bfloat16 where it multiplies bf16 matrices in hardware: AMX tiles (a stable-audio-open-small DiT
  step ran 3.5x as fast as in float32 on 2 cores) or AVX-512 BF16 (2.3x float32's matmul rate on
  an AMD EPYC, a studio-mini take 0.23 -> 0.20 s, 0.18 -> 0.12 s a take at batch 8); else float32
  (plain AVX2 or AVX-512 has no bf16 product to gain from).
  Inside it the timestep features, the rotary angles and every LayerNorm compute in float32 from
  float32 parameters, and the sampler's times are never rounded to half precision.
- The VAE stays float32 (a bfloat16 decode of stable-audio-open-small measured 37 dB SNR against
  float32, audible on quiet tails), except that on CUDA an Oobleck decoder, most of a take's
  arithmetic (1.3 TFLOP for 11.9 s), decodes in float16 where that model's own weights keep 50 dB
  SNR against float32 on a probe decode when it loads; the SNR is logged and benchmarked. An STFT
  decoder's trunk (its frame-rate ConvNeXt stack, most of its time) and its heads compute in
  bfloat16 where the denoiser does, their LayerNorms in float32: they write log magnitudes and
  phasors, so bf16's rounding is a relative error of each bin (about 0.1 dB and 0.004 rad) that
  follows a quiet tail down rather than sitting on it; the spectra, the phase noise and the
  inverse STFT stay float32.
- The conditioners' projections stay float32 (they are tiny); T5 runs in float16 on CUDA, as the
  reference runs it (conditioners.py).
- On CUDA float32 means IEEE float32: TF32 is off for matmuls and convolutions, so `--dtype
  float32` and the VAE's float32 decode are what they say.
"""

from __future__ import annotations

import copy
import functools
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from studio.errors import StudioError
from studio.models.oobleck import OobleckDecoder
from studio.models.spectral import StftDecoder

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# Parameters and buffers that keep float32 inside a half-precision denoiser: the timestep
# frequencies and the rotary frequencies (a bf16 inverse frequency shifts every angle).
FLOAT32_TENSORS = ("time_weight", "rotary_inv_freq")
HALF_DECODE_MIN_SNR_DB = 50.0
BF16_MATMUL_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})  # as Linux lists them in /proc/cpuinfo
PROBE_FRAMES = 64  # about 3 s of stable-audio-open-small's latents

log = logging.getLogger("studio.precision")


@dataclass(frozen=True)
class Placement:
    """Where a model's parts compute, as place_model left them."""

    dtype: torch.dtype  # the denoiser's
    decoder_dtype: torch.dtype
    decoder_snr_db: float | None  # a float16 probe decode against float32, where one was tried


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
    return torch.bfloat16 if cpu_flags() & BF16_MATMUL_FLAGS else torch.float32


@functools.cache
def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The CPU's feature flags as Linux reports them; none where it does not (another OS)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return frozenset()


def denoiser_parts(model: nn.Module) -> list[nn.Module]:
    """The modules that run once per sampling step, where half precision pays."""
    return [part for name in ("dit", "backbone", "head") if (part := getattr(model, name, None)) is not None]


def to_half_but_islands(module: nn.Module, dtype: torch.dtype) -> None:
    """Cast a module to `dtype` except its LayerNorms and FLOAT32_TENSORS, which keep their float32
    values (casting them down and back up would keep bf16's rounding)."""
    for sub in module.modules():
        if isinstance(sub, nn.LayerNorm):
            continue
        tensors = [*sub.named_parameters(recurse=False), *sub.named_buffers(recurse=False)]
        for name, tensor in tensors:
            if name not in FLOAT32_TENSORS and tensor.is_floating_point():
                tensor.data = tensor.data.to(dtype)


def ieee_float32() -> None:
    """float32 matmuls and convolutions on CUDA without TF32's 10-bit mantissa."""
    torch.backends.cuda.matmul.fp32_precision = "ieee"
    torch.backends.cudnn.fp32_precision = "ieee"


def snr_db(actual: torch.Tensor, reference: torch.Tensor) -> float:
    error = (actual.double() - reference.double()).square().sum()
    return math.inf if error == 0 else float(10 * torch.log10(reference.double().square().sum() / error))


@torch.no_grad()  # not inference_mode: the decoder it keeps must serve outside inference mode too
def half_decoder_if_faithful(vae: nn.Module, dtype: torch.dtype = torch.float16) -> float:
    """Decode a probe of the latent prior in float32 and with the decoder in `dtype`; keep the
    half-precision decoder if it comes within HALF_DECODE_MIN_SNR_DB. Returns the SNR in dB."""
    device = next(vae.parameters()).device
    generator = torch.Generator().manual_seed(0)
    probe = torch.randn(1, vae.latent_dim, PROBE_FRAMES, generator=generator).to(device)
    reference = vae.decode(probe)
    float32_decoder = vae.decoder
    vae.decoder = copy.deepcopy(float32_decoder).to(dtype)
    snr = snr_db(vae.decode(probe), reference)
    if not snr >= HALF_DECODE_MIN_SNR_DB:  # a NaN (an overflow) fails too
        vae.decoder = float32_decoder
    log.info("%s decode: %.1f dB SNR against float32; decoding in %s", dtype, snr, vae.decoder_dtype)
    return snr


def place_model(model: nn.Module, device: torch.device, dtype: torch.dtype) -> Placement:
    """Move a float32 model to `device` with its denoiser in `dtype`, the rest as the policy says."""
    model.to(device)
    if device.type == "cuda":
        ieee_float32()
    if dtype != torch.float32:
        for part in denoiser_parts(model):
            to_half_but_islands(part, dtype)
    if dtype == torch.bfloat16 and isinstance(model.vae.decoder, StftDecoder):
        decoder = model.vae.decoder
        for part in (decoder.trunk, decoder.band_head, decoder.partial_head):
            if part is not None:
                to_half_but_islands(part, dtype)
    snr = None
    if device.type == "cuda" and dtype != torch.float32 and isinstance(model.vae.decoder, OobleckDecoder):
        snr = half_decoder_if_faithful(model.vae)
    return Placement(dtype, model.vae.decoder_dtype, snr)
