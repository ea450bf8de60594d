"""Diffusion transformer over VAE latents, as used by stable-audio-open(-small).

Pre-norm blocks of self-attention (q/k LayerNorm, partial NeoX rotary), cross-attention to the
conditioning tokens and a SwiGLU feed-forward. The global condition plus the timestep embedding is
prepended as one extra token. The network predicts a rectified-flow velocity. With a patch size
p > 1 each token carries p consecutive latent frames, so a VAE with a finer hop keeps the DiT's
sequence (and its cost) as short as a coarser one's.

A DiT built with `beat_grid` also reads where the beats of a stated tempo fall: per latent frame,
the phase within the beat and within a 4/4 bar, added to the frame tokens through a projection
that starts at zero (so it warm-starts from a model without one unchanged). A tempo number read
through cross-attention leaves the network to discover the beat period alone; given the grid, it
only has to put onsets on it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def rotary_inv_freq(rotary_dim: int, base: float = 10000.0) -> torch.Tensor:
    return 1.0 / (base ** (torch.arange(0, rotary_dim, 2, dtype=torch.float32) / rotary_dim))


def rotary_angles(inv_freq: torch.Tensor, seq_len: int) -> torch.Tensor:
    """[seq_len, rotary_dim] angles; both halves repeat the frequencies (NeoX layout)."""
    positions = torch.arange(seq_len, device=inv_freq.device, dtype=torch.float32)
    freqs = torch.outer(positions, inv_freq.float())
    return torch.cat((freqs, freqs), dim=-1)


def apply_rotary(x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Rotate the first `angles.shape[-1]` features of x [..., seq, dim]; the rest pass through."""
    rot_dim = angles.shape[-1]
    rotated, passthrough = x[..., :rot_dim].float(), x[..., rot_dim:]
    first, second = rotated.chunk(2, dim=-1)
    rotated = rotated * angles.cos() + torch.cat((-second, first), dim=-1) * angles.sin()
    return torch.cat((rotated.to(x.dtype), passthrough), dim=-1)


def fourier_time_features(t: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """[B] times -> [B, 2 * len(weight)] float32 features cos/sin(2π t W).

    Always in float32: with |W| up to ~3 the angles reach ~20 rad, where bfloat16 is off by 0.06.
    """
    angles = 2 * math.pi * t[:, None].float() @ weight.float().T
    return torch.cat((angles.cos(), angles.sin()), dim=-1)


BEAT_FEATURES = 4  # sin and cos of the phase within the beat and within the bar
BEATS_PER_BAR = 4


def beat_features(beats: torch.Tensor, frames: int) -> torch.Tensor:
    """[B, 2] (beats per latent frame, beat position at frame 0) -> [B, 4, frames] float32 sin/cos
    of the phase within each beat and each 4/4 bar. A row with no tempo (0 beats per frame) is
    all zeros."""
    beats = beats.float()
    per_frame, first = beats[:, :1], beats[:, 1:]
    position = first + per_frame * torch.arange(frames, device=beats.device, dtype=torch.float32)
    beat, bar = 2 * math.pi * position, 2 * math.pi * position / BEATS_PER_BAR
    features = torch.stack((beat.sin(), beat.cos(), bar.sin(), bar.cos()), dim=1)
    return features * (per_frame > 0)[:, :, None]


def mlp(dim_in: int, dim: int, bias: bool) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim_in, dim, bias=bias), nn.SiLU(), nn.Linear(dim, dim, bias=bias))


class Float32LayerNorm(nn.LayerNorm):
    """LayerNorm whose statistics are taken in float32 whatever the activations' dtype; the result
    comes back in the input's dtype. In a float32 model it is exactly nn.LayerNorm."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = None if self.weight is None else self.weight.float()
        bias = None if self.bias is None else self.bias.float()
        return F.layer_norm(x.float(), self.normalized_shape, weight, bias, self.eps).to(x.dtype)


def fixed_bias_layer_norm(dim: int) -> Float32LayerNorm:
    """LayerNorm whose bias is kept (as the checkpoints store it) but never trained."""
    norm = Float32LayerNorm(dim, eps=1e-5)
    norm.bias.requires_grad_(False)
    return norm


class Attention(nn.Module):
    """Multi-head attention; self-attention when `context_dim` is None, else cross-attention."""

    def __init__(self, dim: int, head_dim: int, qk_norm: bool, context_dim: int | None = None):
        super().__init__()
        self.num_heads = dim // head_dim
        self.is_cross = context_dim is not None
        if self.is_cross:
            self.q = nn.Linear(dim, dim, bias=False)
            self.kv = nn.Linear(context_dim, context_dim * 2, bias=False)
        else:
            self.qkv = nn.Linear(dim, dim * 3, bias=False)
        self.out = nn.Linear(dim, dim, bias=False)
        self.q_norm = Float32LayerNorm(head_dim, eps=1e-6) if qk_norm else nn.Identity()
        self.k_norm = Float32LayerNorm(head_dim, eps=1e-6) if qk_norm else nn.Identity()

    def heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, seq, _ = x.shape
        return x.view(batch, seq, self.num_heads, -1).transpose(1, 2)

    def forward(
        self, x: torch.Tensor, context: torch.Tensor | None = None, angles: torch.Tensor | None = None
    ) -> torch.Tensor:
        if self.is_cross:
            q = self.q(x)
            k, v = self.kv(context).chunk(2, dim=-1)
        else:
            q, k, v = self.qkv(x).chunk(3, dim=-1)
        q, k, v = self.heads(q), self.heads(k), self.heads(v)
        q, k = self.q_norm(q), self.k_norm(k)
        if angles is not None:
            q, k = apply_rotary(q, angles), apply_rotary(k, angles)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.out(out.transpose(1, 2).flatten(2))


class SwiGLU(nn.Module):
    def __init__(self, dim: int, mult: int = 4):
        super().__init__()
        self.up = nn.Linear(dim, dim * mult * 2)
        self.down = nn.Linear(dim * mult, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = self.up(x).chunk(2, dim=-1)
        return self.down(value * F.silu(gate))


class DiTBlock(nn.Module):
    def __init__(self, dim: int, head_dim: int, qk_norm: bool, context_dim: int | None):
        super().__init__()
        self.self_norm = fixed_bias_layer_norm(dim)
        self.self_attn = Attention(dim, head_dim, qk_norm)
        self.cross_norm = fixed_bias_layer_norm(dim) if context_dim is not None else None
        self.cross_attn = Attention(dim, head_dim, qk_norm, context_dim) if context_dim is not None else None
        self.ff_norm = fixed_bias_layer_norm(dim)
        self.ff = SwiGLU(dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None, angles: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.self_norm(x), angles=angles)
        if self.cross_attn is not None and context is not None:
            x = x + self.cross_attn(self.cross_norm(x), context=context)
        return x + self.ff(self.ff_norm(x))


def patchify(x: torch.Tensor, patch_size: int) -> torch.Tensor:
    """[B, C, T] latents -> [B, ceil(T / p), C · p] tokens, channel-major like the reference's
    "b (t p) c -> b t (c p)"; a ragged end is zero-padded."""
    batch, channels, frames = x.shape
    x = F.pad(x, (0, -frames % patch_size))
    x = x.reshape(batch, channels, -1, patch_size).permute(0, 2, 1, 3)
    return x.reshape(batch, x.shape[1], channels * patch_size)


def unpatchify(tokens: torch.Tensor, patch_size: int, frames: int) -> torch.Tensor:
    """The inverse of `patchify`: [B, N, C · p] -> [B, C, frames]."""
    batch, count, features = tokens.shape
    x = tokens.reshape(batch, count, features // patch_size, patch_size).permute(0, 2, 1, 3)
    return x.reshape(batch, features // patch_size, count * patch_size)[..., :frames]


class DiT(nn.Module):
    """Velocity network v(x_t, t | context tokens, global vector)."""

    def __init__(
        self,
        io_channels: int,
        embed_dim: int,
        depth: int,
        num_heads: int,
        context_dim: int = 0,
        global_dim: int = 0,
        qk_norm: bool = True,
        time_features: int = 256,
        patch_size: int = 1,
        beat_grid: bool = False,
    ):
        super().__init__()
        self.patch_size = patch_size
        head_dim = embed_dim // num_heads
        self.time_weight = nn.Parameter(torch.randn(time_features // 2, 1))
        self.time_mlp = mlp(time_features, embed_dim, bias=True)
        self.context_mlp = mlp(context_dim, embed_dim, bias=False) if context_dim else None
        self.global_mlp = mlp(global_dim, embed_dim, bias=False) if global_dim else None
        self.input_conv = nn.Conv1d(io_channels, io_channels, 1, bias=False)
        self.output_conv = nn.Conv1d(io_channels, io_channels, 1, bias=False)
        self.proj_in = nn.Linear(io_channels * patch_size, embed_dim, bias=False)
        self.proj_out = nn.Linear(embed_dim, io_channels * patch_size, bias=False)
        self.beat_in = nn.Linear(BEAT_FEATURES * patch_size, embed_dim, bias=False) if beat_grid else None
        if self.beat_in is not None:
            nn.init.zeros_(self.beat_in.weight)
        # Rotary covers half of each head (at least 32 features), like the reference checkpoints.
        self.register_buffer("rotary_inv_freq", rotary_inv_freq(max(head_dim // 2, 32)))
        block_context_dim = embed_dim if context_dim else None
        self.blocks = nn.ModuleList(
            DiTBlock(embed_dim, head_dim, qk_norm, block_context_dim) for _ in range(depth)
        )

    def hidden_states(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        context: torch.Tensor | None = None,
        global_cond: torch.Tensor | None = None,
        beats: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Token states [B, 1 + T / patch_size, D] after the blocks (the first token is the global one)."""
        time_features = fourier_time_features(t, self.time_weight)
        global_token = self.time_mlp(time_features.to(self.proj_in.weight.dtype))
        if self.global_mlp is not None and global_cond is not None:
            global_token = global_token + self.global_mlp(global_cond)
        if self.context_mlp is not None and context is not None:
            context = self.context_mlp(context)
        x = self.input_conv(x) + x
        frame_tokens = self.proj_in(patchify(x, self.patch_size))
        if self.beat_in is not None and beats is not None:
            grid = beat_features(beats, x.shape[-1]).to(frame_tokens.dtype)
            frame_tokens = frame_tokens + self.beat_in(patchify(grid, self.patch_size))
        tokens = torch.cat((global_token[:, None], frame_tokens), dim=1)
        angles = rotary_angles(self.rotary_inv_freq, tokens.shape[1])
        for block in self.blocks:
            tokens = block(tokens, context, angles)
        return tokens

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        context: torch.Tensor | None = None,
        global_cond: torch.Tensor | None = None,
        beats: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x [B, C, T] latents, t [B] in [0, 1], beats [B, 2] (see beat_features) -> velocity [B, C, T]."""
        tokens = self.hidden_states(x, t, context, global_cond, beats)
        y = unpatchify(self.proj_out(tokens[:, 1:]), self.patch_size, x.shape[-1])
        return self.output_conv(y) + y
