"""`studio train vsd`: one-step generation from captions alone, by variational score distillation
(SwiftAudio, arXiv 2606.31259; VSD as in ProlificDreamer, Wang et al. 2023, in the form DMD and
DMD2 give it, Yin et al. 2024).

Three DiTs of one shape share the teacher's frozen conditioners:
  teacher  the trained model, frozen; its guided denoised prediction stands for the data's score
  fake     starts as the teacher and learns, by flow matching on the student's detached samples,
           the score of what the student makes now
  student  starts as the teacher and maps pure noise, prompt and seconds to clean latents in one
           evaluation: x̂0 = ε − v(ε, t = 1)

Each step makes `fake_updates` fake-score updates, then one student update: the student's samples,
noised to a time t, are pushed along the difference of the teacher's and the fake score's denoised
predictions (losses.distribution_matching_loss), plus `smoothness` × the temporal term
(losses.temporal_smoothness) that keeps one-step latents coherent along time. Prompts and lengths
come from the corpus's captions and its builder's designs (training.data.Prompts): no audio is read
and the VAE never runs. The student is exported as an `rf_denoiser` whose default sampler is
`onestep`: the engine makes a take with one unguided evaluation.
"""

from __future__ import annotations

import copy
import importlib.util
import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from torch import nn

from studio import sampling
from studio.data.manifest import read_manifest
from studio.models import AudioModel, Conditioning, ModelConfig, load_model
from studio.training import losses
from studio.training.data import Prompts, split_clips
from studio.training.loop import (
    EMA,
    Checkpoint,
    Run,
    TrainConfig,
    TrainingError,
    optimizer_step,
    require_diffusion,
    step_generator,
    train_only,
    unwrap,
    with_objective,
)

OBJECTIVE = "rf_denoiser"


@dataclass
class VsdTrainConfig(TrainConfig):
    teacher: Path | None = None  # the trained diffusion model folder to distil
    lr: float = 1e-5  # student
    fake_lr: float = 1e-5
    fake_updates: int = 5  # fake-score updates per student update (DMD2's two time-scale rule)
    cfg: float | None = None  # the teacher's guidance; None: its own default_cfg
    smoothness: float = 0.1  # weight of the temporal term; 0 turns it off (the ablation)
    designed_share: float = 0.5  # share of prompts designed afresh rather than read from captions
    time_min: float = 0.02  # the student loss noises its samples to t uniform in [time_min, time_max]
    time_max: float = 0.98


@dataclass
class Distiller:
    """The three networks of a step and what the teacher's guidance is."""

    student: nn.Module  # the DiT being distilled (DDP-wrapped under torchrun)
    fake: nn.Module
    teacher: nn.Module
    guidance: float
    interval: tuple[float, float]
    device: torch.device


def denoised(dit: nn.Module, x_t: torch.Tensor, t: torch.Tensor, cond: Conditioning) -> torch.Tensor:
    """A DiT's conditional estimate of x0 from x_t."""
    return losses.denoise(x_t, dit(x_t, t, *cond.fields()).float(), t)


def one_step(dit: nn.Module, noise: torch.Tensor, cond: Conditioning) -> torch.Tensor:
    """The student's sample: x̂0 = ε − v(ε, 1), one evaluation from pure noise."""
    return denoised(dit, noise, noise.new_ones(noise.shape[0]), cond)


def guided_denoised(
    dit: nn.Module,
    x_t: torch.Tensor,
    t: torch.Tensor,
    cond: Conditioning,
    guidance: float,
    interval: tuple[float, float],
) -> torch.Tensor:
    """The teacher's estimate of x0, guided as it samples: cfg on the rows whose t lies within its
    guidance interval, the conditional branch alone on the others."""
    if cond.context is None or guidance == 1:
        return denoised(dit, x_t, t, cond)
    both = cond.stacked(cond.unconditional())
    v_cond, v_uncond = dit(torch.cat((x_t, x_t)), torch.cat((t, t)), *both.fields()).chunk(2)
    inside = ((t >= interval[0]) & (t <= interval[1])).view(-1, *([1] * (x_t.dim() - 1)))
    velocity = torch.where(inside, v_uncond + guidance * (v_cond - v_uncond), v_cond)
    return losses.denoise(x_t, velocity.float(), t)


def fake_score_step(
    nets: Distiller,
    optimizer: torch.optim.Optimizer,
    cond: Conditioning,
    shape: tuple[int, ...],
    generator: torch.Generator,
    grad_clip: float,
) -> float:
    """One flow-matching update of the fake score on fresh, detached student samples."""
    noise = torch.randn(shape, generator=generator).to(nets.device)
    with torch.no_grad():
        x0 = one_step(unwrap(nets.student), noise, cond)
    t = losses.logit_normal_t(shape[0], generator).to(nets.device)
    renoise = torch.randn(shape, generator=generator).to(nets.device)
    velocity = nets.fake(losses.add_noise(x0, renoise, t), t, *cond.fields())
    loss = losses.rectified_flow_loss(velocity, x0, renoise)
    optimizer_step(optimizer, loss, grad_clip)
    return loss.item()


def student_step(
    nets: Distiller,
    optimizer: torch.optim.Optimizer,
    cond: Conditioning,
    shape: tuple[int, ...],
    generator: torch.Generator,
    config: VsdTrainConfig,
) -> dict[str, float]:
    """One student update: distribution matching at a random time, plus the temporal term."""
    noise = torch.randn(shape, generator=generator).to(nets.device)
    span = config.time_max - config.time_min
    t = (config.time_min + span * torch.rand(shape[0], generator=generator)).to(nets.device)
    renoise = torch.randn(shape, generator=generator).to(nets.device)
    x0 = one_step(nets.student, noise, cond)
    x_t = losses.add_noise(x0.detach(), renoise, t)
    with torch.no_grad():
        real = guided_denoised(nets.teacher, x_t, t, cond, nets.guidance, nets.interval)
        fake = denoised(unwrap(nets.fake), x_t, t, cond)
    matching = losses.distribution_matching_loss(x0, real, fake)
    smoothness = losses.temporal_smoothness(x0)
    optimizer_step(optimizer, matching + config.smoothness * smoothness, config.grad_clip)
    return {"distribution_matching": matching.item(), "smoothness": smoothness.item()}


def one_step_config(config: ModelConfig) -> ModelConfig:
    """The teacher's config for its one-step student: sampled with `onestep`, one step, unguided."""
    raw = json.loads(json.dumps(with_objective(config, OBJECTIVE, default_cfg=1.0).raw))
    raw.update(default_sampler="onestep", default_steps=1)
    raw.pop("guidance_interval", None)
    return ModelConfig.from_dict(raw, source="model config")


def load_teacher(config: VsdTrainConfig) -> AudioModel:
    if config.teacher is None:
        raise TrainingError(
            "VSD distils a trained model: it needs --teacher",
            "pass a diffusion model folder, e.g. models/studio-mini",
        )
    teacher = load_model(config.teacher)
    require_diffusion(teacher.config, config.teacher, "vsd")
    return teacher


def check_options(config: VsdTrainConfig) -> None:
    if config.fake_updates < 1:
        raise TrainingError(f"--fake-updates must be at least 1, got {config.fake_updates}", "DMD2 uses 5")
    if not 0 <= config.designed_share <= 1:
        raise TrainingError(f"--designed-share must be in [0, 1], got {config.designed_share}", "e.g. 0.5")
    if config.smoothness < 0 or config.fake_lr < 0:
        raise TrainingError("--smoothness and --fake-lr must not be negative")
    if config.designed_share > 0 and importlib.util.find_spec("mido") is None:
        raise TrainingError(
            "designing prompts uses the corpus builder, which needs mido (General MIDI designs)",
            "pip install mido, or pass --designed-share 0 to read the manifest's captions only",
        )
    if not 0 < config.time_min < config.time_max <= 1:
        raise TrainingError(
            f"the student's noise times [{config.time_min}, {config.time_max}] must lie in (0, 1] "
            "and not be empty",
            "e.g. --time-min 0.02 --time-max 0.98",
        )


def train_vsd(config: VsdTrainConfig) -> Path:
    """Distil --teacher into a one-step student from captions alone; returns the exported folder."""
    check_options(config)
    run = Run(config, "vsd")
    state = run.saved_state()
    teacher = load_teacher(config)
    guidance = teacher.config.guidance(config.cfg)
    if state:
        model = AudioModel(ModelConfig.from_dict(state["model_config"]))
    else:
        model = load_model(config.teacher)  # the student starts as the teacher
        model.config = one_step_config(teacher.config)
    model.to(run.device)
    fake = copy.deepcopy(teacher.dit).to(run.device)
    teacher_dit = teacher.dit.to(run.device).requires_grad_(False)
    train_only(model, model.dit)

    ema = EMA(model.dit, config.ema_decay)
    opt_student = torch.optim.AdamW(
        [p for p in model.dit.parameters() if p.requires_grad], lr=config.lr, betas=(0.9, 0.99)
    )
    opt_fake = torch.optim.AdamW(fake.parameters(), lr=config.fake_lr, betas=(0.9, 0.99))
    parts = {"model": model, "fake": fake, "ema": ema, "opt_student": opt_student, "opt_fake": opt_fake}
    start = run.restore(state, parts) if state else 0
    clips = read_manifest(config.corpus)
    window = model.config.max_seconds
    train = Prompts(split_clips(clips, "train", config.corpus), window, config.designed_share)
    nets = Distiller(
        run.ddp(model.dit), run.ddp(fake), teacher_dit, guidance, teacher.config.guidance_interval, run.device
    )
    latent_shape = (model.config.dit.io_channels, model.config.latent_length)

    def step_fn(step: int, batch: dict) -> dict[str, float]:
        generator = step_generator(config.seed, run.dist.rank, step)
        captions = list(batch["caption"])
        shape = (len(captions), *latent_shape)
        with torch.no_grad():
            cond = model.condition(captions, batch["seconds"].tolist())
        with run.autocast():
            fake_losses = [
                fake_score_step(nets, opt_fake, cond, shape, generator, config.grad_clip)
                for _ in range(config.fake_updates)
            ]
            values = student_step(nets, opt_student, cond, shape, generator, config)
        ema.update(model.dit, step)
        return {"fake_flow": sum(fake_losses) / len(fake_losses), **values}

    valid_clips = split_clips(clips, "valid", config.corpus, required=False)
    validate_fn = None
    if valid_clips:
        fixed = run.fixed_batches(Prompts(valid_clips, window))
        validate_fn = _validator(model, ema, teacher, guidance, fixed, latent_shape, run.device, config.seed)
    checkpoint = Checkpoint(model, ema, model.dit, parts)
    return run.loop(start, train, step_fn, checkpoint, validate_fn)


def _validator(
    model: AudioModel,
    ema: EMA,
    teacher: AudioModel,
    guidance: float,
    fixed: list[dict],
    latent_shape: tuple[int, int],
    device: torch.device,
    seed: int,
) -> Callable[[], dict[str, float]]:
    """How far the EMA student's one-step latents lie from the teacher's own takes (its default
    sampler and steps, guided as it samples) from the same noise and prompts. VSD matches
    distributions, not takes, so this need not reach 0; a rising gap means the student left the
    teacher. The prompts' conditioning (the conditioners are frozen) is computed once, and the
    teacher's takes on the first call."""
    generator = torch.Generator().manual_seed(seed)
    noises = [torch.randn((len(b["caption"]), *latent_shape), generator=generator) for b in fixed]
    with torch.no_grad():
        conds = [model.condition(list(b["caption"]), b["seconds"].tolist()) for b in fixed]
    references: list[torch.Tensor] = []
    sampler = teacher.config.sampler
    schedule = sampling.schedule_for(sampler, teacher.config.steps(sampler))

    @torch.no_grad()
    def validate() -> dict[str, float]:
        if not references:
            for cond, noise in zip(conds, noises, strict=True):
                pair = partial(teacher.velocities, conds=(cond, cond.unconditional()))
                references.append(
                    sampling.sample(
                        sampler,
                        noise.to(device),
                        schedule,
                        sampling.guided(pair, guidance),
                        partial(teacher.velocity, cond=cond),
                        teacher.config.guidance_interval,
                        lambda _, shape=noise.shape: torch.randn(shape, generator=generator).to(device),
                    )
                )
        with ema.applied(model.dit):
            gaps = [
                torch.nn.functional.mse_loss(one_step(model.dit, noise.to(device), cond), reference).item()
                for cond, noise, reference in zip(conds, noises, references, strict=True)
            ]
        return {"teacher_gap": sum(gaps) / len(gaps)}

    return validate
