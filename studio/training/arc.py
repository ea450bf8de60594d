"""`studio train arc`: Adversarial Relativistic-Contrastive post-training (Novack et al., 2025,
"Fast Text-to-Audio Generation with Adversarial Post-Training").

The generator G starts as the pretrained flow DiT. From real latents x0 noised to a time t whose
log-SNR is uniform in [-6, 2] it denoises in one step, x̂0 = x_t - t · G(x_t, t). Real and
generated latents are re-noised with the same noise to a level s drawn from a shifted
logit-normal and judged, with their shared prompt, by the discriminator D (a copy of the flow
DiT's input path and first ~75% of blocks + a conv head):

    D:  softplus(D(x̂0_s) - D(x0_s))  +  λ · softplus(D(x0_s, another row's prompt) - D(x0_s, prompt))
    G:  softplus(D(x0_s) - D(x̂0_s))

Each step is one D update then one G update. Conditioners stay frozen (CFG is not used, so there
is no dropout); the exported model is marked `rf_denoiser`, which the engine samples with
ping-pong in a few steps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from studio.models import AudioModel, Conditioning, ModelConfig, load_model
from studio.training import losses
from studio.training.data import window_conditions
from studio.training.discriminators import ArcDiscriminator
from studio.training.flow import latent_splits
from studio.training.loop import (
    EMA,
    Checkpoint,
    Run,
    TrainConfig,
    TrainingError,
    frozen,
    optimizer_step,
    require_diffusion,
    step_generator,
    train_only,
    unwrap,
    with_objective,
)

OBJECTIVE = "rf_denoiser"
VALIDATION_TIMES = (0.2, 0.5, 0.8, 0.95)


@dataclass
class ArcTrainConfig(TrainConfig):
    init: Path | None = None  # the pretrained flow model folder
    cache: Path | None = None  # latent cache root; default CORPUS/.cache/latents
    lr: float = 1e-5  # generator
    disc_lr: float = 1e-5
    depth_fraction: float = 0.75  # share of the DiT's blocks the discriminator copies
    head_channels: int = 256
    contrastive_weight: float = 1.0  # λ
    logsnr_min: float = -6.0  # generator times: log-SNR uniform in [logsnr_min, logsnr_max]
    logsnr_max: float = 2.0
    # Discriminator re-noising: s = sigmoid(mean + std · n). The negative mean shifts it toward low
    # noise, where the fine detail a few-step generator gets wrong is still visible.
    disc_time_mean: float = -1.0
    disc_time_std: float = 1.0


@dataclass
class ArcBatch:
    """One batch with its (frozen) conditioning and the prompt-swapped context for the contrastive loss."""

    latents: torch.Tensor  # x0 [B, C, T]
    cond: Conditioning
    wrong_context: torch.Tensor | None  # each row's context with another row's prompt; None: no contrast
    contrast: torch.Tensor  # bool [B]: the swapped prompt is a different text


@dataclass
class ArcNoise:
    """The random draws of one update: generator time and noise, discriminator level and noise."""

    t: torch.Tensor
    noise: torch.Tensor
    s: torch.Tensor
    renoise: torch.Tensor

    @classmethod
    def draw(cls, shape: torch.Size, generator: torch.Generator, config: ArcTrainConfig) -> ArcNoise:
        batch = shape[0]
        return cls(
            t=losses.logsnr_uniform_t(batch, generator, config.logsnr_min, config.logsnr_max),
            noise=torch.randn(shape, generator=generator),
            s=losses.logit_normal_t(batch, generator, config.disc_time_mean, config.disc_time_std),
            renoise=torch.randn(shape, generator=generator),
        )

    def to(self, device: torch.device) -> ArcNoise:
        return ArcNoise(*(x.to(device) for x in (self.t, self.noise, self.s, self.renoise)))


@torch.no_grad()
def arc_batch(
    model: AudioModel,
    latents: torch.Tensor,
    prompts: list[str],
    seconds: list[float],
    starts: list[float],
    generator: torch.Generator,
) -> ArcBatch:
    """Condition a batch (windows `starts` seconds into their clips); for the contrastive loss,
    rotate the prompts by a random non-zero shift so every row meets another row's prompt (its own
    seconds kept, so only the text is wrong)."""
    tokens = model.encode_conditions(prompts, seconds, starts)
    cond = model.assemble(tokens)
    prompt = model.config.prompt_conditioner
    rows = len(prompts)
    if prompt is None or cond.context is None or rows < 2:
        return ArcBatch(latents, cond, None, torch.zeros(rows, dtype=torch.bool, device=latents.device))
    shift = int(torch.randint(1, rows, (), generator=generator))
    order = torch.roll(torch.arange(rows), shift)
    swapped = dict(tokens)
    swapped[prompt.id] = tokens[prompt.id][order.to(tokens[prompt.id].device)]
    contrast = torch.tensor(
        [prompts[i] != prompts[j] for i, j in enumerate(order.tolist())], device=latents.device
    )
    return ArcBatch(latents, cond, model.assemble(swapped).context, contrast)


def generate_x0(dit: nn.Module, batch: ArcBatch, draws: ArcNoise) -> torch.Tensor:
    """The generator's one-step estimate x̂0 = x_t - t · v(x_t, t)."""
    x_t = losses.add_noise(batch.latents, draws.noise, draws.t)
    velocity = dit(x_t, draws.t, *batch.cond.fields())
    return losses.denoise(x_t, velocity.float(), draws.t)


def _judge(
    disc: nn.Module,
    xs: list[torch.Tensor],
    s: torch.Tensor,
    contexts: list[torch.Tensor | None],
    cond: Conditioning,
) -> tuple[torch.Tensor, ...]:
    """Discriminator logits for several inputs at level s in one forward (one DDP call per update)."""
    k = len(xs)
    context = None if contexts[0] is None else torch.cat(contexts)
    global_cond = None if cond.global_cond is None else cond.global_cond.repeat(k, 1)
    beats = None if cond.beats is None else cond.beats.repeat(k, 1)
    return disc(torch.cat(xs), s.repeat(k), context, global_cond, beats).float().chunk(k)


def discriminator_step(
    dit: nn.Module,
    disc: nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: ArcBatch,
    draws: ArcNoise,
    config: ArcTrainConfig,
) -> dict[str, float]:
    """One D update on relativistic pairs (+ contrastive term); the generator is only run."""
    with torch.no_grad():
        fake = generate_x0(unwrap(dit), batch, draws)
    real_s = losses.add_noise(batch.latents, draws.renoise, draws.s)
    fake_s = losses.add_noise(fake, draws.renoise, draws.s)
    xs, contexts = [real_s, fake_s], [batch.cond.context, batch.cond.context]
    if batch.wrong_context is not None:
        xs.append(real_s)
        contexts.append(batch.wrong_context)
    logits = _judge(disc, xs, draws.s, contexts, batch.cond)
    relativistic = losses.relativistic_discriminator_loss(logits[0], logits[1])
    loss = relativistic
    values = {"d_relativistic": relativistic.item(), "d_margin": (logits[0] - logits[1]).mean().item()}
    if batch.wrong_context is not None:
        contrastive = losses.contrastive_discriminator_loss(logits[0], logits[2], batch.contrast)
        loss = loss + config.contrastive_weight * contrastive
        values["d_contrastive"] = contrastive.item()
    optimizer_step(optimizer, loss, config.grad_clip)
    return values


def generator_step(
    dit: nn.Module,
    disc: nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: ArcBatch,
    draws: ArcNoise,
    config: ArcTrainConfig,
) -> dict[str, float]:
    """One G update: push D(x̂0_s) above D(x0_s) through a frozen discriminator."""
    fake = generate_x0(dit, batch, draws)
    real_s = losses.add_noise(batch.latents, draws.renoise, draws.s)
    fake_s = losses.add_noise(fake, draws.renoise, draws.s)
    with frozen(disc) as judge:
        real, fake_logits = _judge(judge, [real_s, fake_s], draws.s, [batch.cond.context] * 2, batch.cond)
    loss = losses.relativistic_generator_loss(real, fake_logits)
    optimizer_step(optimizer, loss, config.grad_clip)
    return {"g_relativistic": loss.item()}


def arc_model(config: ArcTrainConfig) -> AudioModel:
    if config.init is None:
        raise TrainingError(
            "ARC post-training needs --init: the pretrained flow model folder",
            "train one with `studio train flow` and pass its RUN/model folder",
        )
    model = load_model(config.init)
    require_diffusion(model.config, config.init, "arc")
    # The ARC generator learns to make the data in a few steps unguided, as the paper runs it.
    model.config = with_objective(model.config, OBJECTIVE, default_cfg=1.0)
    return model


def train_arc(config: ArcTrainConfig) -> Path:
    """ARC post-train a flow model into a few-step ping-pong model; returns the exported folder."""
    if not 0 < config.depth_fraction <= 1:
        raise TrainingError(
            f"--depth-fraction must be in (0, 1], got {config.depth_fraction}", "0.75 is the paper's"
        )
    if config.logsnr_min >= config.logsnr_max:
        raise TrainingError("the log-SNR range is empty", "e.g. --logsnr-min -6 --logsnr-max 2")
    run = Run(config, "arc")
    state = run.saved_state()
    model = AudioModel(ModelConfig.from_dict(state["model_config"])) if state else arc_model(config)
    model.to(run.device)
    # Built from the flow DiT before anything is frozen, so it copies the DiT's own trainable set.
    disc = ArcDiscriminator(model.dit, config.depth_fraction, config.head_channels).to(run.device)
    train_only(model, model.dit)

    ema = EMA(model.dit, config.ema_decay)
    opt_g = torch.optim.AdamW(
        [p for p in model.dit.parameters() if p.requires_grad], lr=config.lr, betas=(0.9, 0.99)
    )
    opt_d = torch.optim.AdamW(
        [p for p in disc.parameters() if p.requires_grad], lr=config.disc_lr, betas=(0.9, 0.99)
    )
    parts = {"model": model, "discriminator": disc, "ema": ema, "opt_g": opt_g, "opt_d": opt_d}
    start = run.restore(state, parts) if state else 0
    data = latent_splits(run, config.corpus, config.cache, model)
    ddp_dit, ddp_disc = run.ddp(model.dit), run.ddp(disc)

    def step_fn(step: int, batch: dict) -> dict[str, float]:
        latents = batch["latents"].to(run.device, non_blocking=True)
        generator = step_generator(config.seed, run.dist.rank, step)
        arc = arc_batch(model, latents, *window_conditions(batch), generator)
        with run.autocast():
            values = discriminator_step(
                ddp_dit,
                ddp_disc,
                opt_d,
                arc,
                ArcNoise.draw(latents.shape, generator, config).to(run.device),
                config,
            )
            values |= generator_step(
                ddp_dit,
                ddp_disc,
                opt_g,
                arc,
                ArcNoise.draw(latents.shape, generator, config).to(run.device),
                config,
            )
        ema.update(model.dit, step)
        return values

    validate_fn = None
    if data.valid is not None:
        validate_fn = _validator(model, ema, run.fixed_batches(data.valid), run.device, config.seed)
    checkpoint = Checkpoint(model, ema, model.dit, parts)
    return run.loop(start, data.train, step_fn, checkpoint, validate_fn)


def _validator(
    model: AudioModel, ema: EMA, fixed: list[dict], device: torch.device, seed: int
) -> Callable[[], dict[str, float]]:
    """Mean squared error of the EMA generator's one-step x̂0 on fixed validation batches."""

    @torch.no_grad()
    def validate() -> dict[str, float]:
        generator = torch.Generator().manual_seed(seed)
        scores = []
        with ema.applied(model.dit):
            for batch in fixed:
                latents = batch["latents"].to(device)
                rows = latents.shape[0]
                cond = model.condition(*window_conditions(batch))
                t = torch.tensor([VALIDATION_TIMES[i % len(VALIDATION_TIMES)] for i in range(rows)])
                noise = torch.randn(latents.shape, generator=generator)
                x_t = losses.add_noise(latents, noise.to(device), t.to(device))
                x0 = losses.denoise(x_t, model.velocity(x_t, t.to(device), cond), t.to(device))
                scores.append(torch.nn.functional.mse_loss(x0, latents).item())
        return {"x0_mse": sum(scores) / len(scores)}

    return validate
