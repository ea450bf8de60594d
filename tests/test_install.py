"""Studio as a user installs it: a wheel built from the repository, installed into a fresh virtual
environment, run from a folder that is not the checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import soundfile as sf

REPO = Path(__file__).resolve().parents[1]


def test_the_wheel_ships_presets_and_the_default_model(tmp_path):
    source = tmp_path / "source"  # a copy, so the build leaves nothing in the checkout
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(REPO / name, source / name if source.exists() else _mkdir(source) / name)
    for name in ("studio", "presets", "models"):
        shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    wheels = tmp_path / "wheels"
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            wheels,
            source,
        ]
    )
    # The venv borrows this interpreter's torch and other dependencies; studio itself is the wheel's.
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--system-site-packages", venv])
    _run([venv / "bin" / "python", "-m", "pip", "install", "--no-deps", "-q", *wheels.glob("*.whl")])

    elsewhere = _mkdir(tmp_path / "elsewhere")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "STUDIO_PRESETS_DIR": str(tmp_path / "user-presets")}
    env.pop("STUDIO_EMBEDDED_MODELS", None)
    installed = _run([venv / "bin" / "python", "-c", "import studio; print(studio.__file__)"], elsewhere, env)
    assert Path(installed.strip()).is_relative_to(venv)

    models = _run([venv / "bin" / "studio", "models"], elsewhere, env)
    assert "studio-mini" in models and "(default)" in models and str(venv) in models

    presets = _run(
        [
            venv / "bin" / "python",
            "-c",
            "from studio.presets import load_presets; print(len(load_presets()))",
        ],
        elsewhere,
        env,
    )
    assert int(presets) == len(list((REPO / "presets").glob("*.toml")))

    takes = _run(
        [
            venv / "bin" / "studio",
            "generate",
            "punchy kick",
            "--seconds",
            "0.5",
            "--seed",
            "1",
            "--out",
            "takes",
        ],
        elsewhere,
        env,
    )
    wav = elsewhere / "takes" / "punchy-kick_1_1.wav"
    assert elsewhere / takes.strip() == wav and sf.info(str(wav)).frames == round(0.5 * 44100)


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _run(command: list, cwd: Path | None = None, env: dict | None = None) -> str:
    run = subprocess.run(
        [str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout
