"""The variational autoencoder every model generates through: audio <-> latent frames.

Its encoder and decoder are either the Oobleck convolution stacks of the stable-audio checkpoints
(oobleck.py) or Studio's STFT frame models (spectral.py), as model_config.json names them; the
bottleneck between them is the same Gaussian posterior either way.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from studio.models.config import AutoencoderConfig, StftConfig
from studio.models.oobleck import OobleckDecoder, OobleckEncoder, decoder_reach, encoder_reach
from studio.models.spectral import StftDecoder, StftEncoder, stft_reach


def vae_sample(
    encoder_out: torch.Tensor, noise: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Split encoder output into (mean, stdev) and draw a latent; noise None returns the mean."""
    mean, scale = encoder_out.chunk(2, dim=1)
    stdev = F.softplus(scale) + 1e-4
    latents = mean if noise is None else mean + noise * stdev
    return latents, mean, stdev


def context_samples(config: AutoencoderConfig) -> int:
    """The wider of the encoder's and the decoder's receptive fields, in audio samples: a training
    chunk shorter than this never shows the autoencoder a latent with its whole context, which every
    latent of a long clip has at generation time."""
    encoder, decoder = config.encoder, config.decoder
    encoded = stft_reach(encoder) if isinstance(encoder, StftConfig) else encoder_reach(encoder)
    decoded = stft_reach(decoder) if isinstance(decoder, StftConfig) else decoder_reach(decoder)
    return max(encoded, decoded)


class Autoencoder(nn.Module):
    def __init__(self, config: AutoencoderConfig):
        super().__init__()
        encoder, decoder = config.encoder, config.decoder
        self.encoder = StftEncoder(encoder) if isinstance(encoder, StftConfig) else OobleckEncoder(encoder)
        self.decoder = StftDecoder(decoder) if isinstance(decoder, StftConfig) else OobleckDecoder(decoder)
        self.latent_dim = config.latent_dim
        self.hop = config.downsampling_ratio
        self.scale = config.scale

    def encode(self, audio: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Audio [B, channels, samples] -> latents [B, latent_dim, samples / hop].

        With a generator the latent is drawn from the posterior, as the reference does (but
        reproducibly); without one it is the posterior mean.
        """
        encoded = self.encoder(audio)
        noise = None
        if generator is not None:
            shape = (encoded.shape[0], self.latent_dim, encoded.shape[2])
            noise = torch.randn(shape, generator=generator, device=generator.device).to(encoded)
        latents, _, _ = vae_sample(encoded, noise)
        return latents / self.scale

    def phase_noise_shape(self, frames: int) -> tuple[int, ...] | None:
        """The shape of the noise one take's decode draws phases from (an STFT decoder's, where it
        is unsure of them), or None for a decoder that takes none."""
        return self.decoder.phase_noise_shape(frames) if isinstance(self.decoder, StftDecoder) else None

    def decode(self, latents: torch.Tensor, phase_noise: torch.Tensor | None = None) -> torch.Tensor:
        """Latents [B, latent_dim, frames] -> audio; `phase_noise`, white noise [B,
        *phase_noise_shape(frames)], for an STFT decoder (without it, a fixed draw)."""
        if isinstance(self.decoder, StftDecoder):
            return self.decoder(latents * self.scale, phase_noise)
        if phase_noise is not None:
            raise ValueError("an Oobleck decoder takes no phase noise")
        return self.decoder((latents * self.scale).to(self.decoder_dtype)).to(latents.dtype)

    @property
    def decoder_dtype(self) -> torch.dtype:
        """What the decoder computes in: float32, or float16 where the precision policy chose it."""
        return next(self.decoder.parameters()).dtype
