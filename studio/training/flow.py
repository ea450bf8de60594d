"""`studio train flow`: rectified-flow pretraining of the DiT on cached VAE latents.

x_t = (1 - t) · x0 + t · ε with t logit-normal, and the DiT (with its conditioners) learns the
velocity ε - x0 — the parametrisation the engine's Euler sampler integrates and ARC later turns
into a few-step ping-pong model. The cross-attention tokens (prompt and seconds) are dropped,
i.e. zeroed, for a `cond_dropout` share of rows: exactly the unconditional branch the engine
builds for classifier-free guidance. The VAE is frozen; the exported model is complete and
marked `rectified_flow`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from studio.data.manifest import Clip, read_manifest
from studio.models import AudioModel, Model, ModelConfig, load_model
from studio.training import losses
from studio.training.data import LatentCache, LatentClips, split_clips, window_conditions
from studio.training.loop import (
    EMA,
    Checkpoint,
    Run,
    TrainConfig,
    TrainingError,
    check_same_autoencoder,
    optimizer_step,
    require_diffusion,
    step_generator,
    train_only,
    with_objective,
)

OBJECTIVE = "rectified_flow"
# A model trained with conditioning dropout needs guidance to follow its prompt; a recipe that
# names its own default_cfg keeps it.
GUIDED_CFG = 4.0
# The DiT layers that read or write latents: meaningless over another VAE's latent space.
LATENT_FACING = ("input_conv.", "output_conv.", "proj_in.", "proj_out.")
VALIDATION_TIMES = (0.1, 0.3, 0.5, 0.7, 0.9)


@dataclass
class FlowTrainConfig(TrainConfig):
    init: Path | None = None  # model folder with the trained VAE (and, without --config, the DiT)
    config: Path | None = None  # model_config.json for a fresh DiT and conditioners over init's VAE
    warm_start: Path | None = None  # trained diffusion model whose conditioners and DiT blocks start it
    cache: Path | None = None  # latent cache root; default CORPUS/.cache/latents
    cond_dropout: float = 0.1
    time_mean: float = 0.0  # logit-normal training times: sigmoid(mean + std · n)
    time_std: float = 1.0
    weight_decay: float = 1e-3
    padded_seconds_share: float = 0.0  # see LatentClips: short clips also conditioned on longer lengths
    fact_dropout: float = 0.0  # see LatentClips: captions also trained without their note or tempo
    beat_grid_lr_scale: float = 1.0  # the beat grid projection's learning rate, as a multiple of lr


class ConditionedVelocity(nn.Module):
    """Conditioners + DiT as one module (what the flow step trains and DDP wraps)."""

    def __init__(self, model: AudioModel):
        super().__init__()
        self.model = model

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        prompts: list[str],
        seconds: list[float],
        keep: torch.Tensor,
        starts: list[float] | None = None,
    ) -> torch.Tensor:
        """Velocity at x [B, C, T], t [B] for windows `starts` seconds into their clips; rows with
        keep 0 get zeroed cross-attention tokens."""
        return self.model.velocity(x, t, self.model.condition(prompts, seconds, starts).dropped(keep))


def flow_loss(
    net: nn.Module,
    latents: torch.Tensor,
    conditions: tuple[list[str], list[float], list[float] | None],
    t: torch.Tensor,
    noise: torch.Tensor,
    keep: torch.Tensor,
) -> torch.Tensor:
    """The rectified-flow loss of one batch (its prompts, seconds and window starts) at given times,
    noise and dropout mask."""
    prompts, seconds, starts = conditions
    velocity = net(losses.add_noise(latents, noise, t), t, prompts, seconds, keep, starts)
    return losses.rectified_flow_loss(velocity, latents, noise)


def flow_model(config: FlowTrainConfig) -> AudioModel:
    """The model a new flow run starts from: --init as is, or --config's DiT over --init's VAE."""
    if config.init is None:
        raise TrainingError(
            "flow training needs --init: a model folder holding the trained VAE",
            "train one with `studio train autoencoder` and pass its RUN/model folder",
        )
    init = load_model(config.init)
    if config.config is None:
        require_diffusion(init.config, config.init, "flow")
        model = init
    else:
        model_config = ModelConfig.from_file(config.config)
        require_diffusion(model_config, config.config, "flow")
        check_same_autoencoder(model_config, init.config, config.config, config.init)
        model = AudioModel(model_config)
        model.vae.load_state_dict(init.vae.state_dict())
    if config.warm_start is not None:
        warm_start(model, config.warm_start)
    own_cfg = "default_cfg" in model.config.raw
    model.config = with_objective(model.config, OBJECTIVE, None if own_cfg else GUIDED_CFG)
    return model


def warm_start(model: AudioModel, source_folder: Path) -> None:
    """Start `model`'s conditioners and DiT from a trained diffusion model's. Over a different VAE
    the latent-facing layers stay fresh, since they speak the other latent space; the blocks, time
    and conditioning paths carry over (same width and depth needed). A patch size that keeps the
    token rate lets the blocks see the same sequence length. Conditioners the new model adds (a
    note or BPM read from the prompt) start fresh."""
    source = load_model(source_folder)
    require_diffusion(source.config, source_folder, "warm start")
    source_vae, target_vae = source.vae.state_dict(), model.vae.state_dict()
    same_vae = source_vae.keys() == target_vae.keys() and all(
        v.shape == target_vae[k].shape and torch.equal(v.float(), target_vae[k].float())
        for k, v in source_vae.items()
    )
    skip = () if same_vae else LATENT_FACING
    source_dit = {k: v for k, v in source.dit.state_dict().items() if not k.startswith(skip)}
    target_dit = model.dit.state_dict()
    differing = [k for k, v in source_dit.items() if k not in target_dit or target_dit[k].shape != v.shape]
    # The new model may add conditioners (they start fresh); every one of the source's must be there.
    missing = [c for c in source.config.conditioners if c not in model.config.conditioners]
    if differing or missing or source.config.cond_dim != model.config.cond_dim:
        what = (
            f"its DiT tensors {differing[:3]} differ in shape"
            if differing
            else f"its conditioners {[c.id for c in missing]} are not this model's"
            if missing
            else "its cond_dim differs"
        )
        raise TrainingError(
            f"--warm-start {source_folder} does not fit this model: {what}",
            "warm-start from a model with the same DiT embed_dim, depth and heads and the same conditioners",
        )
    # load_state_dict casts into the target's dtype, so an fp16 source fills an fp32 model.
    model.dit.load_state_dict(source_dit, strict=False)
    for cond_id, conditioner in source.conditioners.items():
        model.conditioners[cond_id].load_state_dict(conditioner.state_dict())


def prepare_latents(run: Run, cache_root: Path, model: Model, clips: list[Clip]) -> LatentCache:
    """The VAE's latent cache, with every clip in it (each rank encodes its share of what is missing)."""
    c = model.config
    cache = LatentCache.for_vae(cache_root, model.vae, c.sample_rate, c.audio_channels, c.sample_size)
    missing = cache.missing(clips)
    run.barrier()  # every rank has the same list before any rank adds to the cache
    if missing:
        run.say(f"encoding {len(missing)} clip(s) into the latent cache {cache.folder}")
        mine = missing[run.dist.rank :: run.dist.world]
        for clip in tqdm(mine, desc="encode", unit="clip", disable=not run.dist.main, leave=False):
            cache.encode(clip, model.vae, run.device)
    run.barrier()
    return cache


@dataclass(frozen=True)
class LatentSplits:
    train: LatentClips
    valid: LatentClips | None  # None when the corpus has no 'valid' clips


def latent_splits(
    run: Run,
    corpus: Path,
    cache_root: Path | None,
    model: Model,
    padded_seconds_share: float = 0.0,
    fact_dropout: float = 0.0,
) -> LatentSplits:
    """The corpus's train and valid splits as latent datasets, with every clip in the latent cache.

    Call it after a resumed run's state is restored: the run rebuilds its model with random weights,
    and the cache is keyed by, and encoded with, the model's VAE."""
    clips = read_manifest(corpus)
    train_clips = split_clips(clips, "train", corpus)
    valid_clips = split_clips(clips, "valid", corpus, required=False)
    cache_root = cache_root or Path(corpus) / ".cache" / "latents"
    cache = prepare_latents(run, cache_root, model, train_clips + valid_clips)
    hop, length = model.config.autoencoder.downsampling_ratio, model.config.latent_length
    return LatentSplits(
        LatentClips(train_clips, cache, length, hop, padded_seconds_share, fact_dropout),
        LatentClips(valid_clips, cache, length, hop) if valid_clips else None,
    )


def parameter_groups(
    model: AudioModel, trainable: list[nn.Parameter], lr: float, beat_grid_lr_scale: float
) -> list[dict]:
    """One optimiser group, or two when the beat grid's projection learns at its own rate. A run
    keeps the grouping it started with: its saved optimiser state holds one entry per group."""
    grid = model.dit.beat_in
    if grid is None or beat_grid_lr_scale == 1:
        return [{"params": trainable}]
    own = {id(p) for p in grid.parameters()}
    return [
        {"params": [p for p in trainable if id(p) not in own]},
        {"params": [p for p in trainable if id(p) in own], "lr": lr * beat_grid_lr_scale},
    ]


def train_flow(config: FlowTrainConfig) -> Path:
    """Pretrain (or continue) the DiT with rectified flow; returns the exported model folder."""
    if not 0 <= config.cond_dropout <= 1:
        raise TrainingError(f"--cond-dropout must be in [0, 1], got {config.cond_dropout}", "0.1 is usual")
    for option, share in (
        ("--padded-seconds-share", config.padded_seconds_share),
        ("--fact-dropout", config.fact_dropout),
    ):
        if not 0 <= share <= 1:
            raise TrainingError(f"{option} must be in [0, 1], got {share}", "e.g. 0.5")
    if config.beat_grid_lr_scale <= 0:
        raise TrainingError(
            f"--beat-grid-lr-scale must be positive, got {config.beat_grid_lr_scale}", "e.g. 10"
        )
    run = Run(config, "flow")
    state = run.saved_state()
    model = AudioModel(ModelConfig.from_dict(state["model_config"])) if state else flow_model(config)
    model.to(run.device)
    trainable = train_only(model, model.dit, model.conditioners)
    net = ConditionedVelocity(model)

    ema = EMA(net, config.ema_decay)
    optimizer = torch.optim.AdamW(
        parameter_groups(model, trainable, config.lr, config.beat_grid_lr_scale),
        lr=config.lr,
        weight_decay=config.weight_decay,
    )
    parts = {"model": model, "ema": ema, "optimizer": optimizer}
    start = run.restore(state, parts) if state else 0
    data = latent_splits(
        run, config.corpus, config.cache, model, config.padded_seconds_share, config.fact_dropout
    )
    ddp_net = run.ddp(net)

    def step_fn(step: int, batch: dict) -> dict[str, float]:
        latents = batch["latents"].to(run.device, non_blocking=True)
        generator = step_generator(config.seed, run.dist.rank, step)
        batch_size = latents.shape[0]
        t = losses.logit_normal_t(batch_size, generator, config.time_mean, config.time_std)
        noise = torch.randn(latents.shape, generator=generator)
        keep = (torch.rand(batch_size, generator=generator) >= config.cond_dropout).float()
        with run.autocast():
            loss = flow_loss(
                ddp_net,
                latents,
                window_conditions(batch),
                t.to(run.device),
                noise.to(run.device),
                keep.to(run.device),
            )
        optimizer_step(optimizer, loss, config.grad_clip)
        ema.update(net, step)
        return {"flow": loss.item()}

    validate_fn = None
    if data.valid is not None:
        validate_fn = _validator(net, ema, run.fixed_batches(data.valid), run.device, config.seed)
    checkpoint = Checkpoint(model, ema, net, parts)
    return run.loop(start, data.train, step_fn, checkpoint, validate_fn)


def _validator(
    net: ConditionedVelocity, ema: EMA, fixed: list[dict], device: torch.device, seed: int
) -> Callable[[], dict[str, float]]:
    """Flow loss of the EMA weights on fixed validation batches, at fixed times and noise."""

    @torch.no_grad()
    def validate() -> dict[str, float]:
        generator = torch.Generator().manual_seed(seed)
        scores = []
        with ema.applied(net):
            for batch in fixed:
                latents = batch["latents"].to(device)
                rows = latents.shape[0]
                t = torch.tensor([VALIDATION_TIMES[i % len(VALIDATION_TIMES)] for i in range(rows)])
                noise = torch.randn(latents.shape, generator=generator)
                loss = flow_loss(
                    net,
                    latents,
                    window_conditions(batch),
                    t.to(device),
                    noise.to(device),
                    torch.ones(rows, device=device),
                )
                scores.append(loss.item())
        return {"flow": sum(scores) / len(scores)}

    return validate
