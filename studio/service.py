"""The studio service every front-end shares: the resident engine, the library, the presets.

The browser, the OSC server and MIDI pads all call `Studio.submit`, so their requests meet in the
engine's one queue and batch together. Saving runs on one saver thread, not on the engine's: the
model starts the next batch while the last one is written, and every take is in the library before
its future resolves, so no front-end can announce a sound that is not on disk yet.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from studio.engine import Engine, Result
from studio.errors import StudioError
from studio.library import Library, TakeRecord
from studio.presets import Preset, load_presets, user_presets_dir
from studio.request import Request

log = logging.getLogger("studio.service")

Saved = tuple[Result, list[TakeRecord]]
TakeListener = Callable[[Request, Result, list[TakeRecord]], None]


class EngineHost:
    """Owns the current engine; switching models never drops requests in flight."""

    def __init__(self, model: str | None, device: str | None = None, dtype: str | None = None):
        self.device, self.dtype = device, dtype
        self._lock = threading.Lock()
        self.engine = Engine(model, device=device, dtype=dtype, batch_window_s=0.005)

    def switch(self, model: str) -> Engine:
        with self._lock:
            if model not in (self.engine.model_name, self.engine.model_path.name):
                replacement = Engine(model, device=self.device, dtype=self.dtype, batch_window_s=0.005)
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
        try:
            result = generated.result()
            records = [self.library.add(take) for take in result.takes]
        except BaseException as exc:
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
) -> Studio:
    """Load the model once and open the library: what `studio serve` and `studio osc` share."""
    library = Library(library_dir)
    try:
        host = EngineHost(model, device)
    except BaseException:
        library.close()
        raise
    return Studio(host, library, user_presets_dir(), Path(export_dir) if export_dir else None)
