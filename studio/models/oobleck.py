"""Oobleck encoder and decoder: stereo audio <-> latent frames (one per `prod(strides)` samples),
the convolution stacks of the stable-audio checkpoints.

Convolutions are weight-normalised (gain `weight_g`, direction `weight_v`) and activations are
SnakeBeta with log-scale parameters, as in the stable-audio checkpoints.

A decoder upsamples either with transposed convolutions (the released checkpoints) or, with
`nearest_upsample`, by repeating each frame and then convolving. The transposed kind adds up
overlapping copies of its kernel, one per input frame, so unless training makes those copies sum
flat it rings at the input frame rate: a steady latent decodes to a hum at multiples of
sample_rate / hop. Repeat-then-convolve maps a steady input to a steady output whatever its weights.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from studio.models.config import OobleckConfig


def snake_beta(x: torch.Tensor, log_alpha: torch.Tensor, log_beta: torch.Tensor) -> torch.Tensor:
    """x + 1/β · sin²(α x), per channel of x [B, C, T] (or [B, C, 1, T], in_channels_last_on_cpu)."""
    per_channel = (1, -1) + (1,) * (x.dim() - 2)
    # In float32: in float16 the 1e-9 would vanish and a tiny β give an infinite 1/β.
    alpha = log_alpha.float().exp().view(per_channel).to(x.dtype)
    inv_beta = (1.0 / (log_beta.float().exp().view(per_channel) + 1e-9)).to(x.dtype)
    if not (torch.is_grad_enabled() and (x.requires_grad or log_alpha.requires_grad)):
        # Inference: one new tensor, the rest in place. At the full audio rate the decoder's time goes
        # to passes over memory and to the fresh pages each new activation costs, not to arithmetic.
        wave = torch.mul(x, alpha).sin_()
        return wave.mul_(wave).mul_(inv_beta).add_(x)
    wave = torch.sin(x * alpha)
    return torch.addcmul(x, wave * inv_beta, wave)


def weight_norm(direction: torch.Tensor, gain: torch.Tensor) -> torch.Tensor:
    """gain · direction / ‖direction‖, the norm taken over all but the first dimension.

    torch's own kernel (what nn.utils.weight_norm runs) keeps us bit-identical to the reference;
    the plain formula differs by float rounding, ~2e-5 relative through the whole encoder.
    """
    return torch._weight_norm(direction, gain, 0)


class Snake(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.zeros(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return snake_beta(x, self.alpha, self.beta)


class WNConv1d(nn.Module):
    """Conv1d (or transposed) with weight norm over its first weight dimension."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int | str = 0,
        dilation: int = 1,
        bias: bool = True,
        transposed: bool = False,
    ):
        super().__init__()
        shape = (
            (in_channels, out_channels, kernel_size)
            if transposed
            else (out_channels, in_channels, kernel_size)
        )
        direction = torch.empty(shape)
        nn.init.kaiming_uniform_(direction, a=math.sqrt(5))
        self.weight_v = nn.Parameter(direction)
        self.weight_g = nn.Parameter(torch.linalg.vector_norm(direction, dim=(1, 2), keepdim=True))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.stride, self.padding, self.dilation, self.transposed = stride, padding, dilation, transposed

    def effective_weight(self) -> torch.Tensor:
        """The normalised weight; at inference it is computed once per parameter change, not per call.
        A compiled decoder computes it in its graph, where freezing folds it into a constant."""
        training = torch.is_grad_enabled() and (self.weight_v.requires_grad or self.weight_g.requires_grad)
        if training or torch.compiler.is_compiling():
            return weight_norm(self.weight_v, self.weight_g)
        key = (self.weight_v._version, self.weight_g._version, self.weight_v.data_ptr(), self.weight_v.dtype)
        if getattr(self, "_cached_key", None) != key:
            self._cached_weight = weight_norm(self.weight_v, self.weight_g)
            self._cached_key = key
        return self._cached_weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.effective_weight()
        padding = self.padding
        if padding == "same" and not self.transposed:
            # torch's own 'same' copies the input to pad an even kernel unevenly, and warns each time
            total = self.dilation * (weight.shape[-1] - 1)
            x, padding = F.pad(x, (total // 2, total - total // 2)), 0
        if x.dim() == 4:  # [B, C, 1, T], channels last: see in_channels_last_on_cpu
            weight = self._channels_last(weight)
            if self.transposed:
                return F.conv_transpose2d(x, weight, self.bias, (1, self.stride), (0, padding))
            return F.conv2d(x, weight, self.bias, (1, self.stride), (0, padding), (1, self.dilation))
        if self.transposed:
            return F.conv_transpose1d(x, weight, self.bias, self.stride, padding)
        return F.conv1d(x, weight, self.bias, self.stride, padding, self.dilation)

    def _channels_last(self, weight: torch.Tensor) -> torch.Tensor:
        """The weight as a [*, *, 1, K] channels-last kernel, made once per weight (a compiled graph
        makes it in the graph, as it does the weight norm)."""
        if torch.compiler.is_compiling():
            return weight.unsqueeze(2).contiguous(memory_format=torch.channels_last)
        if getattr(self, "_channels_last_of", None) is not weight:
            self._channels_last_weight = weight.unsqueeze(2).contiguous(memory_format=torch.channels_last)
            self._channels_last_of = weight
        return self._channels_last_weight


class ResidualUnit(nn.Module):
    def __init__(self, channels: int, dilation: int):
        super().__init__()
        self.act1 = Snake(channels)
        self.conv1 = WNConv1d(channels, channels, 7, padding=3 * dilation, dilation=dilation)
        self.act2 = Snake(channels)
        self.conv2 = WNConv1d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.conv2(self.act2(self.conv1(self.act1(x))))
        if torch.is_grad_enabled() and residual.requires_grad:
            return x + residual
        return residual.add_(x)  # inference: no new activation at the full audio rate


RESIDUAL_DILATIONS = (1, 3, 9)


class EncoderBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.res_units = nn.ModuleList(ResidualUnit(in_channels, d) for d in RESIDUAL_DILATIONS)
        self.act = Snake(in_channels)
        self.down = WNConv1d(
            in_channels, out_channels, 2 * stride, stride=stride, padding=math.ceil(stride / 2)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for unit in self.res_units:
            x = unit(x)
        return self.down(self.act(x))


class RepeatFrames(nn.Module):
    """Nearest-neighbour upsampling along time, the last dimension, whatever the tensor's rank."""

    def __init__(self, factor: int):
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.repeat_interleave(self.factor, dim=-1)


class DecoderBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int, nearest_upsample: bool = False):
        super().__init__()
        self.act = Snake(in_channels)
        self.up: nn.Module
        if nearest_upsample:
            # A Sequential so the conv's keys (up.1.*) are the reference's (layers.1.1.*).
            self.up = nn.Sequential(
                RepeatFrames(stride),
                WNConv1d(in_channels, out_channels, 2 * stride, padding="same", bias=False),
            )
        else:
            self.up = WNConv1d(
                in_channels,
                out_channels,
                2 * stride,
                stride=stride,
                padding=math.ceil(stride / 2),
                transposed=True,
            )
        self.res_units = nn.ModuleList(ResidualUnit(out_channels, d) for d in RESIDUAL_DILATIONS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.up(self.act(x))
        for unit in self.res_units:
            x = unit(x)
        return x


_RESIDUAL_REACH = 6 * sum(RESIDUAL_DILATIONS)  # a block's dilated kernel-7 convolutions; 1x1s add nothing


def encoder_reach(encoder: OobleckConfig) -> int:
    """The stretch of audio, in samples, that one latent frame is encoded from."""
    hop = math.prod(encoder.strides)
    span, step = 6, 1  # the kernel-7 input convolution
    for stride in encoder.strides:
        span += (_RESIDUAL_REACH + 2 * stride - 1) * step  # residual units, then the kernel-2s downsampling
        step *= stride
    return span + 2 * hop  # the kernel-3 output convolution, at the latent rate


def decoder_reach(decoder: OobleckConfig) -> int:
    """The stretch of latent frames, in audio samples, that one output sample is decoded from."""
    hop = math.prod(decoder.strides)
    span, step = 6 * hop, hop  # the kernel-7 input convolution, at the latent rate
    for stride in reversed(decoder.strides):
        span += step  # the kernel-2s transposed convolution reaches one input frame either way
        step //= stride
        span += _RESIDUAL_REACH * step
    return span + 6


def in_channels_last_on_cpu(stack: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Run a convolution stack over x [B, C, T]. On a CPU at inference it runs on [B, C, 1, T] in
    channels-last memory, which oneDNN convolves as it lies: given [B, C, T] it reorders each
    activation into its blocked layout and back around every convolution, a fresh copy of hundreds
    of MB at the audio rate. stable-audio-open-small's 11.9 s decode went from 7.9 to 5.0 s on 2
    cores. The layers take either rank."""
    if x.device.type != "cpu" or torch.is_grad_enabled():
        return stack(x)
    return stack(x.unsqueeze(2).contiguous(memory_format=torch.channels_last)).squeeze(2).contiguous()


def _widths(config: OobleckConfig) -> list[int]:
    return [config.channels * m for m in (1, *config.c_mults)]


class OobleckEncoder(nn.Module):
    def __init__(self, config: OobleckConfig):
        super().__init__()
        widths = _widths(config)
        self.in_conv = WNConv1d(config.audio_channels, widths[0], 7, padding=3)
        self.blocks = nn.ModuleList(
            EncoderBlock(widths[i], widths[i + 1], stride) for i, stride in enumerate(config.strides)
        )
        self.out_act = Snake(widths[-1])
        self.out_conv = WNConv1d(widths[-1], config.latent_dim, 3, padding=1)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return in_channels_last_on_cpu(self._encode, audio)

    def _encode(self, audio: torch.Tensor) -> torch.Tensor:
        x = self.in_conv(audio)
        for block in self.blocks:
            x = block(x)
        return self.out_conv(self.out_act(x))


class OobleckDecoder(nn.Module):
    def __init__(self, config: OobleckConfig):
        super().__init__()
        widths = _widths(config)[::-1]
        self.in_conv = WNConv1d(config.latent_dim, widths[0], 7, padding=3)
        self.blocks = nn.ModuleList(
            DecoderBlock(widths[i], widths[i + 1], stride, config.nearest_upsample)
            for i, stride in enumerate(reversed(config.strides))
        )
        self.out_act = Snake(widths[-1])
        self.out_conv = WNConv1d(widths[-1], config.audio_channels, 7, padding=3, bias=False)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        return in_channels_last_on_cpu(self._decode, latents)

    def _decode(self, latents: torch.Tensor) -> torch.Tensor:
        x = self.in_conv(latents)
        for block in self.blocks:
            x = block(x)
        return self.out_conv(self.out_act(x))
