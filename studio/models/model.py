"""A conditioned latent diffusion model: conditioners + DiT + Oobleck VAE, built from a ModelConfig.

`ConditionedModel` is what every model kind shares: the conditioners and how their outputs become
a `Conditioning` (the MAR model in mar.py builds on it too).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from studio.models.autoencoder import Autoencoder
from studio.models.conditioners import FactConditioner, NumberConditioner, PromptEncoder, build_conditioner
from studio.models.config import BEAT_GRID_ID, ModelConfig
from studio.models.dit import DiT
from studio.prompt_facts import bpm_in


@dataclass
class Conditioning:
    """What a model is conditioned on, one row per sample."""

    context: torch.Tensor | None  # [B, tokens, cond_dim]: the DiT cross-attends to them, MAR prepends them
    global_cond: torch.Tensor | None  # [B, global_dim]
    # [B, 2] float32 (beats per latent frame, beat position at frame 0) of the tempo a prompt
    # states, zeros where it states none; None for a model without a beat grid. Part of the prompt:
    # the unconditional branch and conditioning dropout zero it with the context.
    beats: torch.Tensor | None = None

    def unconditional(self, negative_context: torch.Tensor | None = None) -> Conditioning:
        """The CFG branch: zeroed (or negative-prompt) context tokens and no beat grid, same global
        condition."""
        if self.context is None:
            return self
        context = torch.zeros_like(self.context) if negative_context is None else negative_context
        return Conditioning(context, self.global_cond, _zeros_like(self.beats))

    def dropped(self, keep: torch.Tensor) -> Conditioning:
        """Training's CFG dropout: rows with keep 0 get the unconditional branch's zeroed context."""
        if self.context is None:
            return self
        beats = None if self.beats is None else self.beats * keep[:, None].to(self.beats)
        return Conditioning(self.context * keep[:, None, None].to(self.context), self.global_cond, beats)

    def to(self, dtype: torch.dtype) -> Conditioning:
        """The same condition in a model's compute dtype; the beat grid stays float32, since its
        phases run to hundreds of radians."""
        return Conditioning(
            None if self.context is None else self.context.to(dtype),
            None if self.global_cond is None else self.global_cond.to(dtype),
            self.beats,
        )

    def without_beats(self) -> Conditioning:
        """The same prompt with no beat grid: grid guidance's other branch."""
        return Conditioning(self.context, self.global_cond, _zeros_like(self.beats))

    def stacked(self, *others: Conditioning) -> Conditioning:
        """These rows, then each of `others`': guidance's branches in one batch."""
        columns = zip(self.fields(), *(other.fields() for other in others), strict=True)
        return Conditioning(*(None if column[0] is None else torch.cat(column) for column in columns))

    def fields(self) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        """(context, global_cond, beats): what a DiT is called with after x and t."""
        return self.context, self.global_cond, self.beats


def _zeros_like(tensor: torch.Tensor | None) -> torch.Tensor | None:
    return None if tensor is None else torch.zeros_like(tensor)


def beat_grid(prompts: list[str], starts: list[float], frame_seconds: float) -> torch.Tensor:
    """[B, 2] (beats per latent frame, beat position at frame 0) of the tempo each prompt states,
    for a window starting `starts` seconds after a downbeat; zeros where a prompt states none."""
    rows = []
    for prompt, start in zip(prompts, starts, strict=True):
        bpm = bpm_in(prompt)
        rows.append((0.0, 0.0) if bpm is None else (bpm / 60 * frame_seconds, bpm / 60 * start))
    return torch.tensor(rows, dtype=torch.float32)


class ConditionedModel(nn.Module):
    """The conditioners of a model and how their outputs are assembled into a Conditioning."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.conditioners = nn.ModuleDict(
            {c.id: build_conditioner(c, config.cond_dim) for c in config.conditioners}
        )

    def encode_conditions(
        self, prompts: list[str], seconds: list[float], starts: list[float] | None = None
    ) -> dict[str, torch.Tensor]:
        """Run every conditioner: prompt encoders and fact readers see `prompts`, number
        conditioners `seconds`. A model with a beat grid also gets BEAT_GRID_ID: where the beats of each
        prompt's tempo fall, for a window that starts `starts` seconds into its sound (a take
        starts on a beat: 0; a training crop wherever it was cut)."""
        outputs = {}
        if self.config.beat_grid:
            grid = beat_grid(prompts, starts or [0.0] * len(prompts), self.config.frame_seconds)
            outputs[BEAT_GRID_ID] = grid.to(next(self.parameters()).device)
        for cond_id, conditioner in self.conditioners.items():
            if isinstance(conditioner, NumberConditioner):
                values = torch.tensor(seconds, dtype=torch.float32, device=conditioner.freqs.device)
                outputs[cond_id] = conditioner(values)
            elif isinstance(conditioner, FactConditioner):
                outputs[cond_id] = conditioner(prompts)
            else:
                outputs[cond_id] = conditioner(prompts)[0]
        return outputs

    def assemble(self, tokens: dict[str, torch.Tensor]) -> Conditioning:
        """Concatenate conditioner outputs into context tokens and the global vector."""
        cfg = self.config
        context = None
        if cfg.context_cond_ids:
            context = torch.cat([tokens[i] for i in cfg.context_cond_ids], dim=1)
        global_cond = None
        if cfg.global_cond_ids:
            global_cond = torch.cat([tokens[i] for i in cfg.global_cond_ids], dim=-1)
            if global_cond.dim() == 3:
                global_cond = global_cond[:, 0]
        return Conditioning(context, global_cond, tokens.get(BEAT_GRID_ID))

    def condition(
        self, prompts: list[str], seconds: list[float], starts: list[float] | None = None
    ) -> Conditioning:
        return self.assemble(self.encode_conditions(prompts, seconds, starts))

    @property
    def prompt_encoder(self) -> PromptEncoder | None:
        return next((c for c in self.conditioners.values() if isinstance(c, PromptEncoder)), None)


class AudioModel(ConditionedModel):
    def __init__(self, config: ModelConfig):
        super().__init__(config)
        d = config.dit
        self.dit = DiT(
            io_channels=d.io_channels,
            embed_dim=d.embed_dim,
            depth=d.depth,
            num_heads=d.num_heads,
            context_dim=d.cond_token_dim if config.context_cond_ids else 0,
            global_dim=d.global_cond_dim if config.global_cond_ids else 0,
            qk_norm=d.qk_norm,
            patch_size=d.patch_size,
            beat_grid=d.beat_grid,
        )
        self.vae = Autoencoder(config.autoencoder)

    def velocity(self, x: torch.Tensor, t: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        dtype = self.dit.proj_in.weight.dtype
        cond = cond.to(dtype)
        # t stays float32: in bfloat16 the sampler's 0.99331 would become 0.99219.
        return self.dit(x.to(dtype), t.float(), *cond.fields()).to(x.dtype)

    def velocities(
        self, x: torch.Tensor, t: torch.Tensor, conds: tuple[Conditioning, ...]
    ) -> tuple[torch.Tensor, ...]:
        """The velocity under each of `conds` (guidance's branches), in one batch of them all."""
        n = len(conds)
        v = self.velocity(torch.cat((x,) * n), torch.cat((t,) * n), conds[0].stacked(*conds[1:]))
        return v.chunk(n)
