"""The engine: one resident model, one queue, batched generation for every front-end.

Requests are validated in the caller's thread (so bad input fails at once, where it was given) and
run on one worker thread that owns the model. Requests waiting together that share sampler, steps,
cfg and start time are run as one batch.

Diversity: every noise a take uses (the start noise and each ping-pong re-noise) is a spherical
interpolation between a draw from the request's anchor generator (seeded with `seed`) and a draw
from the take's own generator (seeded with its take seed): 0 gives every take the anchor noise, so
the takes are identical (one batch row computes them all); 1 gives each take its own independent
noise; in between, takes vary around a shared character. A take's parameters (anchor seed, take
seed, diversity, …) reproduce it alone or in any batch, to float rounding: on some CPUs the rows
of one batch differ in the last bits.

MAR models (docs/mar.md) run through the same queue with sampler "mar": steps are decoding
iterations, cfg guides the backbone's outputs, and each frame's head noise is drawn the same way
(one draw per take covers every frame, as each frame is filled once); the decoding order comes
from the anchor seed, so diversity 0 still gives identical takes.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import random
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch

from studio import sampling
from studio.audio import DECODING, RATE_RANGE, FitReport, audio_seconds, prepare_recording, read_audio
from studio.errors import ModelConfigError, RequestError, StudioError
from studio.fast_path import GraphBuckets, compile_model, keep_freed_memory, pick_fast_path
from studio.models.autoencoder import Autoencoder
from studio.models.checkpoint import Model, load_model
from studio.models.mar import MarModel
from studio.models.model import AudioModel, Conditioning
from studio.models.precision import pick_dtype, place_model
from studio.models.registry import resolve_model
from studio.prompt_facts import bpm_in
from studio.request import (
    MAX_SEED,
    InitAudio,
    Request,
    TakeParams,
    check_request,
)

log = logging.getLogger("studio.engine")


@dataclass
class Take:
    audio: np.ndarray  # float32 [channels, frames]
    sample_rate: int
    params: TakeParams


@dataclass
class Result:
    takes: list[Take]
    elapsed_s: float  # wall time of the batch this request ran in
    device: str
    batch_size: int  # how many takes that batch generated, this request's and others'
    init_report: FitReport | None = None


def pick_device(requested: str | None = None) -> torch.device:
    if requested:
        device = torch.device(requested)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise StudioError("CUDA was asked for but no CUDA GPU is available", "use --device cpu")
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise StudioError("MPS was asked for but is not available here", "use --device cpu")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


@dataclass
class _Job:
    """A validated request: the parameters its takes share, their seeds, and the decoded recording."""

    params: TakeParams  # every default filled in; take_seed and take_index are the first take's
    take_seeds: tuple[int, ...]
    init: np.ndarray | None
    init_report: FitReport | None
    future: Future = field(default_factory=Future)

    @property
    def sigma_max(self) -> float:
        return self.params.strength if self.params.strength is not None else 1.0

    @property
    def batch_key(self) -> tuple:
        return (self.params.sampler, self.params.steps, self.params.cfg, self.sigma_max)

    def take_params(self, index: int) -> TakeParams:
        return dataclasses.replace(self.params, take_seed=self.take_seeds[index], take_index=index)

    @property
    def rows(self) -> int:
        """Batch rows the job needs: at diversity 0 every take is the same computation, so one row
        serves them all (and they come out bit-identical, which rows of one batch need not be)."""
        return 1 if self.params.diversity == 0 else len(self.take_seeds)


class Engine:
    """Loads a model once, keeps it resident and warm, and runs generation requests in batches."""

    def __init__(
        self,
        model: str | Path | None = None,
        device: str | None = None,
        dtype: str | None = None,
        warmup: bool = True,
        max_batch: int = 16,
        batch_window_s: float = 0.0,
        fast_path: str | None = None,
    ):
        entry = resolve_model(str(model) if model is not None else None)
        self.model_name, self.model_path = entry.name, entry.path
        self.device = pick_device(device)
        self.dtype = pick_dtype(self.device, dtype)
        self.max_batch = max(1, max_batch)
        self.batch_window_s = batch_window_s
        self.fast_path = pick_fast_path(self.device, fast_path)
        self.batch_log: deque[tuple[int, int]] = deque(maxlen=256)  # (requests, takes) per batch
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._backlog: deque[_Job] = deque()
        self._closed = False
        # Every tensor operation runs on the worker, loading and warm-up included. OpenMP gives each
        # thread that runs one a team of its own; with two teams on a small CPU, libgomp stops its
        # threads spinning between operations, and a take on 2 cores got 1.5x slower.
        loaded: Future[None] = Future()
        self._worker = threading.Thread(
            target=self._serve, args=(warmup, loaded), name="studio-engine", daemon=True
        )
        self._worker.start()
        loaded.result()  # what loading raised, raised here
        log.info("engine ready: %s on %s (%s, %s)", self.model_name, self.device, self.dtype, self.fast_path)

    # -- public API -------------------------------------------------------------------------------

    def generate(self, request: Request, timeout: float | None = None) -> Result:
        return self.submit(request).result(timeout)

    def submit(self, request: Request) -> Future:
        if self._closed:
            raise StudioError("the engine is closed")
        job = self._prepare(request)
        self._queue.put(job)
        return job.future

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._worker.join(timeout=30)

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- validation -------------------------------------------------------------------------------

    def _prepare(self, request: Request) -> _Job:
        model = self.config
        r = check_request(request, max_seconds=model.max_seconds)
        sampler = r.sampler or self.default_sampler
        if sampler not in self.samplers:
            self._refuse_sampler(sampler)
        seconds = model.max_seconds if r.seconds is None else r.seconds
        steps = self.default_steps(sampler) if r.steps is None else r.steps
        cfg = model.guidance(r.cfg)
        if sampler == "onestep":
            # A one-step model's steps and cfg are its own: a preset's or a slider's values do not
            # apply (the take's parameters say what ran); a request that names the sampler and
            # other values is told.
            if r.sampler == "onestep":
                self._check_onestep(steps, r.cfg)
            steps, cfg = 1, 1.0
        # Random seeds stay below 2^32 so every front-end (a browser's JS numbers, OSC int32) can echo them.
        seed = random.randrange(2**32) if r.seed is None or r.seed == -1 else r.seed
        take_seeds = r.take_seeds or tuple((seed + i) % (MAX_SEED + 1) for i in range(r.variations))
        init, label, report, strength = None, None, None, None
        if r.init_audio is not None and self.is_mar:
            raise RequestError(
                f"{self.model_name} is a masked autoregressive (MAR) model: it cannot restyle a recording",
                "leave out the init audio, or pick a diffusion model for audio-to-audio (`studio models`)",
            )
        if r.init_audio is not None:
            strength = r.strength
            init, label, report = self._read_init(r.init_audio)
        params = TakeParams(
            prompt=r.prompt,
            negative_prompt=r.negative_prompt or "",
            seconds=seconds,
            steps=steps,
            cfg=cfg,
            sampler=sampler,
            seed=seed,
            take_seed=take_seeds[0],
            take_index=0,
            variations=len(take_seeds),
            diversity=r.diversity,
            init_audio=label,
            strength=strength,
            model=self.model_name,
            sample_rate=self.config.sample_rate,
        )
        return _Job(params, take_seeds, init, report)

    def default_steps(self, sampler: str) -> int:
        """Steps of a request that names none (ModelConfig.steps)."""
        return self.config.steps(sampler)

    def _check_onestep(self, steps: int, cfg: float | None) -> None:
        """The one-step sampler runs one unguided evaluation: 1 step and cfg 1."""
        if steps != 1:
            raise RequestError(
                f"the onestep sampler takes exactly 1 step, got {steps}", "leave steps out or set it to 1"
            )
        if cfg is not None and cfg != 1:
            raise RequestError(
                f"the onestep sampler runs unguided, so cfg {cfg:g} would do nothing",
                "set cfg to 1 (a one-step student has its teacher's guidance built in), or pick "
                "another sampler",
            )

    def _refuse_sampler(self, sampler: str) -> None:
        use = f"use {' or '.join(self.samplers)}, or leave the sampler out"
        if sampler in sampling.SAMPLERS:
            raise RequestError(
                f"the '{sampler}' sampler is for diffusion models; {self.model_name} is a masked "
                "autoregressive (MAR) model",
                use,
            )
        if sampler in sampling.MAR_SAMPLERS:
            raise RequestError(
                f"the '{sampler}' sampler decodes masked autoregressive (MAR) models; {self.model_name} "
                "is a diffusion model",
                use,
            )
        raise RequestError(f"unknown sampler '{sampler}'", use)

    def _read_init(self, init: InitAudio) -> tuple[np.ndarray, str, FitReport]:
        if isinstance(init, tuple):
            audio, rate = init
            audio, label = np.asarray(audio, dtype=np.float32), "<array>"
            if audio.ndim == 2 and audio.shape[0] > audio.shape[1]:
                audio = audio.T  # accept [frames, channels] as well
            if audio.size == 0 or not np.isfinite(audio).all():
                raise RequestError("init audio is empty or holds NaN/inf samples")
            if not RATE_RANGE[0] <= int(rate) <= RATE_RANGE[1]:
                raise RequestError(
                    f"init audio at {rate} Hz: audio runs from {RATE_RANGE[0]} to {RATE_RANGE[1]} Hz"
                )
            total_seconds = None
        else:
            total_seconds = audio_seconds(init)  # refuses a header no recording has, before decoding
            label = str(Path(init).resolve())
        c = self.config
        with DECODING:
            if not isinstance(init, tuple):
                audio, rate = read_audio(init, max_seconds=c.max_seconds + 0.1)
            prepared, report = prepare_recording(
                audio, int(rate), c.sample_rate, c.audio_channels, c.sample_size, total_seconds
            )
        return prepared, label, report

    # -- the worker -------------------------------------------------------------------------------

    def _next_batch(self) -> list[_Job] | None:
        """The next job plus every waiting job that can share its batch, order kept for the rest."""
        first = self._backlog.popleft() if self._backlog else self._queue.get()
        if first is None:
            return None
        batch, skipped = [first], deque()
        rows = first.rows

        def offer(job: _Job) -> None:
            nonlocal rows
            if job.batch_key == first.batch_key and rows + job.rows <= self.max_batch:
                batch.append(job)
                rows += job.rows
            else:
                skipped.append(job)

        while self._backlog and rows < self.max_batch:
            offer(self._backlog.popleft())
        deadline = time.monotonic() + self.batch_window_s
        while rows < self.max_batch:
            try:
                wait = deadline - time.monotonic()
                job = self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:  # closing: leave the marker for the serve loop
                self._queue.put(None)
                break
            offer(job)
        self._backlog.extendleft(reversed(skipped))
        return batch

    def _load(self, warmup: bool) -> None:
        if self.device.type == "cpu":
            keep_freed_memory()
        self.model: Model = load_model(self.model_path)
        self.placement = place_model(self.model, self.device, self.dtype)
        if self.fast_path != "eager":
            compile_model(self.model)
        self._graphs = GraphBuckets() if self.fast_path == "graphs" else None
        self.config = self.model.config
        self.is_mar = isinstance(self.model, MarModel)
        self.samplers = sampling.MAR_SAMPLERS if self.is_mar else sampling.SAMPLERS
        self.default_sampler = self.config.sampler
        if self.default_sampler not in self.samplers:
            raise ModelConfigError(
                f"{self.model_path}/model_config.json: default_sampler '{self.default_sampler}' is "
                f"not a sampler of this model",
                f"use {' or '.join(self.samplers)}, or leave default_sampler out",
            )
        if warmup:
            # A compiled or captured path warms up on what a plain request runs: its default steps
            # and one take, compiled (and captured) before the first user waits on it.
            steps = 1 if self.fast_path == "eager" else None
            self._run_batch([self._prepare(Request("warm-up", steps=steps, seed=0))])

    def _serve(self, warmup: bool, loaded: Future) -> None:
        try:
            self._load(warmup)
        except BaseException as exc:
            loaded.set_exception(exc)
            return
        loaded.set_result(None)
        while (batch := self._next_batch()) is not None:
            batch = [job for job in batch if job.future.set_running_or_notify_cancel()]
            if not batch:
                continue
            try:
                results = self._run_batch(batch)
            except Exception as exc:  # the caller gets the error; the engine keeps serving
                if not isinstance(exc, StudioError):
                    log.exception("generation failed")
                for job in batch:
                    job.future.set_exception(exc)
                continue
            for job, result in zip(batch, results, strict=True):
                job.future.set_result(result)
        for job in self._backlog:
            job.future.cancel()

    @torch.inference_mode()
    def _run_batch(self, jobs: list[_Job]) -> list[Result]:
        start = time.perf_counter()
        model, c = self.model, self.config
        rows = [(job, i) for job in jobs for i in range(job.rows)]
        key = jobs[0]
        cond = model.condition([j.params.prompt for j, _ in rows], [j.params.seconds for j, _ in rows])
        noise = NoiseSource(
            [(j.params.seed, j.take_seeds[i], j.params.diversity) for j, i in rows],
            (c.autoencoder.latent_dim, c.latent_length),
        )
        latent_noise, phase_noise = draw_noises(
            noise, model.vae, key.params.sampler, key.params.steps, self.device
        )
        if self.is_mar:
            x = self._decode_mar(rows, cond, latent_noise[0], key.params)
            audio = to_host(model.vae.decode(x.float(), phase_noise)).numpy()
        else:
            audio = to_host(self._diffuse(rows, cond, latent_noise, phase_noise, key)).numpy()
        elapsed = time.perf_counter() - start
        takes_made = sum(len(job.take_seeds) for job in jobs)
        self.batch_log.append((len(jobs), takes_made))
        log.info(
            "batch: %d request(s), %d take(s) from %d row(s), %.3f s on %s",
            len(jobs),
            takes_made,
            len(rows),
            elapsed,
            self.device,
        )
        results, offset = [], 0
        for job in jobs:
            takes = []
            frames = round(job.params.seconds * c.sample_rate)
            for i in range(len(job.take_seeds)):
                row = offset + min(i, job.rows - 1)
                takes.append(Take(audio[row, :, :frames].copy(), c.sample_rate, job.take_params(i)))
            offset += job.rows
            results.append(Result(takes, elapsed, str(self.device), takes_made, job.init_report))
        return results

    def _diffuse(
        self,
        rows: list[tuple[_Job, int]],
        cond: Conditioning,
        noises: torch.Tensor,
        phase_noise: torch.Tensor | None,
        key: _Job,
    ) -> torch.Tensor:
        """Audio from the DiT, from noise or from a noised recording. `noises` [draws, B, C, T]:
        the start noise, then ping-pong's re-noise after each step."""
        params = key.params
        guided = params.cfg != 1 and cond.context is not None
        uncond_context = self._unconditional(rows, cond).context if guided else None
        # Only a batch with a prompt that states a tempo has a grid to guide by (read from the
        # prompts, not the device's tensor, which would make a GPU wait).
        states_tempo = cond.beats is not None and any(bpm_in(j.params.prompt) for j, _ in rows)
        grid_scale = self.config.grid_guidance if guided and states_tempo else 0.0
        start = noises[0]
        if key.sigma_max < 1:
            start = sampling.noised_init(self._init_latents(rows), start, key.sigma_max)
        return diffuse(
            self.model,
            self._graphs,
            (params.sampler, params.steps, key.sigma_max, grid_scale),
            params.cfg,
            cond,
            uncond_context,
            start,
            noises,
            phase_noise,
        )

    def _decode_mar(
        self, rows: list[tuple[_Job, int]], cond: Conditioning, noise: torch.Tensor, params: TakeParams
    ) -> torch.Tensor:
        """Latents from the MAR model: `steps` decoding iterations in each take's anchor-seeded order."""
        length = self.config.latent_length
        order = torch.stack(
            [sampling.decoding_order(length, torch.Generator().manual_seed(j.params.seed)) for j, _ in rows]
        )
        guided = params.cfg != 1 and cond.context is not None
        uncond = self._unconditional(rows, cond) if guided else None
        return self.model.generate(cond, noise, order.to(self.device), params.steps, uncond, params.cfg)

    def _unconditional(self, rows: list[tuple[_Job, int]], cond: Conditioning) -> Conditioning:
        """CFG's other branch: zeroed context tokens, or each take's negative prompt where it has one."""
        negative = None
        if any(j.params.negative_prompt for j, _ in rows):
            negatives = self.model.condition(
                [j.params.negative_prompt for j, _ in rows], [j.params.seconds for j, _ in rows]
            ).context
            has_negative = torch.tensor(
                [bool(j.params.negative_prompt) for j, _ in rows], device=negatives.device
            )
            negative = torch.where(has_negative[:, None, None], negatives, torch.zeros_like(negatives))
        return cond.unconditional(negative)

    def _init_latents(self, rows: list[tuple[_Job, int]]) -> torch.Tensor:
        """Each job's recording encoded once (posterior draw seeded by the job), one row per take."""
        encoded: dict[int, torch.Tensor] = {}
        for job, _ in rows:
            if id(job) not in encoded:
                audio = torch.from_numpy(job.init)[None].to(self.device)
                generator = torch.Generator().manual_seed(job.params.seed)
                encoded[id(job)] = self.model.vae.encode(audio, generator).float()
        return torch.cat([encoded[id(job)] for job, _ in rows])


def render(
    model: AudioModel,
    sampler: str,
    steps: int,
    sigma_max: float,
    grid_scale: float,
    cfg: float | torch.Tensor,
    context: torch.Tensor | None,
    global_cond: torch.Tensor | None,
    beats: torch.Tensor | None,
    uncond_context: torch.Tensor | None,
    start: torch.Tensor,
    noises: torch.Tensor,
    phase_noise: torch.Tensor | None,
) -> torch.Tensor:
    """A diffusion model's takes from tensors alone, sampling then decoding, so that a CUDA graph
    can capture it whole. Guided by `cfg` (a number, or a 0-d tensor a graph can take new values
    in) where there is an unconditional context, at the steps within the model's guidance
    interval, and there by `grid_scale` toward the beat grid of a tempo the prompt states (0: no
    third branch); `noises` [draws, B, C, T] holds ping-pong's re-noise after each step at index 1
    on."""
    cond = Conditioning(context, global_cond, beats)
    conditional = partial(model.velocity, cond=cond)
    guided = conditional
    if uncond_context is not None:
        branches = (cond, cond.unconditional(uncond_context))
        if grid_scale:
            branches += (cond.without_beats(),)
        guided = sampling.guided(partial(model.velocities, conds=branches), cfg, grid_scale)
    schedule = sampling.schedule_for(sampler, steps, sigma_max)
    interval = model.config.guidance_interval
    x = sampling.sample(sampler, start, schedule, guided, conditional, interval, noises.__getitem__)
    return model.vae.decode(x.float(), phase_noise)


def diffuse(
    model: AudioModel,
    graphs: GraphBuckets | None,
    settings: tuple[str, int, float, float],
    cfg: float,
    cond: Conditioning,
    uncond_context: torch.Tensor | None,
    start: torch.Tensor,
    noises: torch.Tensor,
    phase_noise: torch.Tensor | None,
) -> torch.Tensor:
    """render() with `settings` (sampler, steps, start time, grid scale): run as it is, or, where
    `graphs` is given, replayed from the CUDA graph of its bucket. A restyle's start time (its
    strength) can be any number, so a restyle is never captured; cfg goes in as a tensor, so one
    graph serves every guidance scale."""
    run = partial(render, model, *settings)
    tensors = (*cond.fields(), uncond_context, start, noises, phase_noise)
    sigma_max = settings[2]
    if graphs is None or sigma_max < 1:
        return run(cfg, *tensors)
    return graphs.run(settings, run, (torch.tensor(cfg, device=start.device), *tensors))


def draw_noises(
    noise: NoiseSource, vae: Autoencoder, sampler: str, steps: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Every noise a batch uses, drawn before any of it runs and moved to the device at once: the
    latents' [draws, B, C, T] (the start noise, then each ping-pong re-noise) and an STFT decoder's
    phase noise (None for a decoder that takes none)."""
    latents = to_device(noise.draw(count=steps + 1 if sampler == "pingpong" else 1), device)
    phase_shape = vae.phase_noise_shape(noise.shape[-1])
    return latents, None if phase_shape is None else to_device(noise.draw(phase_shape)[0], device)


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A CPU tensor on `device`; to a GPU through pinned memory, without making the host wait."""
    if device.type != "cuda":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


def to_host(tensor: torch.Tensor) -> torch.Tensor:
    """A float32 CPU copy; from a GPU through pinned memory, waiting only for this copy."""
    tensor = tensor.float()
    if tensor.device.type != "cuda":
        return tensor.cpu()
    host = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
    host.copy_(tensor, non_blocking=True)
    torch.cuda.current_stream(tensor.device).synchronize()
    return host


class NoiseSource:
    """Per-take noise streams: anchor and own generators mixed by diversity, drawn on the CPU so a
    seed gives the same take on every device.

    Each stream gives its draws in a fixed order (the start noise, each ping-pong re-noise, then
    an STFT decoder's phase noise), so drawing them all up front gives what drawing each where it
    is used would."""

    def __init__(self, streams: list[tuple[int, int, float]], shape: tuple[int, ...]):
        self.shape = shape
        self.streams = [
            (torch.Generator().manual_seed(anchor), torch.Generator().manual_seed(own), diversity)
            for anchor, own, diversity in streams
        ]

    def draw(self, shape: tuple[int, ...] | None = None, count: int = 1) -> torch.Tensor:
        """The next `count` draws of every take, [count, takes, *shape], of the latents' shape
        unless another is given."""
        shape = shape or self.shape
        takes = []
        for anchor, own, diversity in self.streams:
            draws = []
            for _ in range(count):
                a = torch.randn(shape, generator=anchor)
                b = torch.randn(shape, generator=own)
                draws.append(sampling.diversity_noise(a[None], b[None], diversity)[0])
            takes.append(torch.stack(draws))
        return torch.stack(takes, dim=1)
