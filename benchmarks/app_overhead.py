"""How much time the app adds on top of generation, as three kinds of client meet it, interleaved
in one run so a shared machine's drift falls on all of them alike:

- `gradio_client`: `Client.predict(..., api_name="/generate")`, the files downloaded;
- `http`: the documented REST API by hand (POST /gradio_api/call/generate, then its event stream,
  then a GET of the take), as a DAW script or curl does it;
- `browser` (with --browser): a person in headless Chromium, from Enter in the prompt box to the
  take's waveform drawn in the grid (it has been fetched and decoded: it plays), timed in the page;
  `browser_status` is the same Enter to the take's status line.

Overhead is the round trip minus the engine's own generation time for that take.

    python benchmarks/app_overhead.py --model FOLDER [--requests 30] [--browser] [--out reports/bench/...json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import httpx
import torch
from gradio_client import Client

from studio.app import launch
from studio.eval.bench import describe_machine

PROMPT = "benchmark hit"
WARMUP_ROUNDS = 3  # the first rounds warm up the clients and the queue: not counted


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def via_gradio_client(url: str, seconds: float, steps: int) -> Callable[[int], tuple[float, float]]:
    client = Client(url, verbose=False)

    def once(seed: int) -> tuple[float, float]:
        start = time.perf_counter()
        files, params = client.predict(
            PROMPT, seconds, 1, seed, steps, 1.0, 1.0, None, 0.6, api_name="/generate"
        )
        total = time.perf_counter() - start
        assert Path(files[0]).is_file()
        return total, params[0]["generation_s"]

    return once


def via_http(url: str, seconds: float, steps: int) -> Callable[[int], tuple[float, float]]:
    http = httpx.Client(base_url=url.rstrip("/"), timeout=60)

    def once(seed: int) -> tuple[float, float]:
        start = time.perf_counter()
        data = [PROMPT, seconds, 1, seed, steps, 1.0, 1.0, None, 0.6]
        event = http.post("/gradio_api/call/generate", json={"data": data}).json()["event_id"]
        stream = http.get(f"/gradio_api/call/generate/{event}").text
        files, params = json.loads(stream.split("event: complete\ndata: ", 1)[1].splitlines()[0])
        audio = http.get(files[0]["url"])
        total = time.perf_counter() - start
        assert audio.content[:4] == b"RIFF"
        return total, params[0]["generation_s"]

    return once


# Timed inside the page, on the page's clock, so Playwright's own round trips do not count: from the
# Enter key going down in the prompt box to (1) the status line naming the take's seed and (2) the
# take's player drawing its waveform, which it does once it has fetched and decoded the WAV: the take
# is on screen and plays.
BROWSER_CLOCK = """
window.__take = {};
document.addEventListener('keydown', e => {
    if (e.key === 'Enter') window.__take.enter = performance.now();
}, true);
window.__watchPlayer = () => {
    const slot = document.querySelector('#take-0');
    const player = slot && [...slot.querySelectorAll('*')].find(e => e.shadowRoot);
    if (!player || window.__watched === player) return;
    window.__watched = player;
    new MutationObserver(changes => {
        const canvas = n => n.nodeName === 'CANVAS' || n.querySelector?.('canvas');
        const drawn = changes.some(c => [...c.addedNodes].some(canvas));
        if (drawn && window.__take.status && !window.__take.drawn) window.__take.drawn = performance.now();
    }).observe(player.shadowRoot, {subtree: true, childList: true});
};
"""
TAKE_SHOWN = """seed => {
    window.__watchPlayer();
    const status = document.querySelector('#status').innerText, mark = `· seed ${seed}`;
    const at = status.indexOf(mark);
    const whole = at >= 0 && !/[0-9]/.test(status.charAt(at + mark.length)) && status.includes('take(s)');
    if (whole && !window.__take.status) window.__take.status = performance.now();
    return !!window.__take.drawn;
}"""


def via_browser(
    url: str, seconds: float, steps: int, stack: list, status_times: list[float]
) -> Callable[[int], tuple[float, float]]:
    """Enter to a drawn, playable take; the time to the status line alone goes into status_times."""
    from playwright.sync_api import sync_playwright

    playwright = sync_playwright().start()
    browser = playwright.chromium.launch(
        executable_path=os.environ.get("CHROMIUM", "/usr/bin/chromium"),
        args=["--headless", "--no-sandbox", "--disable-gpu"],
    )
    stack.extend([playwright.stop, browser.close])  # closed in reverse
    page = browser.new_page(viewport={"width": 1280, "height": 720})
    page.add_init_script(BROWSER_CLOCK)
    page.goto(url)
    for control, value in (("seconds", seconds), ("steps", steps), ("variations", 1)):
        field = page.locator(f"#{control} input[type=number]")
        if field.is_disabled():  # a one-step model's steps are its own: the app greys them out
            continue
        field.fill(str(value))
        field.press("Enter")

    page.check("#lock-seed input")

    def once(seed: int) -> tuple[float, float]:
        # A locked seed of its own makes each take's status line unique: it marks this take's arrival.
        page.fill("#prompt textarea", PROMPT)
        page.fill("#seed input", str(seed))
        page.evaluate("window.__take = {}; window.__watchPlayer()")
        page.press("#prompt textarea", "Enter")
        # polled on a timer, not on every animation frame, which would keep the page drawing
        page.wait_for_function(TAKE_SHOWN, arg=seed, polling=5, timeout=60_000)
        take = page.evaluate("window.__take")
        status_times.append((take["status"] - take["enter"]) / 1000)
        generation_ms = float(re.search(r"take\(s\) in (\d+) ms", page.inner_text("#status")).group(1))
        return (take["drawn"] - take["enter"]) / 1000, generation_ms / 1000

    return once


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--browser", action="store_true", help="also time Enter-to-playable in Chromium")
    parser.add_argument(
        "--clients",
        default="gradio_client,http",
        help="comma-separated clients to time besides the browser (default: gradio_client,http; '' for none)",
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=0.5,
        help="seconds of idle between requests, so one client's rendering of its last take (the "
        "browser draws a waveform) does not slow the next client's generation on a small CPU",
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    closers: list = []
    with tempfile.TemporaryDirectory() as library:
        os.environ.setdefault("STUDIO_PRESETS_DIR", str(Path(library) / "presets"))
        app, studio, url = launch(args.model, port=free_port(), library_dir=library, block=False)
        try:
            makers = {"gradio_client": via_gradio_client, "http": via_http}
            names = [name for name in args.clients.split(",") if name]
            if unknown := set(names) - set(makers):
                parser.error(f"unknown client(s) {', '.join(sorted(unknown))}: use {', '.join(makers)}")
            clients = {name: makers[name](url, args.seconds, args.steps) for name in names}
            status_times: list[float] = []
            if args.browser:
                clients["browser"] = via_browser(url, args.seconds, args.steps, closers, status_times)
            overheads: dict[str, list[float]] = {name: [] for name in clients}
            round_trips: dict[str, list[float]] = {name: [] for name in clients}
            for i in range(args.requests + WARMUP_ROUNDS):
                for name, once in clients.items():  # interleaved: drift falls on every client alike
                    total, generation = once(1000 * i + len(overheads[name]))
                    time.sleep(args.settle)
                    if i >= WARMUP_ROUNDS:
                        overheads[name].append(total - generation)
                        round_trips[name].append(total)
        finally:
            for close in reversed(closers):
                close()
            app.close()
            studio.close()

    def spread(values: list[float]) -> dict[str, float]:
        milliseconds = [v * 1000 for v in values]
        return {"median": statistics.median(milliseconds), "min": min(milliseconds), "max": max(milliseconds)}

    report = {
        "benchmark": "app overhead: round trip minus the engine's generation time, per kind of client",
        "date": date.today().isoformat(),
        "machine": describe_machine(torch.device("cpu")),
        "model": args.model,
        "requests": args.requests,
        "seconds": args.seconds,
        "steps": args.steps,
        "settle_s": args.settle,
        "overhead_ms": {name: spread(values) for name, values in overheads.items()},
        # Request to playable take, generation included (the browser's: from Enter).
        "round_trip_ms": {name: spread(values) for name, values in round_trips.items()},
        **({"browser_status_ms": spread(status_times[WARMUP_ROUNDS:])} if status_times else {}),
        "target_overhead_ms": 50,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
