"""Masked autoregressive (MAR) model over VAE latents with a per-frame sampling head (AudioDEAR).

The backbone is a bidirectional transformer over the latent frames as tokens. Masked frames read a
learned mask embedding instead of their latent, and the conditioning tokens (the seconds token,
then the prompt states) sit in front. At each masked position the backbone's output z conditions a
small head that turns Gaussian noise into that frame's latent:

- `FlowHead`: an MLP velocity field in our rectified-flow convention (x_t = (1 - t)·x0 + t·ε,
  velocity ε - x0), sampled with Euler over a few steps (MAR's "diffusion loss" head);
- `EnergyHead`: one pass from noise to frame, trained with the energy score.

Generation fills the frames in a random order over a few iterations (studio.sampling.sample_masked),
with classifier-free guidance applied to the backbone's outputs so the head runs once per frame.
See docs/mar.md.
"""

from __future__ import annotations

import torch
from torch import nn

from studio import sampling
from studio.models.autoencoder import Autoencoder
from studio.models.config import ModelConfig
from studio.models.dit import (
    DiTBlock,
    Float32LayerNorm,
    fourier_time_features,
    mlp,
    rotary_angles,
    rotary_inv_freq,
)
from studio.models.model import ConditionedModel, Conditioning


class MarBackbone(nn.Module):
    """Bidirectional pre-norm transformer over latent tokens with the conditioning tokens in front.

    Positions are rotary over the whole sequence, which is what tells the (identical) mask
    embeddings apart.
    """

    def __init__(
        self,
        io_channels: int,
        embed_dim: int,
        depth: int,
        num_heads: int,
        context_dim: int = 0,
        global_dim: int = 0,
        qk_norm: bool = True,
    ):
        super().__init__()
        head_dim = embed_dim // num_heads
        self.proj_in = nn.Linear(io_channels, embed_dim)
        self.mask_embed = nn.Parameter(0.02 * torch.randn(embed_dim))
        self.context_mlp = mlp(context_dim, embed_dim, bias=False) if context_dim else None
        self.global_mlp = mlp(global_dim, embed_dim, bias=False) if global_dim else None
        self.register_buffer("rotary_inv_freq", rotary_inv_freq(max(head_dim // 2, 32)))
        self.blocks = nn.ModuleList(DiTBlock(embed_dim, head_dim, qk_norm, None) for _ in range(depth))
        self.norm_out = Float32LayerNorm(embed_dim)

    def forward(
        self,
        tokens: torch.Tensor,
        mask: torch.Tensor,
        context: torch.Tensor | None = None,
        global_cond: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """tokens [B, T, C] latent frames, mask [B, T] (True: masked) -> hidden states [B, T, E]."""
        length = tokens.shape[1]
        x = torch.where(mask[..., None], self.mask_embed.to(tokens.dtype), self.proj_in(tokens))
        prefix = []
        if self.global_mlp is not None and global_cond is not None:
            prefix.append(self.global_mlp(global_cond)[:, None])
        if self.context_mlp is not None and context is not None:
            prefix.append(self.context_mlp(context))
        x = torch.cat((*prefix, x), dim=1)
        angles = rotary_angles(self.rotary_inv_freq, x.shape[1])
        for block in self.blocks:
            x = block(x, None, angles)
        return self.norm_out(x[:, -length:])


class AdaLNBlock(nn.Module):
    """Residual MLP block; the condition sets its LayerNorm's shift and scale and the residual's gate.

    The modulation starts at zero, so every block starts as the identity (DiT's adaLN-Zero).
    """

    def __init__(self, width: int):
        super().__init__()
        self.norm = Float32LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 3 * width))
        nn.init.zeros_(self.modulation[1].weight)
        nn.init.zeros_(self.modulation[1].bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale, gate = self.modulation(c).chunk(3, dim=-1)
        return x + gate * self.mlp(self.norm(x) * (1 + scale) + shift)


class AdaLNMLP(nn.Module):
    """x [N, in_dim] -> [N, out_dim] through residual AdaLN blocks conditioned on c [N, width]."""

    def __init__(self, in_dim: int, width: int, depth: int, out_dim: int):
        super().__init__()
        self.proj_in = nn.Linear(in_dim, width)
        self.blocks = nn.ModuleList(AdaLNBlock(width) for _ in range(depth))
        self.norm_out = Float32LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.modulation_out = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))
        self.proj_out = nn.Linear(width, out_dim)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        x = self.proj_in(x)
        for block in self.blocks:
            x = block(x, c)
        shift, scale = self.modulation_out(c).chunk(2, dim=-1)
        return self.proj_out(self.norm_out(x) * (1 + scale) + shift)


class EnergyHead(nn.Module):
    """One pass from a noise vector to a latent frame; the backbone's output z enters through AdaLN."""

    def __init__(self, latent_dim: int, cond_dim: int, width: int, depth: int):
        super().__init__()
        self.cond_proj = nn.Linear(cond_dim, width)
        self.net = AdaLNMLP(latent_dim, width, depth, latent_dim)

    def forward(self, noise: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """noise [N, C], z [N, E] -> frames [N, C]."""
        return self.net(noise, self.cond_proj(z))

    def sample(self, z: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        dtype = self.cond_proj.weight.dtype
        return self(noise.to(dtype), z.to(dtype)).to(noise.dtype)


class FlowHead(nn.Module):
    """Rectified-flow velocity of one latent frame given the backbone's output z and the time t.

    Sampled with Euler from t = 1 (noise) to 0 in `steps` steps; 1 step is the one-step baseline.
    """

    def __init__(
        self, latent_dim: int, cond_dim: int, width: int, depth: int, steps: int, time_features: int = 256
    ):
        super().__init__()
        self.steps = steps
        self.time_weight = nn.Parameter(torch.randn(time_features // 2, 1))
        self.time_mlp = mlp(time_features, width, bias=True)
        self.cond_proj = nn.Linear(cond_dim, width)
        self.net = AdaLNMLP(latent_dim, width, depth, latent_dim)
        # A zero velocity at the start, as MAR's diffusion head: training begins from a calm field.
        nn.init.zeros_(self.net.proj_out.weight)
        nn.init.zeros_(self.net.proj_out.bias)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """x_t [N, C], t [N], z [N, E] -> velocity [N, C]."""
        time_features = fourier_time_features(t, self.time_weight).to(self.cond_proj.weight.dtype)
        c = self.cond_proj(z) + self.time_mlp(time_features)
        return self.net(x_t, c)

    def sample(self, z: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        dtype = self.cond_proj.weight.dtype
        z = z.to(dtype)

        def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return self(x.to(dtype), t, z).to(x.dtype)  # t stays float32: a time is never rounded

        return sampling.sample_euler(velocity, noise, sampling.linear_schedule(self.steps))


class MarModel(ConditionedModel):
    """Conditioners + MAR backbone + sampling head + Oobleck VAE, built from a mar_cond ModelConfig."""

    def __init__(self, config: ModelConfig):
        super().__init__(config)
        m = config.mar
        self.backbone = MarBackbone(
            io_channels=m.io_channels,
            embed_dim=m.embed_dim,
            depth=m.depth,
            num_heads=m.num_heads,
            context_dim=config.cond_dim if config.context_cond_ids else 0,
            global_dim=config.cond_dim * len(config.global_cond_ids),
        )
        h = m.head
        if h.type == "energy":
            self.head: EnergyHead | FlowHead = EnergyHead(m.io_channels, m.embed_dim, h.width, h.depth)
        else:
            self.head = FlowHead(m.io_channels, m.embed_dim, h.width, h.depth, h.steps)
        self.vae = Autoencoder(config.autoencoder)

    def hidden(self, tokens: torch.Tensor, mask: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        """The backbone's outputs [B, T, E] for latent tokens [B, T, C] with `mask` [B, T] hidden."""
        dtype = self.backbone.proj_in.weight.dtype
        cond = cond.to(dtype)
        return self.backbone(tokens.to(dtype), mask, cond.context, cond.global_cond).to(tokens.dtype)

    def generate(
        self,
        cond: Conditioning,
        noise: torch.Tensor,
        order: torch.Tensor,
        iterations: int,
        uncond: Conditioning | None = None,
        cfg: float = 1.0,
    ) -> torch.Tensor:
        """Latents [B, C, T] decoded in `iterations` (clamped to T) from per-frame head noise
        `noise` [B, C, T], filling the frames in `order` [B, T]. With `uncond`, the backbone's
        outputs are guided with scale `cfg` before the head."""

        def hidden(tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            if uncond is None:
                return self.hidden(tokens, mask, cond)
            both = self.hidden(torch.cat((tokens, tokens)), torch.cat((mask, mask)), cond.stacked(uncond))
            return sampling.representation_cfg(*both.chunk(2), cfg)

        tokens_noise = noise.transpose(1, 2) * self.config.mar.head.temperature
        schedule = sampling.mask_schedule(noise.shape[2], iterations)
        return sampling.sample_masked(hidden, self.head.sample, tokens_noise, order, schedule).transpose(1, 2)
