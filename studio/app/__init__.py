"""The studio: a Gradio app for live prompting, variations, style transfer and a sound library.

Every handler goes through the one engine (so browser clicks batch with OSC and MIDI triggers)
and every take is saved to the library before it is shown. The Play tab (play_tab.py), the Library
tab (library_tab.py) and the documented API (api.py) are built into one page here.
"""

from __future__ import annotations

import hmac
import logging
import socket
import threading
import time
from pathlib import Path

import gradio as gr

from studio.app.api import api_events
from studio.app.library_tab import library_tab
from studio.app.play_tab import DRAG_OUT_JS, STATUS_CSS, play_tab
from studio.errors import StudioError
from studio.service import Studio, open_studio

log = logging.getLogger("studio.app")


CACHE_S = 3600  # how long Gradio keeps its copies of uploads and returned takes (about 175 MB an hour)


def build_app(studio: Studio, cache_s: int = CACHE_S) -> gr.Blocks:
    """The page. Gradio's copies of uploads and of every take it returns are deleted once older
    than `cache_s` (checked every tenth of that, at least every ten minutes): the takes themselves
    live in the library, so the cache is only a convenience that must not grow without end."""
    sweep = (max(1, min(600, cache_s // 10)), cache_s)
    with gr.Blocks(title="Studio", fill_width=True, delete_cache=sweep) as app:
        gr.Markdown("# Studio\nType a sound, press Enter. Variations, diversity, restyle a recording.")
        with gr.Tabs() as tabs:
            with gr.Tab("Play", id="play"):
                controls = play_tab(studio)
            with gr.Tab("Library", id="library"):
                library_tab(studio, tabs, controls)
        api_events(studio)
    return app


def serve(
    studio: Studio,
    host: str = "127.0.0.1",
    port: int = 7860,
    auth: tuple[str, str] | None = None,
    block: bool = True,
    cache_s: int = CACHE_S,
) -> tuple[gr.Blocks, str]:
    """Serve the studio in the browser; with block, until Ctrl+C. Returns (app, url)."""
    # Takes never change once saved: Gradio serves them where they lie instead of copying each into
    # its cache (faster, no second copy on disk). The setting is the interpreter's, not the app's.
    gr.set_static_paths([studio.library.audio_dir, studio.exports()])
    app = build_app(studio, cache_s)
    app.queue(default_concurrency_limit=16)
    _, url, _ = app.launch(
        server_name=host,
        server_port=port,
        share=False,
        auth=LoginGate(*auth) if auth else None,
        prevent_thread_lock=True,
        # the takes and exports, never the library's database beside them
        allowed_paths=[str(studio.library.audio_dir), str(studio.exports())],
        footer_links=["api", "settings"],
        show_error=True,
        quiet=True,
        head=DRAG_OUT_JS,
        css=STATUS_CSS,
    )
    model = studio.model
    print(f"Studio is running at {url} ({model.name} on {model.device}); Ctrl+C stops it", flush=True)
    if block:
        app.block_thread()
    return app, url


class LoginGate:
    """The password check, slowed after failures: each failed login within a minute of others
    waits half a second more (at most 5 s), so guessing from a script crawls; a right password is
    never slowed."""

    def __init__(self, user: str, password: str):
        self._user, self._password = user.encode(), password.encode()
        self._failures: list[float] = []
        self._lock = threading.Lock()

    def __call__(self, user: str, password: str) -> bool:
        right = hmac.compare_digest(user.encode(), self._user) & hmac.compare_digest(
            password.encode(), self._password
        )
        if right:
            return True
        with self._lock:
            now = time.monotonic()
            self._failures = [t for t in self._failures if now - t < 60] + [now]
            wait = min(5.0, 0.5 * len(self._failures))
        log.warning("failed login as %r; the next one waits %.1f s", user, wait)
        time.sleep(wait)
        return False


def check_port(host: str, port: int) -> None:
    """Refuse a port another program (often a studio already running) listens on, at once and in
    plain words, before the model loads: Gradio would take 15 s to fail with its own internals."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds it
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise StudioError(
                f"cannot serve on {host}:{port}: {exc.strerror or exc} (is a studio already running "
                f"there? open http://{host}:{port})",
                f"stop the program that uses it, or pick another port: --port {port + 1}",
            ) from exc


def launch(
    model: str | None = None,
    host: str = "127.0.0.1",
    port: int = 7860,
    device: str | None = None,
    auth: tuple[str, str] | None = None,
    library_dir: str | Path | None = None,
    block: bool = True,
) -> tuple[gr.Blocks, Studio, str]:
    """Load the model once, build the app and serve it; returns (app, studio, url)."""
    check_port(host, port)
    studio = open_studio(model, device, library_dir)
    try:
        app, url = serve(studio, host, port, auth, block)
    finally:
        if block:
            studio.close()
    return app, studio, url
