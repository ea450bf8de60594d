"""The studio service every front-end shares: the resident model, the library, the presets, exports.

The browser, the OSC server and MIDI pads all call `Studio.submit`, so their requests meet in the
engine's one queue and batch together. Saving runs on one saver thread, not on the engine's: the
model starts the next batch while the last one is written, and every take is in the library before
its future resolves, so no front-end can announce a sound that is not on disk yet.

Front-ends see the model as `ModelInfo` and follow `Studio.switch_model` through `model_listeners`,
so every one of them shows the loaded model's limits and defaults, whoever switched it.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from studio.engine import Engine, Result
from studio.errors import RequestError, StudioError
from studio.library import Library, TakeRecord
from studio.loops import EXPORT_SUFFIXES, export_audio
from studio.models.registry import HUB_MODELS, list_models
from studio.names import file_stem, free_path
from studio.presets import Preset, load_presets, user_presets_dir
from studio.request import VARY_STRENGTH, Request, check_parameter

log = logging.getLogger("studio.service")

Saved = tuple[Result, list[TakeRecord]]
TakeListener = Callable[[Request, Result, list[TakeRecord]], None]


@dataclass(frozen=True)
class ModelInfo:
    """The loaded model as a front-end shows it: what it is, and the limits and defaults of a take."""

    name: str
    device: str
    sample_rate: int
    channels: int
    max_seconds: float
    default_sampler: str
    default_steps: int  # of the default sampler
    default_cfg: float
    restyles: bool  # takes a recording to restyle (diffusion models do, MAR models do not)
    one_step: bool  # a distilled one-step model: its steps and cfg are fixed at 1

    @classmethod
    def of(cls, engine: Engine) -> ModelInfo:
        config = engine.config
        return cls(
            name=engine.model_name,
            device=str(engine.device),
            sample_rate=config.sample_rate,
            channels=config.audio_channels,
            max_seconds=config.max_seconds,
            default_sampler=engine.default_sampler,
            default_steps=engine.default_steps(engine.default_sampler),
            default_cfg=config.default_cfg,
            restyles=not engine.is_mar,
            one_step=engine.default_sampler == "onestep",
        )

    def guidance(self, cfg: float | None) -> float:
        """The cfg a request gets: the one asked for, else this model's own."""
        return self.default_cfg if cfg is None else check_parameter("cfg", cfg)


ModelListener = Callable[[ModelInfo], None]


class EngineHost:
    """Owns the current engine; switching models never drops requests in flight."""

    def __init__(
        self,
        model: str | None,
        device: str | None = None,
        dtype: str | None = None,
        fast_path: str | None = None,
    ):
        self.options = {"device": device, "dtype": dtype, "fast_path": fast_path, "batch_window_s": 0.005}
        self._lock = threading.Lock()
        self.engine = Engine(model, **self.options)

    def switch(self, model: str) -> Engine:
        with self._lock:
            if model not in (self.engine.model_name, self.engine.model_path.name):
                replacement = Engine(model, **self.options)
                old, self.engine = self.engine, replacement
                old.close()  # finishes what it has queued first
            return self.engine

    def close(self) -> None:
        self.engine.close()


class Studio:
    """Generation that lands in the library, for every front-end."""

    def __init__(
        self,
        host: EngineHost,
        library: Library,
        presets_dir: Path | None = None,
        export_dir: Path | None = None,
    ):
        self.host = host
        self.library = library
        self.presets_dir = presets_dir
        self.export_dir = Path(export_dir) if export_dir is not None else library.root / "exports"
        self.listeners: list[TakeListener] = []
        self.model_listeners: list[ModelListener] = []
        self._saver = ThreadPoolExecutor(1, thread_name_prefix="studio-saver")

    def submit(self, request: Request) -> Future[Saved]:
        """Queue a request; the future holds the result and its library records once they are saved.

        Bad requests raise here, in the caller's thread, before anything is queued.
        """
        if not request.prompt.strip():
            raise StudioError("the prompt is empty", "describe the sound, e.g. 'punchy 808 kick, long tail'")
        saved: Future[Saved] = Future()
        generated = self.host.engine.submit(request)
        generated.add_done_callback(lambda done: self._saver.submit(self._save, request, done, saved))
        return saved

    def run(self, request: Request) -> Saved:
        return self.submit(request).result()

    @property
    def model(self) -> ModelInfo:
        return ModelInfo.of(self.host.engine)

    def switch_model(self, name: str) -> ModelInfo:
        """Load another model by name (never a path: remote controllers may ask for it); requests in
        flight finish on the old one. Every model listener hears of the change."""
        if not isinstance(name, str) or not name.strip() or "/" in name or "\\" in name:
            raise RequestError(
                f"model must be a model name, got {name!r}", "see `studio models` for the names"
            )
        known = {entry.name for entry in list_models()} | set(HUB_MODELS)
        if name not in known:
            raise RequestError(f"unknown model '{name}'", f"use one of {', '.join(sorted(known))}")
        before = self.host.engine
        info = ModelInfo.of(self.host.switch(name))
        if self.host.engine is not before:
            for listener in list(self.model_listeners):
                try:
                    listener(info)
                except Exception:  # a front-end that cannot follow must not undo the switch
                    log.exception("a model listener failed")
        return info

    def vary(self, take_id: int, variations: int, strength: float = VARY_STRENGTH) -> Request:
        """The request for new takes around a library take: its settings, re-noised from its own
        audio at `strength`, with fresh seeds."""
        record = self.library.get(take_id)
        return dataclasses.replace(
            Request.from_params(record.params),
            seed=None,
            take_seeds=None,
            variations=variations,
            init_audio=str(record.path),
            strength=strength,
        )

    def export(
        self, record: TakeRecord, audio: np.ndarray, sample_rate: int, fmt: str = "wav24", variant: str = ""
    ) -> Path:
        """Write a take (or what a tool made of it) into the export folder, where DAWs look. Every
        export is named after the take as the library names it ("punchy-808-kick_7_2", or what the
        user renamed it to), plus the variant ("loop120"), and numbered past any file already there:
        no export ever overwrites another."""
        stem = file_stem(record.name) + (f"_{variant}" if variant else "")
        path = free_path(self.exports(), stem, EXPORT_SUFFIXES.get(fmt, ""))
        return export_audio(audio, sample_rate, path, fmt)  # refuses an unknown format

    def presets(self) -> dict[str, Preset]:
        return load_presets(self.presets_dir)

    def exports(self) -> Path:
        """The folder DAWs watch: exports and hand-off copies land here."""
        try:
            self.export_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StudioError(
                f"cannot create the export folder {self.export_dir}: {exc.strerror or exc}",
                "check the disk has space and the folder is writable (or pass --export-dir)",
            ) from exc
        return self.export_dir

    def close(self) -> None:
        """Finish what is queued and saved, then let go of the model and the library."""
        self.host.close()
        self._saver.shutdown(wait=True)
        self.library.close()

    def _save(self, request: Request, generated: Future, saved: Future[Saved]) -> None:
        if not saved.set_running_or_notify_cancel():
            return
        records: list[TakeRecord] = []
        try:
            result = generated.result()
            for take in result.takes:
                records.append(self.library.add(take))
        except BaseException as exc:
            # A request's takes land together or not at all: a client told "failed" finds none of
            # them in the library, and one told "done" finds all of them.
            for record in records:
                try:
                    self.library.delete(record.id)
                except StudioError:
                    log.exception("take %d of a failed request could not be removed", record.id)
            saved.set_exception(exc)
            return
        for listener in list(self.listeners):
            try:
                listener(request, result, records)
            except Exception:  # one broken front-end must not cost the others their takes
                log.exception("a take listener failed")
        saved.set_result((result, records))


def open_studio(
    model: str | None = None,
    device: str | None = None,
    library_dir: str | Path | None = None,
    export_dir: str | Path | None = None,
    fast_path: str | None = None,
    dtype: str | None = None,
) -> Studio:
    """Load the model once and open the library: what `studio serve` and `studio osc` share."""
    library = Library(library_dir)
    try:
        host = EngineHost(model, device, dtype, fast_path)
    except BaseException:
        library.close()
        raise
    return Studio(host, library, user_presets_dir(), Path(export_dir) if export_dir else None)
