"""A conditioned latent diffusion model: conditioners + DiT + Oobleck VAE, built from a ModelConfig."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from studio.models.conditioners import NumberConditioner, PromptEncoder, build_conditioner
from studio.models.config import ModelConfig
from studio.models.dit import DiT
from studio.models.oobleck import OobleckVAE


@dataclass
class Conditioning:
    """What the DiT is conditioned on, one row per sample."""

    context: torch.Tensor | None  # [B, tokens, cond_dim] cross-attention tokens
    global_cond: torch.Tensor | None  # [B, global_dim]

    def unconditional(self, negative_context: torch.Tensor | None = None) -> Conditioning:
        """The CFG branch: zeroed (or negative-prompt) cross-attention tokens, same global condition."""
        if self.context is None:
            return self
        context = torch.zeros_like(self.context) if negative_context is None else negative_context
        return Conditioning(context, self.global_cond)


class AudioModel(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.conditioners = nn.ModuleDict(
            {c.id: build_conditioner(c, config.cond_dim) for c in config.conditioners}
        )
        d = config.dit
        self.dit = DiT(
            io_channels=d.io_channels,
            embed_dim=d.embed_dim,
            depth=d.depth,
            num_heads=d.num_heads,
            context_dim=d.cond_token_dim if config.cross_attention_cond_ids else 0,
            global_dim=d.global_cond_dim if config.global_cond_ids else 0,
            qk_norm=d.qk_norm,
        )
        self.vae = OobleckVAE(config.autoencoder)

    def encode_conditions(self, prompts: list[str], seconds: list[float]) -> dict[str, torch.Tensor]:
        """Run every conditioner: prompt encoders see `prompts`, number conditioners `seconds`."""
        outputs = {}
        for cond_id, conditioner in self.conditioners.items():
            if isinstance(conditioner, NumberConditioner):
                values = torch.tensor(seconds, dtype=torch.float32, device=conditioner.freqs.device)
                outputs[cond_id] = conditioner(values)
            else:
                outputs[cond_id] = conditioner(prompts)[0]
        return outputs

    def assemble(self, tokens: dict[str, torch.Tensor]) -> Conditioning:
        """Concatenate conditioner outputs into cross-attention tokens and the global vector."""
        cfg = self.config
        context = (
            torch.cat([tokens[i] for i in cfg.cross_attention_cond_ids], dim=1)
            if cfg.cross_attention_cond_ids
            else None
        )
        global_cond = None
        if cfg.global_cond_ids:
            global_cond = torch.cat([tokens[i] for i in cfg.global_cond_ids], dim=-1)
            if global_cond.dim() == 3:
                global_cond = global_cond[:, 0]
        return Conditioning(context, global_cond)

    def condition(self, prompts: list[str], seconds: list[float]) -> Conditioning:
        return self.assemble(self.encode_conditions(prompts, seconds))

    def velocity(self, x: torch.Tensor, t: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        dtype = self.dit.proj_in.weight.dtype
        context = None if cond.context is None else cond.context.to(dtype)
        global_cond = None if cond.global_cond is None else cond.global_cond.to(dtype)
        return self.dit(x.to(dtype), t.to(dtype), context, global_cond).to(x.dtype)

    def velocity_pair(
        self, x: torch.Tensor, t: torch.Tensor, cond: Conditioning, uncond: Conditioning
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Conditional and unconditional velocity in one doubled batch."""
        both = Conditioning(
            torch.cat((cond.context, uncond.context)) if cond.context is not None else None,
            torch.cat((cond.global_cond, uncond.global_cond)) if cond.global_cond is not None else None,
        )
        v = self.velocity(torch.cat((x, x)), torch.cat((t, t)), both)
        return v.chunk(2)

    @property
    def prompt_encoder(self) -> PromptEncoder | None:
        return next((c for c in self.conditioners.values() if isinstance(c, PromptEncoder)), None)
