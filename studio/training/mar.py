"""`studio train mar`: masked generative training of a MAR model (AudioDEAR; docs/mar.md).

Each step, every row masks ceil(r · T) of its T latent frames at random, with r uniform in
[mask_ratio_min, 1]. The backbone sees the other frames and the conditioning tokens; at the masked
frames its outputs condition the head, whose loss is taken there only:

- `--head diffusion`: the flow head with the rectified-flow loss, MAR's "diffusion loss" in our
  flow parametrisation: x_t = (1 - t)·y + t·ε with t logit-normal, velocity target ε - y;
- `--head energy`: the energy head with the two-sample energy score ‖x1 - y‖ + ‖x2 - y‖ - ‖x1 - x2‖
  of two noise draws per frame.

Representation distillation: with `--teacher` (a trained diffusion-head MAR model, frozen), the
student starts from the teacher's backbone and its loss adds `--distill-weight` λ times the MSE
between its backbone outputs and the teacher's at the masked frames of the same input.

As in flow training, the prompt tokens are zeroed for a `cond_dropout` share of rows (CFG's
unconditional branch; the seconds token is kept), the VAE is frozen and latents come from the
latent cache.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from studio.models import MarModel, ModelConfig, load_model
from studio.models.config import MAR_HEADS
from studio.models.mar import EnergyHead, FlowHead
from studio.training import losses
from studio.training.flow import latent_splits
from studio.training.loop import (
    EMA,
    Checkpoint,
    Run,
    TrainConfig,
    TrainingError,
    check_same_autoencoder,
    optimizer_step,
    step_generator,
    train_only,
)

HEAD_LOSSES = {"diffusion": "flow", "energy": "energy"}  # the name each head's loss is logged under
TEACHER_HINT = "train one with `studio train mar --head diffusion` and pass its RUN/model folder"


@dataclass
class MarTrainConfig(TrainConfig):
    init: Path | None = None  # model folder whose VAE and conditioners to reuse (a MAR model: all of it)
    config: Path | None = None  # mar_cond model_config.json: a new backbone and head over init's VAE
    cache: Path | None = None  # latent cache root; default CORPUS/.cache/latents
    head: str | None = None  # "diffusion" | "energy"; default the config's head (energy with a teacher)
    teacher: Path | None = None  # a diffusion-head MAR model folder to distil from
    distill_weight: float = 0.0  # λ of the representation MSE
    cond_dropout: float = 0.1
    weight_decay: float = 1e-3

    def check(self) -> None:
        super().check()
        if self.head is not None and self.head not in MAR_HEADS:
            raise TrainingError(f"--head must be one of {', '.join(MAR_HEADS)}, got '{self.head}'")
        if not 0 <= self.cond_dropout <= 1:
            raise TrainingError(f"--cond-dropout must be in [0, 1], got {self.cond_dropout}", "0.1 is usual")
        if self.distill_weight < 0:
            raise TrainingError(f"--distill-weight must not be negative, got {self.distill_weight}")
        if self.distill_weight > 0 and self.teacher is None:
            raise TrainingError(
                "--distill-weight needs --teacher: the diffusion-head MAR model whose representations "
                "the student learns",
                TEACHER_HINT,
            )
        if self.teacher is not None and self.distill_weight == 0:
            raise TrainingError(
                "--teacher is only used for distillation, and --distill-weight is 0",
                "set --distill-weight λ > 0 (see docs/training.md for how to choose it)",
            )
        if self.teacher is not None and self.init is not None:
            raise TrainingError(
                "pass --init or --teacher, not both: a student starts from its teacher's model",
                "leave out --init",
            )


def random_mask(batch: int, length: int, ratio_min: float, generator: torch.Generator) -> torch.Tensor:
    """bool [batch, length]: per row ceil(r · length) random positions masked, r ~ U(ratio_min, 1)."""
    ratio = ratio_min + (1 - ratio_min) * torch.rand(batch, generator=generator)
    counts = torch.ceil(ratio * length).clamp(1, length)
    ranks = torch.rand(batch, length, generator=generator).argsort(1).argsort(1)
    return ranks < counts[:, None]


@dataclass
class MarDraws:
    """The random draws of one step: kept prompts, masked frames, head noise and flow-head times."""

    keep: torch.Tensor  # [B] 1: conditioned, 0: prompt dropped (CFG)
    mask: torch.Tensor  # bool [B, T], True: masked, the frames the head learns
    noise: torch.Tensor  # [2, B, T, C]: the energy head's two samples; the flow head uses the first
    t: torch.Tensor  # [B, T] flow-head times

    @classmethod
    def draw(
        cls,
        shape: tuple[int, int, int],
        generator: torch.Generator,
        mask_ratio_min: float,
        cond_dropout: float,
    ) -> MarDraws:
        """Draws for tokens of `shape` (batch, frames, channels)."""
        batch, length, channels = shape
        return cls(
            keep=(torch.rand(batch, generator=generator) >= cond_dropout).float(),
            mask=random_mask(batch, length, mask_ratio_min, generator),
            noise=torch.randn((2, batch, length, channels), generator=generator),
            t=losses.logit_normal_t(batch * length, generator).view(batch, length),
        )

    def to(self, device: torch.device) -> MarDraws:
        return MarDraws(*(x.to(device) for x in (self.keep, self.mask, self.noise, self.t)))


def masked_hidden(
    model: MarModel, latents: torch.Tensor, prompts: list[str], seconds: list[float], draws: MarDraws
) -> tuple[torch.Tensor, torch.Tensor]:
    """The backbone's outputs [N, E] at the N masked frames of latents [B, C, T], and those frames [N, C]."""
    tokens = latents.transpose(1, 2)
    cond = model.condition(prompts, seconds).dropped(draws.keep)
    return model.hidden(tokens, draws.mask, cond)[draws.mask], tokens[draws.mask]


def head_loss(
    head: nn.Module, z: torch.Tensor, target: torch.Tensor, noise: torch.Tensor, t: torch.Tensor
) -> torch.Tensor:
    """The head's loss on N frames: energy score of two samples, or rectified flow at times t [N]."""
    if isinstance(head, EnergyHead):
        return losses.energy_score_loss(head(noise[0], z), head(noise[1], z), target)
    velocity = head(losses.add_noise(target, noise[0], t), t, z)
    return losses.rectified_flow_loss(velocity, target, noise[0])


class MaskedFrames(nn.Module):
    """Conditioners + backbone + head as one module (what the step trains and DDP wraps)."""

    def __init__(self, model: MarModel):
        super().__init__()
        self.model = model

    def forward(
        self, latents: torch.Tensor, prompts: list[str], seconds: list[float], draws: MarDraws
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(the head's loss on the masked frames, the backbone's outputs there [N, E])."""
        z, target = masked_hidden(self.model, latents, prompts, seconds, draws)
        loss = head_loss(self.model.head, z, target, draws.noise[:, draws.mask], draws.t[draws.mask])
        return loss, z


def with_head(config: ModelConfig, head: str) -> ModelConfig:
    """The same MAR model config with another head type."""
    if config.mar.head.type == head:
        return config
    raw = json.loads(json.dumps(config.raw))
    raw["model"]["mar"]["head"]["type"] = head
    return ModelConfig.from_dict(raw, source="model config")


def load_teacher(folder: Path) -> MarModel:
    teacher = load_model(folder)
    if not isinstance(teacher, MarModel) or not isinstance(teacher.head, FlowHead):
        raise TrainingError(
            f"{folder} is not a diffusion-head MAR model: the teacher is the same backbone trained with "
            "the diffusion head",
            TEACHER_HINT,
        )
    return teacher.requires_grad_(False).eval()


def mar_model(config: MarTrainConfig, teacher: MarModel | None) -> MarModel:
    """The model a new run starts from.

    --init a MAR model: that model (a new head if --head changes its type). --config: its backbone
    and head, new, over --init's VAE and conditioners. --teacher: the teacher's VAE, conditioners
    and backbone with an energy head (or --head's), for distillation.
    """
    source = config.teacher if teacher is not None else config.init
    if source is None:
        raise TrainingError(
            "MAR training needs --init: a model folder whose VAE and conditioners to reuse",
            "e.g. --init runs/flow/model --config recipes/studio-mini-mar/model_config.json",
        )
    base = teacher if teacher is not None else load_model(source)
    if config.config is not None:
        model_config = ModelConfig.from_file(config.config)
        if model_config.mar is None:
            raise TrainingError(
                f"{config.config} is a {model_config.model_type} config; `studio train mar` needs mar_cond",
                "start from recipes/studio-mini-mar/model_config.json (see docs/mar.md)",
            )
        check_same_autoencoder(model_config, base.config, config.config, source, conditioners=True)
    elif isinstance(base, MarModel):
        model_config = base.config
    else:
        raise TrainingError(
            f"{source} is a diffusion model: a new MAR model over its VAE needs --config",
            "e.g. --config recipes/studio-mini-mar/model_config.json",
        )
    head = config.head or ("energy" if teacher is not None else model_config.mar.head.type)
    model = MarModel(with_head(model_config, head))
    model.vae.load_state_dict(base.vae.state_dict())
    model.conditioners.load_state_dict(base.conditioners.state_dict())
    if teacher is not None or config.config is None:
        try:
            model.backbone.load_state_dict(base.backbone.state_dict())
        except RuntimeError as exc:
            raise TrainingError(
                f"{config.config}: its backbone differs from the teacher's in {source}, which the student "
                "starts from",
                "leave out --config, or copy model.mar from the teacher's config (only the head may differ)",
            ) from exc
        if model.config.mar.head == base.config.mar.head:
            model.head.load_state_dict(base.head.state_dict())
    return model


def train_mar(config: MarTrainConfig) -> Path:
    """Train (or continue) a MAR model; returns the exported model folder."""
    run = Run(config, "mar")
    state = run.saved_state()
    teacher = load_teacher(config.teacher) if config.teacher is not None else None
    model = MarModel(ModelConfig.from_dict(state["model_config"])) if state else mar_model(config, teacher)
    model_config = model.config
    model.to(run.device)
    if teacher is not None:
        teacher.to(run.device)
    trainable = train_only(model, model.backbone, model.head, model.conditioners)
    net = MaskedFrames(model)

    ema = EMA(net, config.ema_decay)
    optimizer = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=config.weight_decay)
    parts = {"model": model, "ema": ema, "optimizer": optimizer}
    start = run.restore(state, parts) if state else 0
    data = latent_splits(run, config.corpus, config.cache, model)
    ddp_net = run.ddp(net)
    loss_name = HEAD_LOSSES[model_config.mar.head.type]
    mask_ratio_min = model_config.mar.mask_ratio_min

    def step_fn(step: int, batch: dict) -> dict[str, float]:
        latents = batch["latents"].to(run.device, non_blocking=True)
        batch_size, channels, length = latents.shape
        generator = step_generator(config.seed, run.dist.rank, step)
        draws = MarDraws.draw((batch_size, length, channels), generator, mask_ratio_min, config.cond_dropout)
        draws = draws.to(run.device)
        prompts, seconds = list(batch["caption"]), batch["seconds"].tolist()
        with run.autocast():
            loss, z = ddp_net(latents, prompts, seconds, draws)
            values = {loss_name: loss.item()}
            if teacher is not None:
                with torch.no_grad():
                    target, _ = masked_hidden(teacher, latents, prompts, seconds, draws)
                distill = F.mse_loss(z.float(), target.float())
                loss = loss + config.distill_weight * distill
                values |= {"distill": distill.item(), "loss": loss.item()}
        optimizer_step(optimizer, loss, config.grad_clip)
        ema.update(net, step)
        return values

    validate_fn = None
    if data.valid is not None:
        validate_fn = _validator(net, ema, run.fixed_batches(data.valid), run.device, config.seed, loss_name)
    checkpoint = Checkpoint(model, ema, net, parts)
    return run.loop(start, data.train, step_fn, checkpoint, validate_fn)


def _validator(
    net: MaskedFrames, ema: EMA, fixed: list[dict], device: torch.device, seed: int, loss_name: str
) -> Callable[[], dict[str, float]]:
    """The head's loss of the EMA weights on fixed validation batches, masks and noise, prompts kept."""
    mask_ratio_min = net.model.config.mar.mask_ratio_min

    @torch.no_grad()
    def validate() -> dict[str, float]:
        generator = torch.Generator().manual_seed(seed)
        scores = []
        with ema.applied(net):
            for batch in fixed:
                latents = batch["latents"].to(device)
                batch_size, channels, length = latents.shape
                draws = MarDraws.draw((batch_size, length, channels), generator, mask_ratio_min, 0.0)
                loss, _ = net(latents, list(batch["caption"]), batch["seconds"].tolist(), draws.to(device))
                scores.append(loss.item())
        return {loss_name: sum(scores) / len(scores)}

    return validate
