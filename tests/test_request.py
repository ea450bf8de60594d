"""The one vocabulary for a take: its limits refuse bad values wherever they are given, before any
model loads, and reading it never imports torch."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from studio.errors import RequestError
from studio.request import MAX_SEED, Request, check_parameter, check_request


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("steps", 8, 8),
        ("steps", 8.0, 8),  # a slider's or TouchOSC's whole float
        ("variations", 16, 16),
        ("seed", -1, -1),
        ("seed", MAX_SEED, MAX_SEED),
        ("cfg", 0, 0.0),
        ("diversity", 1, 1.0),
        ("strength", 1, 1.0),
        ("seconds", 0.25, 0.25),
        ("prompt", "x" * 1000, "x" * 1000),
    ],
)
def test_values_inside_the_limits_pass_converted(name, value, expected):
    checked = check_parameter(name, value)
    assert checked == expected and type(checked) is type(expected)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("steps", 8.5, "steps must be a whole number, got 8.5"),
        ("steps", True, "steps must be a whole number"),
        ("steps", 501, "steps must be from 1 to 500"),
        ("variations", 2.7, "variations must be a whole number, got 2.7"),
        ("variations", 0, "variations must be from 1 to 16"),
        ("seed", -2, r"seed must be from -1 to 9223372036854775807 \(-1 for a random one\)"),
        ("cfg", 31, "cfg must be from 0 to 30"),
        ("cfg", float("nan"), "cfg must be a finite number"),
        ("diversity", -0.1, "diversity must be from 0 to 1"),
        ("strength", 0, "strength must be more than 0 and at most 1"),
        ("seconds", 0, "seconds must be more than 0"),
        ("seconds", 1e-300, r"seconds must be more than 0, got 1e-300 \(the shortest take is 0.05 s\)"),
        ("seconds", "long", "seconds must be a finite number"),
        ("prompt", 5, "prompt must be text"),
        ("prompt", "x" * 1001, "prompt is 1001 characters; the limit is 1000"),
        ("loudness", 1, "unknown request parameter 'loudness'"),
    ],
)
def test_values_outside_the_limits_are_refused_saying_what_is_allowed(name, value, message):
    with pytest.raises(RequestError, match=message):
        check_parameter(name, value)


def test_a_models_longest_take_bounds_seconds_with_a_hint_either_way():
    with pytest.raises(RequestError, match=r"(?s)at most 1.49 for this model.*ask for a shorter take"):
        check_parameter("seconds", 3, max_seconds=1.49)
    with pytest.raises(RequestError, match=r"(?s)more than 0.*give a length in seconds, e.g. 1.49"):
        check_parameter("seconds", -1, max_seconds=1.49)


@pytest.mark.parametrize("longest", [4.1795918, 1.4860771, 2.0])
def test_the_limit_a_message_shows_is_itself_accepted_as_the_longest_take(longest):
    with pytest.raises(RequestError) as info:
        check_parameter("seconds", 10, max_seconds=longest)
    shown = float(re.search(r"at most (\d+\.\d\d)", str(info.value))[1])
    assert check_parameter("seconds", shown, max_seconds=longest) == longest
    assert check_parameter("seconds", longest, max_seconds=longest) == longest
    with pytest.raises(RequestError, match="at most"):
        check_parameter("seconds", shown + 0.01, max_seconds=longest)


def test_a_request_is_checked_whole_and_defaults_stay_defaults():
    request = check_request(Request("x", steps=4.0, variations=2.0, take_seeds=(3, 4.0)))
    assert (request.steps, request.variations, request.take_seeds) == (4, 2, (3, 4))
    assert request.seconds is None and request.cfg is None and request.seed is None
    with pytest.raises(RequestError, match="take seeds must be from 0"):
        check_request(Request("x", take_seeds=(-1,)))
    with pytest.raises(RequestError, match="take_seeds must hold 1 to 16 seeds, got 17"):
        check_request(Request("x", take_seeds=tuple(range(17))))


def test_the_vocabulary_and_presets_load_without_torch():
    code = (
        "import sys, studio.request, studio.presets; studio.presets.load_presets(); "
        "print('torch' in sys.modules)"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "False"


def test_the_cli_refuses_a_bad_value_before_it_looks_for_the_model(tmp_path):
    # The model named does not exist: only a check made before loading can give the value's error.
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "studio",
            "generate",
            "x",
            "--model",
            str(tmp_path / "absent"),
            "--steps",
            "0",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        timeout=120,
    )
    assert run.returncode == 2 and "steps must be from 1 to 500" in run.stderr, run.stderr
    assert "does not exist" not in run.stderr
