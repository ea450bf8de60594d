"""Discriminators: multi-scale STFT and multi-period for the autoencoder, DiT trunk + conv head for ARC."""

from __future__ import annotations

import copy
import itertools
import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from studio.models.dit import DiT


def _logits_and_features(
    disc: STFTDiscriminator | PeriodDiscriminator, x: torch.Tensor
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Run a 2-D discriminator's conv stack: (logits, every hidden activation for feature matching)."""
    features = []
    for conv in disc.convs:
        x = disc.act(conv(x))
        features.append(x)
    return disc.out(x), features


class STFTDiscriminator(nn.Module):
    """One resolution of an EnCodec-style discriminator: 2-D convs over the complex spectrogram.

    The spectrogram's real and imaginary parts of every channel are the input planes (time ×
    frequency); convolutions dilate in time and stride in frequency. Returns per-cell logits and
    every hidden activation (for feature matching).
    """

    def __init__(
        self, channels: int, filters: int, n_fft: int, hop: int, dilations: tuple[int, ...] = (1, 2, 4)
    ):
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        convs = [weight_norm(nn.Conv2d(2 * channels, filters, (3, 9), padding=(1, 4)))]
        convs += [
            weight_norm(nn.Conv2d(filters, filters, (3, 9), stride=(1, 2), dilation=(d, 1), padding=(d, 4)))
            for d in dilations
        ]
        convs.append(weight_norm(nn.Conv2d(filters, filters, (3, 3), padding=(1, 1))))
        self.convs = nn.ModuleList(convs)
        self.out = weight_norm(nn.Conv2d(filters, 1, (3, 3), padding=(1, 1)))
        self.act = nn.LeakyReLU(0.2)

    def forward(self, audio: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """audio [B, C, T] -> (logits [B, 1, frames, bins], hidden activations)."""
        batch, channels, samples = audio.shape
        spec = torch.stft(
            audio.reshape(batch * channels, samples).float(),
            self.n_fft,
            self.hop,
            window=self.window,
            normalized=True,
            return_complex=True,
        )
        spec = spec.view(batch, channels, *spec.shape[1:])
        x = torch.cat((spec.real, spec.imag), dim=1).transpose(2, 3)  # [B, 2C, frames, bins]
        return _logits_and_features(self, x)


class PeriodDiscriminator(nn.Module):
    """One period of HiFi-GAN's multi-period discriminator: the waveform folded into rows of
    `period` samples, then 2-D convs that stride down the rows and never mix the columns.

    Each column holds every period-th sample, so a signal that repeats with this period (a note's
    waveform cycle, or a multiple of it) is a slow, smooth column; a note turned into noise is not.
    Spectrogram discriminators see a harmonic only as energy in a band, which is why vocoders pair
    them with this one.
    """

    def __init__(self, channels: int, filters: int, period: int):
        super().__init__()
        self.period = period
        widths = [channels, filters, 2 * filters, 4 * filters, 4 * filters]
        convs = [
            weight_norm(nn.Conv2d(c_in, c_out, (5, 1), stride=(3, 1), padding=(2, 0)))
            for c_in, c_out in itertools.pairwise(widths)
        ]
        convs.append(weight_norm(nn.Conv2d(widths[-1], widths[-1], (5, 1), padding=(2, 0))))
        self.convs = nn.ModuleList(convs)
        self.out = weight_norm(nn.Conv2d(widths[-1], 1, (3, 1), padding=(1, 0)))
        self.act = nn.LeakyReLU(0.1)

    def forward(self, audio: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """audio [B, C, T] -> (logits [B, 1, rows, period], hidden activations)."""
        batch, channels, samples = audio.shape
        pad = -samples % self.period
        x = F.pad(audio.float(), (0, pad), mode="reflect") if pad else audio.float()
        x = x.view(batch, channels, -1, self.period)
        return _logits_and_features(self, x)


class AudioDiscriminator(nn.Module):
    """The autoencoder's discriminator: STFT discriminators at several FFT sizes (hop = n_fft / 4),
    as Oobleck VAEs are trained, plus optional period discriminators (DAC pairs both)."""

    def __init__(
        self,
        channels: int,
        filters: int = 32,
        n_ffts: tuple[int, ...] = (2048, 1024, 512, 256, 128),
        periods: tuple[int, ...] = (),
    ):
        super().__init__()
        self.scales = nn.ModuleList(STFTDiscriminator(channels, filters, n, n // 4) for n in n_ffts)
        self.periods = nn.ModuleList(PeriodDiscriminator(channels, filters, p) for p in periods)

    def forward(self, audio: torch.Tensor) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        """audio [B, C, T] -> (logits per discriminator, hidden activations per discriminator)."""
        outputs = [disc(audio) for disc in (*self.scales, *self.periods)]
        return [logits for logits, _ in outputs], [features for _, features in outputs]


def conv_head(in_channels: int, channels: int, groups: int, layers: int = 4) -> nn.Sequential:
    """`layers` × (conv1d k3 → GroupNorm → SiLU), then a 1×1 conv to one logit per frame."""
    groups = math.gcd(groups, channels)
    modules: list[nn.Module] = []
    for i in range(layers):
        modules += [
            nn.Conv1d(in_channels if i == 0 else channels, channels, 3, padding=1),
            nn.GroupNorm(groups, channels),
            nn.SiLU(),
        ]
    modules.append(nn.Conv1d(channels, 1, 1))
    return nn.Sequential(*modules)


class ArcDiscriminator(nn.Module):
    """ARC's discriminator: a copy of a pretrained DiT's input path and first blocks, plus a conv head.

    Starting from the flow model's own features means the discriminator already understands
    noisy latents and prompts on step one. It reads the same inputs as the DiT (noisy latents,
    time, cross-attention tokens, global condition) and returns one logit per sample: the head's
    per-frame logits averaged over frames.
    """

    def __init__(
        self,
        dit: DiT,
        depth_fraction: float = 0.75,
        head_channels: int = 256,
        head_groups: int = 32,
    ):
        super().__init__()
        depth = max(1, round(len(dit.blocks) * depth_fraction))
        self.trunk = copy.deepcopy(dit)
        del self.trunk.blocks[depth:]
        # The trunk's velocity output is never used; dropping it keeps every parameter trained (DDP).
        self.trunk.proj_out = self.trunk.output_conv = None
        self.head = conv_head(dit.proj_in.out_features, head_channels, head_groups)

    def hidden_states(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        context: torch.Tensor | None = None,
        global_cond: torch.Tensor | None = None,
        beats: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Token states [B, 1 + T, D] after the copied blocks."""
        return self.trunk.hidden_states(x, t, context, global_cond, beats)

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        context: torch.Tensor | None = None,
        global_cond: torch.Tensor | None = None,
        beats: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x [B, C, T] noisy latents at times t [B] -> logits [B] (higher = more real)."""
        frames = self.hidden_states(x, t, context, global_cond, beats)[:, 1:].transpose(1, 2)
        return self.head(frames).mean(dim=(1, 2))
