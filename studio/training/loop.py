"""What every trainer shares: the typed base config, the run folder, EMA, DDP, progress and logs.

A run folder (--out) holds:
  state.pt    all a run needs to continue: step, model and discriminator weights, EMA, optimisers
              (written atomically; a run whose folder has one resumes from it)
  log.jsonl   one JSON line per logged step: {"step", "split", "elapsed_s", losses…}
  model/      the latest export of the EMA weights: a model folder `studio.engine.Engine` loads

Randomness never depends on history: data draws come from (seed, epoch, clip) and the noise of a
step from (seed, rank, step), so a resumed run computes exactly what an uninterrupted one would.
Under torchrun every rank trains on its own shard through DistributedDataParallel and only rank 0
writes files.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from studio.data.manifest import CorpusError, parse_focus
from studio.errors import StudioError
from studio.models import Model, ModelConfig, save_model
from studio.models.registry import RUN_EXPORT_DIR
from studio.training.data import AudioClips, LatentClips, Prompts, StepSampler, balanced_epoch, fixed_keys

STATE_FILE = "state.pt"
LOG_FILE = "log.jsonl"
EXPORT_DIR = RUN_EXPORT_DIR


class TrainingError(StudioError):
    """A training run was asked for something it cannot do (bad options, mismatched configs)."""


@dataclass
class TrainConfig:
    """Options every trainer takes. Steps count optimiser updates of the trained model."""

    corpus: Path
    out: Path
    steps: int = 10_000
    batch_size: int = 8  # per process; under torchrun the global batch is this × processes
    lr: float = 1e-4
    ema_decay: float = 0.999
    export_every: int = 1_000  # also how often state.pt is written
    log_every: int = 10
    val_every: int = 1_000  # 0: never
    val_clips: int = 32
    grad_clip: float = 1.0  # 0: off
    device: str | None = None
    seed: int = 0
    workers: int = 2
    balance: float = 0.0  # category balancing: 0 the corpus's proportions, 1 every category alike
    focus: str = ""  # categories drawn more often, as `studio data build --focus` names them
    minutes: float = 0.0  # wall-clock budget of this invocation (0: none): a rented GPU's hour, say

    def check(self) -> None:
        positive = ("steps", "batch_size", "export_every", "log_every", "val_clips")
        for name in positive:
            if getattr(self, name) < 1:
                raise TrainingError(
                    f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}"
                )
        for name in ("lr", "grad_clip", "val_every", "workers", "seed", "minutes"):
            if getattr(self, name) < 0:
                raise TrainingError(
                    f"--{name.replace('_', '-')} must not be negative, got {getattr(self, name)}"
                )
        if not 0 <= self.balance <= 1:
            raise TrainingError(
                f"--balance must be from 0 to 1, got {self.balance}", "0.5 is square-root sampling"
            )
        self.focus_weights()  # refuses an unknown category or weight before anything is loaded
        if not 0 <= self.ema_decay < 1:
            raise TrainingError(f"--ema-decay must be in [0, 1), got {self.ema_decay}", "0.999 is usual")

    def focus_weights(self) -> dict[str | None, float]:
        try:
            return parse_focus(self.focus)
        except CorpusError as error:
            raise TrainingError(f"--focus: {error.message}", error.hint) from None


class Stateful(Protocol):
    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> Any: ...


# -- models --------------------------------------------------------------------------------------


def require_diffusion(config: ModelConfig, source: Path, command: str) -> None:
    """Refuse a MAR model or config where a trainer needs the DiT of a diffusion model."""
    if config.dit is None:
        raise TrainingError(
            f"{source} is a {config.model_type} (masked autoregressive) model; `studio train {command}` "
            "trains the DiT of diffusion_cond models",
            "pass a diffusion model (e.g. a flow run's model/); MAR models train with `studio train mar`",
        )


def with_objective(config: ModelConfig, objective: str, default_cfg: float | None) -> ModelConfig:
    """The same model config with another diffusion objective (what the engine samples it with) and
    the guidance a request that names none gets; None keeps the config's own default_cfg."""
    raw = json.loads(json.dumps(config.raw))
    raw["model"]["diffusion"]["diffusion_objective"] = objective
    if default_cfg is not None:
        raw["default_cfg"] = default_cfg
    return ModelConfig.from_dict(raw, source="model config")


def check_same_autoencoder(
    config: ModelConfig, init: ModelConfig, config_path: Path, init_path: Path, conditioners: bool = False
) -> None:
    """Refuse a --config whose VAE (or audio format) differs from the --init folder's VAE, and with
    `conditioners`, whose conditioning differs from the conditioners that are reused too."""
    fields = ("sample_rate", "audio_channels", "autoencoder")
    reused, sections = "VAE is", "pretransform, sample_rate and audio_channels"
    if conditioners:
        fields += ("conditioners", "cond_dim")
        reused = "VAE and conditioners are"
        sections = "pretransform, conditioning, sample_rate and audio_channels"
    for field in fields:
        if getattr(config, field) != getattr(init, field):
            raise TrainingError(
                f"{config_path}: '{field}' differs from the model in {init_path}, whose {reused} reused",
                f"copy {sections} from that folder's model_config.json",
            )


def train_only(model: nn.Module, *parts: nn.Module) -> list[nn.Parameter]:
    """Freeze everything in `model` but `parts`, and return the parameters left trainable.

    Call it on a freshly built or loaded model: parameters the model itself keeps frozen (the DiT's
    fixed LayerNorm biases) stay frozen.
    """
    keep = {id(p) for part in parts for p in part.parameters() if p.requires_grad}
    for p in model.parameters():
        p.requires_grad_(id(p) in keep)
    return [p for p in model.parameters() if p.requires_grad]


def copy_matching_weights(target: nn.Module, source: nn.Module) -> list[str]:
    """Copy every tensor of `source` whose name and shape `target` shares; return the names of
    target's tensors left as they were (its new parts)."""
    source_state = source.state_dict()
    matching = {
        name: source_state[name]
        for name, tensor in target.state_dict().items()
        if name in source_state and source_state[name].shape == tensor.shape
    }
    target.load_state_dict(matching, strict=False)
    return [name for name in target.state_dict() if name not in matching]


# -- EMA -----------------------------------------------------------------------------------------


def ema_decay(step: int, max_decay: float, power: float = 0.75) -> float:
    """Warm-up of the EMA decay (as ema-pytorch): 0 at step 0, so the average starts as the weights
    and is not dragged by the random init, rising to `max_decay`."""
    return min(max_decay, 1 - (1 + step) ** -power)


class EMA:
    """Exponential moving average of a module's trainable parameters.

    Shadow tensors rather than a module copy: the prompt encoder's lazily loaded backbone cannot be
    deep-copied, and frozen parts need no average.
    """

    def __init__(self, module: nn.Module, max_decay: float):
        self.max_decay = max_decay
        self.shadow = {n: p.detach().clone() for n, p in module.named_parameters() if p.requires_grad}

    def _params(self, module: nn.Module) -> dict[str, nn.Parameter]:
        return {n: p for n, p in module.named_parameters() if n in self.shadow}

    @torch.no_grad()
    def update(self, module: nn.Module, step: int) -> None:
        weight = 1 - ema_decay(step, self.max_decay)
        params = self._params(module)
        for name, average in self.shadow.items():
            average.lerp_(params[name].detach().to(average.dtype), weight)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.shadow)

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if state.keys() != self.shadow.keys():
            raise TrainingError("the saved EMA does not match the model's trainable parameters")
        for name, average in self.shadow.items():
            average.copy_(state[name])

    @contextmanager
    def applied(self, module: nn.Module) -> Iterator[nn.Module]:
        """The module with the averaged weights in place, restored afterwards."""
        params = self._params(module)
        backup = {n: p.detach().clone() for n, p in params.items()}
        with torch.no_grad():
            for name, p in params.items():
                p.copy_(self.shadow[name])
        try:
            yield module
        finally:
            with torch.no_grad():
                for name, p in params.items():
                    p.copy_(backup[name])


# -- distributed ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def start_distributed(device: str | None) -> tuple[Distributed, torch.device]:
    """Join the process group torchrun describes in the environment (if any) and pick the device."""
    from studio.engine import pick_device

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Distributed(), pick_device(device)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and (device is None or device.startswith("cuda"))
    if use_cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return Distributed(rank, world), torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")


def unwrap(module: nn.Module) -> nn.Module:
    return module.module if isinstance(module, DistributedDataParallel) else module


@contextmanager
def frozen(module: nn.Module) -> Iterator[nn.Module]:
    """The bare module (outside DDP, so no gradient sync) with its parameters frozen: for passing
    gradients through a network that this step does not update."""
    bare = unwrap(module)
    trainable = [p for p in bare.parameters() if p.requires_grad]
    for p in trainable:
        p.requires_grad_(False)
    try:
        yield bare
    finally:
        for p in trainable:
            p.requires_grad_(True)


def step_generator(seed: int, rank: int, step: int) -> torch.Generator:
    """The CPU generator for one step's noise on one rank (CPU, so runs match across devices)."""
    state = np.random.SeedSequence([seed, 1, rank, step]).generate_state(1)[0]
    return torch.Generator().manual_seed(int(state))


def optimizer_step(optimizer: torch.optim.Optimizer, loss: torch.Tensor, grad_clip: float) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip > 0:
        params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
    optimizer.step()


# -- the run folder ------------------------------------------------------------------------------


@dataclass
class Checkpoint:
    """What each checkpoint writes: `model` exported with the EMA of `trainable`'s weights, and the
    resumable state of `parts`."""

    model: Model
    ema: EMA
    trainable: nn.Module
    parts: dict[str, Stateful]


class Run:
    """One training run: its folder, process group, device, data stream, logs and checkpoints."""

    def __init__(self, config: TrainConfig, kind: str):
        config.check()
        self.config, self.kind = config, kind
        self.dist, self.device = start_distributed(config.device)
        self.out = Path(config.out)
        self.state_path = self.out / STATE_FILE
        self.log_path = self.out / LOG_FILE
        self.export_dir = self.out / EXPORT_DIR
        self.started = time.monotonic()
        if self.dist.main:
            try:
                self.out.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise TrainingError(
                    f"cannot create the run folder {self.out}: {exc.strerror or exc}"
                ) from exc
        torch.manual_seed(config.seed)  # reproducible initial weights, the same on every rank

    def say(self, message: str) -> None:
        if self.dist.main:
            tqdm.write(f"studio train {self.kind}: {message}", file=sys.stderr)

    def autocast(self) -> AbstractContextManager:
        """bf16 autocast on CUDA (losses are computed in float32); full precision elsewhere."""
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return nullcontext()

    def ddp(self, module: nn.Module) -> nn.Module:
        if self.dist.world == 1:
            return module
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=device_ids)

    def past(self, deadline: float) -> bool:
        """Whether rank 0's clock has passed `deadline`; broadcast, so every rank stops at the same step."""
        late = time.monotonic() >= deadline
        if self.dist.world == 1:
            return late
        flag = torch.tensor(float(late), device=self.device)
        dist.broadcast(flag, src=0)
        return bool(flag.item())

    def barrier(self) -> None:
        if self.dist.world > 1:
            dist.barrier()

    def leave(self, wait: bool = True) -> None:
        """Leave the process group; `wait` for the other ranks only after a clean finish (a failed
        rank must not block on peers that may be stuck in a collective)."""
        if self.dist.world > 1 and dist.is_initialized():
            if wait:
                dist.barrier()
            dist.destroy_process_group()

    # -- state -----------------------------------------------------------------------------------

    def saved_state(self) -> dict[str, Any] | None:
        """The state.pt of an earlier run in this folder, if there is one."""
        if not self.state_path.is_file():
            return None
        try:
            state = torch.load(self.state_path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch.load raises many unrelated types for a damaged file
            raise TrainingError(
                f"{self.state_path}: cannot read the saved training state ({exc})".splitlines()[0],
                "delete it to start over, or pick another --out",
            ) from exc
        if state.get("kind") != self.kind:
            raise TrainingError(
                f"{self.out} holds a '{state.get('kind')}' run, not a '{self.kind}' run",
                "pick another --out for this run",
            )
        self.say(f"resuming at step {state['step']} from {self.state_path}")
        return state

    def restore(self, state: dict[str, Any], parts: dict[str, Stateful]) -> int:
        """Load the saved parts into freshly built ones; returns the step to continue from."""
        try:
            for name, part in parts.items():
                part.load_state_dict(state["parts"][name])
        except (KeyError, RuntimeError, ValueError) as exc:
            raise TrainingError(
                f"{self.state_path}: the saved '{name}' does not fit this run ({exc})".splitlines()[0],
                "resume with the options the run started with, or pick another --out",
            ) from exc
        return int(state["step"])

    def save(self, step: int, parts: dict[str, Stateful], model_config: ModelConfig) -> None:
        if not self.dist.main:
            return
        state = {
            "kind": self.kind,
            "step": step,
            "model_config": model_config.raw,
            "train_config": json.loads(json.dumps(dataclasses.asdict(self.config), default=str)),
            "parts": {name: part.state_dict() for name, part in parts.items()},
        }
        tmp = self.state_path.with_name(f".{STATE_FILE}.tmp")
        torch.save(state, tmp)
        os.replace(tmp, self.state_path)

    def export(self, model: Model, ema: EMA, trainable: nn.Module) -> Path:
        """Write the model with the EMA weights as a model folder, replacing the previous export."""
        if self.dist.main:
            tmp, old = self.out / f".{EXPORT_DIR}.tmp", self.out / f".{EXPORT_DIR}.old"
            shutil.rmtree(tmp, ignore_errors=True)
            with ema.applied(trainable):
                save_model(model, tmp)
            if self.export_dir.exists():
                self.export_dir.rename(old)
            tmp.rename(self.export_dir)
            shutil.rmtree(old, ignore_errors=True)
        return self.export_dir

    # -- data ------------------------------------------------------------------------------------

    def batches(
        self, dataset: AudioClips | LatentClips | Prompts, start_step: int
    ) -> Iterator[dict[str, Any]]:
        """This rank's endless stream of batches, positioned at `start_step`."""
        cfg = self.config
        epoch = balanced_epoch([clip.category for clip in dataset.clips], cfg.balance, cfg.focus_weights())
        sampler = StepSampler(
            epoch, cfg.seed, self.dist.rank, self.dist.world, skip=start_step * cfg.batch_size
        )
        loader = DataLoader(
            dataset,
            batch_size=cfg.batch_size,
            sampler=sampler,
            num_workers=cfg.workers,
            pin_memory=self.device.type == "cuda",
        )
        return iter(loader)

    def fixed_batches(self, dataset: Dataset) -> list[dict[str, Any]]:
        """Validation batches: the first val_clips clips with draws that never change."""
        keys = fixed_keys(min(len(dataset), self.config.val_clips), self.config.seed)
        return list(DataLoader(dataset, batch_size=self.config.batch_size, sampler=keys))

    # -- the loop --------------------------------------------------------------------------------

    def log(
        self, step: int, values: dict[str, float], split: str = "train", reduce: bool = True
    ) -> dict[str, float]:
        """Average `values` over ranks (every rank must call this) and append them to log.jsonl."""
        if reduce and self.dist.world > 1 and values:
            names = sorted(values)
            packed = torch.tensor([values[n] for n in names], dtype=torch.float64, device=self.device)
            dist.all_reduce(packed)
            values = dict(zip(names, (packed / self.dist.world).tolist(), strict=True))
        if self.dist.main:
            row = {"step": step, "split": split, "elapsed_s": round(time.monotonic() - self.started, 3)}
            row.update({k: float(f"{v:.6g}") for k, v in values.items()})
            with self.log_path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(row) + "\n")
        return values

    def loop(
        self,
        start: int,
        train: AudioClips | LatentClips | Prompts,
        step_fn: Callable[[int, dict[str, Any]], dict[str, float]],
        checkpoint: Checkpoint,
        validate_fn: Callable[[], dict[str, float]] | None = None,
    ) -> Path:
        """Run steps start..steps over batches of `train`, then leave the process group; returns the
        exported model folder. step_fn(step, batch) -> losses, logged every log_every steps,
        validated every val_every steps, checkpointed (export + state) every export_every steps."""
        cfg = self.config
        if start >= cfg.steps:
            self.say(f"already at step {start} of {cfg.steps}; raise --steps to train further")
            self.leave()
            return self.export_dir
        batches = self.batches(train, start)
        bar = tqdm(
            total=cfg.steps,
            initial=start,
            disable=not self.dist.main,
            desc=self.kind,
            unit="step",
            file=sys.stderr,
        )
        window: dict[str, list[float]] = {}
        deadline = time.monotonic() + cfg.minutes * 60 if cfg.minutes else None
        try:
            for step in range(start, cfg.steps):
                for name, value in step_fn(step, next(batches)).items():
                    window.setdefault(name, []).append(value)
                done = step + 1
                bar.update()
                logged = done % cfg.log_every == 0 or done == cfg.steps
                if logged:
                    means = self.log(done, {k: sum(v) / len(v) for k, v in window.items()})
                    window.clear()
                    bar.set_postfix({k: f"{v:.4g}" for k, v in means.items()}, refresh=False)
                # Checked where the ranks already synchronise, so they all stop at the same step.
                out_of_time = deadline is not None and logged and self.past(deadline)
                validate = cfg.val_every and (done % cfg.val_every == 0 or out_of_time)
                if validate_fn is not None and validate and self.dist.main:
                    self.log(done, validate_fn(), split="valid", reduce=False)
                if done % cfg.export_every == 0 or done == cfg.steps or out_of_time:
                    self.export(checkpoint.model, checkpoint.ema, checkpoint.trainable)
                    self.save(done, checkpoint.parts, checkpoint.model.config)
                if out_of_time:
                    self.say(
                        f"stopped at step {done} of {cfg.steps}: --minutes {cfg.minutes:g} is spent; "
                        "the same command resumes from here"
                    )
                    break
        except BaseException:
            self.leave(wait=False)
            raise
        finally:
            bar.close()
        self.leave()
        return self.export_dir
