"""Samplers and schedules, as small pure functions.

Rectified flow: x_t = (1 - t) · x0 + t · ε, and the model returns the velocity v with
denoised = x_t - t · v. Time runs from t[0] (1 from pure noise, less for audio-to-audio) to 0.

Masked generative decoding (MAR models): the latent frames start masked and are filled in a
random order over a few iterations, each frame once, by a head that turns noise into a frame.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

VelocityFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
NoiseFn = Callable[[int], torch.Tensor]
HiddenFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (tokens, mask) -> backbone outputs
HeadFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (outputs [N, E], noise [N, C]) -> frames

# Diffusion (DiT) models; onestep is for a distilled one-step student (studio train vsd).
SAMPLERS = ("pingpong", "euler", "onestep")
MAR_SAMPLERS = ("mar",)  # masked autoregressive models; its steps are decoding iterations


def logsnr_schedule(steps: int, sigma_max: float = 1.0) -> torch.Tensor:
    """The ARC / stable-audio-tools schedule: t = sigmoid(-logSNR), logSNR linear up to 2.

    Starting below t ≈ 0.119 the logSNR start exceeds 2, so the schedule rises before it falls;
    that is what the reference does and what its checkpoints were tuned with.
    """
    sigma_max = min(sigma_max, 1.0)
    logsnr_max = -6.0 if sigma_max >= 1 else math.log((1 - sigma_max) / sigma_max + 1e-6)
    t = torch.sigmoid(-torch.linspace(logsnr_max, 2, steps + 1))
    t[0] = sigma_max
    t[-1] = 0
    return t


def linear_schedule(steps: int, sigma_max: float = 1.0) -> torch.Tensor:
    return torch.linspace(min(sigma_max, 1.0), 0, steps + 1)


def noised_init(init_latents: torch.Tensor, noise: torch.Tensor, sigma_max: float) -> torch.Tensor:
    """Start of audio-to-audio: the recording's latents moved to time sigma_max."""
    return init_latents * (1 - sigma_max) + noise * sigma_max


def sample_pingpong(
    velocity: VelocityFn, x: torch.Tensor, schedule: torch.Tensor, fresh_noise: NoiseFn
) -> torch.Tensor:
    """Ping-pong sampling (ARC): denoise fully, then re-noise to the next time with fresh noise.

    `fresh_noise(i)` is the noise drawn after step i (i = 1..steps); the last one is weighted 0
    but is still drawn, so a seeded run consumes the same random stream as the reference.
    """
    ones = x.new_ones(x.shape[0])
    for i in range(len(schedule) - 1):
        t, t_next = float(schedule[i]), float(schedule[i + 1])
        denoised = x - t * velocity(x, t * ones)
        x = (1 - t_next) * denoised + t_next * fresh_noise(i + 1)
    return x


def sample_euler(velocity: VelocityFn, x: torch.Tensor, schedule: torch.Tensor) -> torch.Tensor:
    """Euler integration of the flow ODE along the schedule."""
    ones = x.new_ones(x.shape[0])
    for i in range(len(schedule) - 1):
        t, t_next = float(schedule[i]), float(schedule[i + 1])
        x = x + (t_next - t) * velocity(x, t * ones)
    return x


def guided(
    branches: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, ...]],
    scale: float | torch.Tensor,
    grid_scale: float = 0.0,
) -> VelocityFn:
    """Classifier-free guidance: v = v_uncond + scale · (v_cond - v_uncond). With `grid_scale`,
    `branches` also gives the conditional velocity without the beat grid, and the grid gets a scale
    of its own (as InstructPix2Pix guides its image and its text apart): + grid_scale · (v_cond -
    v_cond without the grid)."""

    def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        conditional, unconditional, *gridless = branches(x, t)
        v = unconditional + (conditional - unconditional) * scale
        return v + (conditional - gridless[0]) * grid_scale if gridless else v

    return velocity


def guidance_runs(schedule: torch.Tensor, interval: tuple[float, float]) -> list[tuple[int, int, bool]]:
    """The schedule's steps as runs (first, end, guided): step i (from schedule[i] to schedule[i + 1])
    is guided where its time schedule[i] lies within `interval`. Sampling each run with its own
    velocity keeps the samplers as they are; every step belongs to exactly one run, in order."""
    low, high = interval
    runs: list[tuple[int, int, bool]] = []
    for i, t in enumerate(schedule[:-1].tolist()):
        guided_step = low <= t <= high
        if runs and runs[-1][2] == guided_step:
            runs[-1] = (runs[-1][0], i + 1, guided_step)
        else:
            runs.append((i, i + 1, guided_step))
    return runs


def sample(
    sampler: str,
    x: torch.Tensor,
    schedule: torch.Tensor,
    guided: VelocityFn,
    conditional: VelocityFn,
    interval: tuple[float, float],
    fresh_noise: NoiseFn,
) -> torch.Tensor:
    """Ping-pong or Euler along `schedule`, guided (`guided`) at the steps whose time lies within
    `interval` and the conditional branch alone (`conditional`) at the others. One-step: a single
    unguided evaluation from schedule[0] to 0, since a distilled student learned the teacher's
    guided output and guiding it again would apply the guidance twice."""
    if sampler == "onestep":
        return sample_euler(conditional, x, schedule)
    for first, end, guide in guidance_runs(schedule, interval):
        velocity, times = (guided if guide else conditional), schedule[first : end + 1]
        if sampler == "pingpong":
            x = sample_pingpong(velocity, x, times, lambda i, first=first: fresh_noise(first + i))
        else:
            x = sample_euler(velocity, x, times)
    return x


def schedule_for(sampler: str, steps: int, sigma_max: float = 1.0) -> torch.Tensor:
    """Ping-pong's log-SNR-spaced times, or Euler's evenly spaced ones."""
    return logsnr_schedule(steps, sigma_max) if sampler == "pingpong" else linear_schedule(steps, sigma_max)


def slerp(a: torch.Tensor, b: torch.Tensor, weight: float) -> torch.Tensor:
    """Spherical interpolation per leading row, treating each row as one vector.

    Keeps the norm of Gaussian noise (a straight blend would shrink it and muffle the take);
    falls back to a straight blend where a and b are (nearly) parallel.
    """
    flat_a, flat_b = a.flatten(1).double(), b.flatten(1).double()
    cos = (flat_a * flat_b).sum(1) / (flat_a.norm(dim=1) * flat_b.norm(dim=1)).clamp_min(1e-12)
    theta = cos.clamp(-1, 1).acos()
    sin = theta.sin()
    parallel = sin.abs() < 1e-6
    safe_sin = torch.where(parallel, torch.ones_like(sin), sin)
    wa = torch.where(parallel, torch.full_like(sin, 1 - weight), ((1 - weight) * theta).sin() / safe_sin)
    wb = torch.where(parallel, torch.full_like(sin, weight), (weight * theta).sin() / safe_sin)
    mixed = wa[:, None] * flat_a + wb[:, None] * flat_b
    return mixed.to(a.dtype).view_as(a)


def diversity_noise(anchor: torch.Tensor, own: torch.Tensor, diversity: float) -> torch.Tensor:
    """Noise for one take: diversity 0 is the shared anchor, 1 the take's own noise."""
    if diversity <= 0:
        return anchor
    if diversity >= 1:
        return own
    return slerp(anchor, own, diversity)


# -- masked generative decoding ------------------------------------------------------------------


def mask_schedule(length: int, iterations: int) -> list[int]:
    """How many of `length` positions are still masked after each decoding iteration.

    The cosine schedule floor(L · cos(π/2 · k/K)) for k = 1..K, kept strictly decreasing (and high
    enough for the iterations left) so that every iteration fills at least one position; it ends
    at 0. K is clamped to L: there cannot be more iterations than positions.
    """
    if length < 1 or iterations < 1:
        raise ValueError(f"need at least one position and one iteration, got {length} and {iterations}")
    iterations = min(iterations, length)
    schedule, masked = [], length
    for k in range(1, iterations + 1):
        cosine = math.floor(length * math.cos(math.pi / 2 * k / iterations))
        masked = max(iterations - k, min(cosine, masked - 1))
        schedule.append(masked)
    return schedule


def decoding_order(length: int, generator: torch.Generator) -> torch.Tensor:
    """A random order of the positions 0..length-1: the order they are filled in."""
    return torch.randperm(length, generator=generator)


def representation_cfg(z_cond: torch.Tensor, z_uncond: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance on backbone outputs: z_u + scale · (z_c - z_u), so the head runs once."""
    return z_uncond + scale * (z_cond - z_uncond)


def sample_masked(
    hidden: HiddenFn, head: HeadFn, noise: torch.Tensor, order: torch.Tensor, schedule: list[int]
) -> torch.Tensor:
    """Masked generative decoding of tokens [B, T, C], starting with every position masked.

    Each iteration runs the backbone on what is known so far (`hidden(tokens, mask)` -> [B, T, E],
    guidance included) and fills the next positions of each row's `order` [B, T] until
    `schedule[i]` positions are left masked; the head turns position p's noise `noise[:, p]` into
    its token, given the backbone's output there.
    """
    batch, length, channels = noise.shape
    tokens = torch.zeros_like(noise)
    mask = torch.ones(batch, length, dtype=torch.bool, device=noise.device)
    rows = torch.arange(batch, device=noise.device)[:, None]
    filled = 0
    for masked in schedule:
        z = hidden(tokens, mask)
        positions = order[:, filled : length - masked]
        picked = head(z[rows, positions].flatten(0, 1), noise[rows, positions].flatten(0, 1))
        tokens[rows, positions] = picked.view(batch, -1, channels).to(tokens.dtype)
        mask[rows, positions] = False
        filled = length - masked
    return tokens
