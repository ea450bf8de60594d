"""`studio` as a user runs it: real processes, real files, exit codes and messages."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import soundfile as sf
from tiny import tiny_config, write_config


def studio(*args: str, env: dict | None = None, cwd=None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "studio", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=300,
    )


def test_generate_writes_wavs_and_sidecars(tiny_model_dir, tmp_path):
    out = tmp_path / "takes"
    run = studio(
        "generate",
        "punchy 808 kick",
        "--model",
        str(tiny_model_dir),
        "--seconds",
        "0.75",
        "--variations",
        "3",
        "--diversity",
        "0.7",
        "--seed",
        "7",
        "--steps",
        "4",
        "--out",
        str(out),
    )
    assert run.returncode == 0, run.stderr
    wavs = sorted(out.glob("*.wav"))
    assert [p.name for p in wavs] == [f"punchy-808-kick_7_{i}.wav" for i in (1, 2, 3)]
    assert run.stdout.split() == [str(p) for p in wavs]
    for i, wav in enumerate(wavs):
        info = sf.info(str(wav))
        assert (info.samplerate, info.channels, info.frames) == (44100, 2, round(0.75 * 44100))
        params = json.loads(wav.with_suffix(".json").read_text())
        assert params["prompt"] == "punchy 808 kick" and params["take_index"] == i
        assert (params["seed"], params["take_seed"], params["diversity"], params["steps"]) == (
            7,
            7 + i,
            0.7,
            4,
        )


def test_params_sidecar_regenerates_the_take(tiny_model_dir, tmp_path):
    first = studio(
        "generate",
        "hat",
        "--model",
        str(tiny_model_dir),
        "--seconds",
        "0.3",
        "--variations",
        "2",
        "--seed",
        "3",
        "--out",
        str(tmp_path / "a"),
    )
    assert first.returncode == 0, first.stderr
    second_take = tmp_path / "a" / "hat_3_2.wav"
    sidecar = json.loads(second_take.with_suffix(".json").read_text())
    assert sidecar["model"] == str(tiny_model_dir.resolve())  # found again without --model
    again = studio(
        "generate", "--params", str(second_take.with_suffix(".json")), "--out", str(tmp_path / "b")
    )
    assert again.returncode == 0, again.stderr
    original, _ = sf.read(str(second_take))
    regenerated, _ = sf.read(again.stdout.split()[0])
    assert abs(original - regenerated).max() < 1e-4


def test_restyle_a_recording(tiny_model_dir, tmp_path):
    import numpy as np

    recording = tmp_path / "loop.flac"
    sf.write(
        str(recording), (0.3 * np.random.default_rng(1).standard_normal((48000, 1))).astype("float32"), 48000
    )
    run = studio(
        "generate",
        "vinyl texture",
        "--model",
        str(tiny_model_dir),
        "--init",
        str(recording),
        "--strength",
        "0.6",
        "--seconds",
        "0.5",
        "--seed",
        "1",
        "--out",
        str(tmp_path / "o"),
    )
    assert run.returncode == 0, run.stderr
    assert "resampled from 48000 Hz" in run.stderr
    params = json.loads(next((tmp_path / "o").glob("*.json")).read_text())
    assert params["init_audio"] == str(recording.resolve()) and params["strength"] == 0.6


def assert_clear_error(run: subprocess.CompletedProcess, *phrases: str) -> None:
    assert run.returncode == 2, (run.stdout, run.stderr)
    assert "Traceback" not in run.stderr
    for phrase in phrases:
        assert phrase in run.stderr, run.stderr


def test_bad_input_exits_2_with_a_clear_message(tiny_model_dir, tmp_path):
    model = ("--model", str(tiny_model_dir))
    assert_clear_error(studio("generate", "x", *model, "--seconds", "-1"), "seconds must be more than 0")
    assert_clear_error(studio("generate", "x", *model, "--seconds", "1e-300"), "the shortest take is 0.05 s")
    assert_clear_error(studio("generate", "x", *model, "--diversity", "3"), "diversity must be from 0 to 1")
    not_audio = tmp_path / "take.wav"
    not_audio.write_text("definitely not audio")
    assert_clear_error(studio("generate", "x", *model, "--init", str(not_audio)), "not a readable audio file")
    assert_clear_error(studio("generate", "x", "--model", str(tmp_path / "nowhere")), "does not exist")
    assert_clear_error(studio("generate", "x", "--model", "no-such-model"), "no model named 'no-such-model'")
    assert_clear_error(studio("generate", *model), "a prompt is needed")


def test_broken_model_folders(tiny_model_dir, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    assert_clear_error(studio("generate", "x", "--model", str(broken)), "cannot read weights", str(weights))
    shutil.copy(tiny_model_dir / "model.safetensors", weights)
    write_config(broken, tiny_config(**{"model.diffusion.config.depth": 5}))
    assert_clear_error(studio("generate", "x", "--model", str(broken)), "missing keys", "model_config.json")
    (broken / "model_config.json").write_text("[]")
    assert_clear_error(studio("generate", "x", "--model", str(broken)), "top level should be a JSON object")
    write_config(broken, tiny_config())
    weights.unlink()
    assert_clear_error(studio("generate", "x", "--model", str(broken)), "no weights file")


def test_stable_audio_open_small_offline_says_what_to_do(tmp_path):
    env = {"HF_HOME": str(tmp_path / "hf"), "STUDIO_MODELS_DIR": str(tmp_path / "models")}
    run = studio("generate", "x", "--model", "stable-audio-open-small", env=env)
    assert_clear_error(
        run,
        "not on this machine",
        "hf auth login",
        "accept the licence",
        str(tmp_path / "models" / "stable-audio-open-small"),
        "--model FOLDER",
    )


def test_t5_model_without_t5_weights_says_what_to_do(fixture_dir, tmp_path):
    run = studio(
        "generate", "x", "--model", str(fixture_dir), "--seconds", "0.5", env={"HF_HOME": str(tmp_path)}
    )
    assert_clear_error(run, "T5 text encoder 't5-base' is not available", "HF_HOME")


def test_models_lists_user_folder_and_hub_cache(tiny_model_dir, tmp_path):
    user = tmp_path / "models"
    shutil.copytree(tiny_model_dir, user / "my-kicks")
    snapshot = (
        tmp_path / "hf" / "hub" / "models--stabilityai--stable-audio-open-small" / "snapshots" / "abc123"
    )
    shutil.copytree(tiny_model_dir, snapshot)
    refs = snapshot.parents[1] / "refs"
    refs.mkdir()
    (refs / "main").write_text("abc123")
    env = {"STUDIO_MODELS_DIR": str(user), "HF_HOME": str(tmp_path / "hf")}
    run = studio("models", env=env)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert any(line.startswith("my-kicks") and "user" in line for line in lines)
    assert any(line.startswith("stable-audio-open-small") and "hf-cache" in line for line in lines)
    # A name resolves to that folder.
    gen = studio(
        "generate", "x", "--model", "my-kicks", "--seconds", "0.2", "--out", str(tmp_path / "o"), env=env
    )
    assert gen.returncode == 0, gen.stderr


@pytest.mark.parametrize("argv", [["--help"], ["generate", "--help"]])
def test_help(argv):
    run = studio(*argv)
    assert run.returncode == 0 and "studio" in run.stdout


@pytest.mark.parametrize(
    ("options", "prompt", "seconds", "expected"),
    [
        # no --model: the shipped studio-mini at the defaults its config names (a flow model
        # sampled ping-pong, 8 steps, cfg 4), not Euler 50 as its objective alone would give
        ((), "kick drum", 1.5, ("studio-mini", "pingpong", 8, 4.0)),
        # the shipped one-step energy-head MAR model, by name, with representation CFG at the
        # guidance its config declares (default_cfg 3), not the ARC models' 1
        (("--model", "studio-mini-energy"), "snare drum", 1.0, ("studio-mini-energy", "mar", 8, 3.0)),
    ],
)
def test_generate_with_an_embedded_model_at_its_own_defaults(tmp_path, options, prompt, seconds, expected):
    listed = studio("models")
    assert listed.returncode == 0 and expected[0] in listed.stdout, listed.stdout + listed.stderr
    run = studio(
        "generate", prompt, *options, "--seconds", str(seconds), "--seed", "3", "--out", str(tmp_path)
    )
    assert run.returncode == 0, run.stderr
    (wav,) = tmp_path.glob("*.wav")
    audio, rate = sf.read(str(wav), always_2d=True)
    assert rate == 44100 and audio.shape == (round(seconds * 44100), 2)
    assert 1e-3 < float((audio**2).mean()) ** 0.5 < 1  # sound, not silence or a blown-up take
    params = json.loads(wav.with_suffix(".json").read_text())
    assert (params["model"], params["sampler"], params["steps"], params["cfg"]) == expected


@pytest.mark.parametrize("command", [["--help"], ["devices"], ["models"], ["generate", "x", "--steps", "0"]])
def test_light_commands_import_neither_torch_nor_the_trainers(command):
    run = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "studio", *command],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        timeout=120,
    )
    imported = {line.rsplit("|", 1)[-1].strip() for line in run.stderr.splitlines() if "|" in line}
    assert "studio.cli" in imported, run.stderr[-2000:]
    assert not {"torch", "studio.training", "studio.engine"} & imported
    if command[0] == "generate":  # a bad value is refused before anything heavy loads
        assert run.returncode == 2 and "steps must be from 1 to 500" in run.stderr


def test_train_help_still_lists_the_trainers_options():
    run = studio("train", "autoencoder", "--help")
    assert run.returncode == 0 and "--phase-weight" in run.stdout and "--tone-share" in run.stdout


def test_a_missing_extra_is_named_with_the_install_that_brings_it(tmp_path):
    script = """
import importlib.abc, sys
class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] == "tqdm":
            raise ModuleNotFoundError(f"No module named '{name}'", name=name)
sys.meta_path.insert(0, Absent())
from studio.cli import main
sys.exit(main(["train", "autoencoder", "--corpus", "c", "--out", "o"]))
"""
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert_clear_error(run, "tqdm is not installed", "pip install 'studio[train]'")


def test_strength_without_a_recording_is_refused(tiny_model_dir):
    run = studio("generate", "x", "--model", str(tiny_model_dir), "--strength", "0.3")
    assert_clear_error(run, "no recording was given", "add --init")


def test_a_second_studio_on_a_busy_port_says_so_before_loading_anything(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = studio(
            "serve", "--port", str(port), "--model", str(tmp_path / "absent"), "--library", str(tmp_path)
        )
    # the model named does not exist: only a check made before loading it can answer about the port
    assert_clear_error(run, f"cannot serve on 127.0.0.1:{port}", f"--port {port + 1}")
    assert "does not exist" not in run.stderr


def test_credentials_come_from_the_environment_or_a_file_not_only_argv(tmp_path):
    from test_app import free_port

    absent = ("--model", str(tmp_path / "absent"), "--library", str(tmp_path / "lib"))
    anywhere = ("serve", "--host", "0.0.0.0", "--port", str(free_port()))
    refused = studio(*anywhere, *absent)
    assert_clear_error(refused, "without a password", "STUDIO_AUTH")
    assert_clear_error(studio(*anywhere, *absent, env={"STUDIO_AUTH": "ana"}), "want user:password")
    assert_clear_error(studio(*anywhere, "--auth", "@" + str(tmp_path / "nope"), *absent), "cannot read")
    secret = tmp_path / "auth"
    secret.write_text("ana:correct-horse\n")
    # accepted: the run goes on to the model, which is absent
    assert_clear_error(studio(*anywhere, "--auth", f"@{secret}", *absent), "does not exist")
    assert_clear_error(studio(*anywhere, *absent, env={"STUDIO_AUTH": "ana:correct-horse"}), "does not exist")
