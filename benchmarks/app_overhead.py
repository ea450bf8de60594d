"""How much time the app adds on top of generation: request sent -> audio file delivered to the
client, minus the engine's own generation time, over repeated /generate calls.

    python benchmarks/app_overhead.py --model FOLDER [--requests 50] [--out reports/bench/...json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import torch
from gradio_client import Client

from studio.app import launch


def machine() -> dict:
    return {
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as library:
        os.environ.setdefault("STUDIO_PRESETS_DIR", str(Path(library) / "presets"))
        app, studio, url = launch(args.model, port=free_port(), library_dir=library, block=False)
        try:
            client = Client(url, verbose=False)
            overheads, totals = [], []
            for i in range(args.requests + 3):
                start = time.perf_counter()
                files, params = client.predict(
                    "benchmark hit", args.seconds, 1, i, args.steps, 1.0, 1.0, None, 0.6, api_name="/generate"
                )
                total = time.perf_counter() - start
                assert Path(files[0]).is_file()
                if i >= 3:  # the first calls warm up the client and the queue
                    totals.append(total)
                    overheads.append(total - params[0]["generation_s"])
        finally:
            app.close()
            studio.host.engine.close()
            studio.library.close()

    report = {
        "benchmark": "app overhead: /generate round trip minus engine generation time",
        "date": date.today().isoformat(),
        "machine": machine(),
        "model": args.model,
        "requests": args.requests,
        "seconds": args.seconds,
        "steps": args.steps,
        "overhead_ms": {
            "median": statistics.median(overheads) * 1000,
            "min": min(overheads) * 1000,
            "max": max(overheads) * 1000,
        },
        "round_trip_ms_median": statistics.median(totals) * 1000,
        "target_overhead_ms": 50,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
