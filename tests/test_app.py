"""The studio app as users reach it: the real server on a free port, driven with gradio_client."""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from gradio_client import Client, handle_file

from studio.app import launch

REPO_ASSETS = __import__("pathlib").Path(__file__).resolve().parents[1] / "assets"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(tiny_model_dir, tmp_path_factory, monkeypatch_module):
    library_dir = tmp_path_factory.mktemp("library")
    monkeypatch_module.setenv("STUDIO_PRESETS_DIR", str(tmp_path_factory.mktemp("presets")))
    app, studio, url = launch(str(tiny_model_dir), port=free_port(), library_dir=library_dir, block=False)
    yield Client(url, verbose=False), studio, library_dir
    app.close()
    studio.close()


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def generate(
    client: Client,
    prompt="dusty snare",
    seconds=0.5,
    variations=1,
    seed=1,
    steps=4,
    cfg=1.0,
    diversity=1.0,
    init=None,
    strength=0.6,
):
    return client.predict(
        prompt, seconds, variations, seed, steps, cfg, diversity, init, strength, api_name="/generate"
    )


def read(path) -> np.ndarray:
    return sf.read(path, dtype="float32")[0]


def test_generate_returns_library_files_and_parameters(served):
    client, studio, library_dir = served
    files, params = generate(client, "punchy 808 kick", seconds=0.75, variations=3, seed=7)
    assert len(files) == len(params) == 3
    for i, (path, p) in enumerate(zip(files, params, strict=True)):
        info = sf.info(path)
        assert (info.samplerate, info.channels, info.frames) == (44100, 2, round(0.75 * 44100))
        assert p["prompt"] == "punchy 808 kick" and p["take_seed"] == 7 + i and p["steps"] == 4
        record = studio.library.get(p["id"])
        assert record.path.is_file() and record.path.is_relative_to(library_dir)


def test_the_api_takes_a_prompt_alone_and_fills_in_the_models_defaults(served):
    client, studio, _ = served
    files, params = client.predict("soft pad", api_name="/generate")
    engine = studio.host.engine
    assert len(files) == len(params) == 1
    assert params[0]["steps"] == engine.default_steps(engine.default_sampler)
    assert params[0]["seconds"] == pytest.approx(engine.config.max_seconds)
    assert params[0]["cfg"] == engine.config.default_cfg and params[0]["diversity"] == 1.0


def test_diversity_zero_identical_and_spread_rises_with_diversity(served):
    client = served[0]
    spreads = []
    for diversity in (0.0, 0.4, 1.0):
        files, _ = generate(client, "metal clang", variations=3, seed=21, diversity=diversity)
        takes = [read(f) for f in files]
        spreads.append(np.mean([np.abs(takes[0] - t).mean() for t in takes[1:]]))
    assert spreads[0] == 0
    assert spreads[0] < spreads[1] < spreads[2]


def test_style_transfer_with_the_shipped_recording(served):
    client = served[0]
    recording = handle_file(str(REPO_ASSETS / "drum-loop-120bpm.wav"))
    files, params = generate(client, "glitchy drum loop", seconds=1.0, seed=3, init=recording, strength=0.5)
    assert params[0]["strength"] == 0.5 and params[0]["init_audio"]
    plain, _ = generate(client, "glitchy drum loop", seconds=1.0, seed=3)
    assert np.abs(read(files[0]) - read(plain[0])).mean() > 0


def test_presets_fill_the_controls(served):
    client = served[0]
    values = client.predict("808 kick", api_name="/preset")
    prompt, _, seconds, steps = values[:4]
    assert "808" in prompt.lower() and 0 < seconds <= 1.49 and steps >= 1
    assert "restyles" not in values[-1]


def test_a_preset_over_a_loaded_recording_says_the_next_take_restyles_it(served):
    client = served[0]
    recording = handle_file(str(REPO_ASSETS / "drum-loop-120bpm.wav"))
    note = client.predict("808 kick", recording, api_name="/preset")[-1]
    assert "restyles the loaded recording" in note and "clear the recording" in note


def test_a_loop_takes_the_source_tempo_when_given(served):
    client = served[0]
    _, params = generate(client, "drum loop", seconds=1.4, seed=2)
    text, path = client.predict(params[0]["id"], 240, 1, 200, api_name="/loop")  # a bar at 240 is 1 s
    assert "from ~200.0 BPM" in text and sf.info(path).duration == pytest.approx(1.0, abs=0.01)


def test_analysing_a_take_reads_a_loops_tempo_and_says_when_a_take_has_no_beat(served):
    client, studio, _ = served
    _, params = generate(client, "rain on a tin roof", seconds=1.0, seed=6, variations=2)
    rate, rng = 44100, np.random.default_rng(6)
    t = np.arange(4 * rate) / rate
    a_minor = sum(np.sin(2 * np.pi * f * t) for f in (220, 261.63, 329.63))
    rain = 0.1 * rng.standard_normal((2, t.size)) + 0.1 * a_minor
    loop, loop_rate = sf.read(REPO_ASSETS / "drum-loop-120bpm.wav", always_2d=True)
    # the takes' files as a sound editor would leave them: what is analysed is what lies on disk
    sf.write(studio.library.get(params[0]["id"]).path, rain.T, rate)
    sf.write(studio.library.get(params[1]["id"]).path, loop, loop_rate)
    no_beat = client.predict(params[0]["id"], api_name="/analyse")
    assert no_beat.startswith("no steady beat found") and no_beat.endswith(", key **A minor**")
    tempo = re.fullmatch(
        r"about \*\*([\d.]+) BPM\*\*, key \*\*[A-G]#? m(?:aj|in)or\*\*",
        client.predict(params[1]["id"], api_name="/analyse"),
    )
    assert tempo and float(tempo[1]) == pytest.approx(120, abs=0.5)


@pytest.mark.parametrize(("fmt", "subtype"), [("wav16", "PCM_16"), ("wav24", "PCM_24"), ("flac", "PCM_24")])
def test_export_formats(served, fmt, subtype):
    client = served[0]
    _, params = generate(client, "rim shot", seconds=0.5, seed=5)
    info, path = client.predict(params[0]["id"], fmt, True, True, 0.01, 0.05, api_name="/export")
    assert "exported" in info
    assert sf.info(path).subtype == subtype


def test_exporting_a_take_twice_keeps_both_files_named_after_the_take(served):
    client, studio, _ = served
    _, params = generate(client, "tom fill", seconds=0.5, seed=9)
    first = client.predict(params[0]["id"], "wav24", False, False, 0, 0, api_name="/export")[1]
    second = client.predict(params[0]["id"], "wav24", False, False, 0, 0, api_name="/export")[1]
    record = studio.library.get(params[0]["id"])
    exported = {p.name for p in studio.export_dir.glob(f"{record.name}*.wav")}
    assert exported == {Path(first).name, Path(second).name} == {f"{record.name}.wav", f"{record.name}-2.wav"}


def test_the_server_serves_takes_but_never_the_library_database(served):
    import httpx

    client, studio, _ = served
    _, params = generate(client, "clap", seconds=0.5, seed=4)
    base = client.src.rstrip("/")
    take = httpx.get(f"{base}/gradio_api/file={studio.library.get(params[0]['id']).path}")
    database = httpx.get(f"{base}/gradio_api/file={studio.library.db_path}")
    wal = httpx.get(f"{base}/gradio_api/file={studio.library.db_path}-wal")
    assert take.status_code == 200 and take.content[:4] == b"RIFF"
    assert database.status_code >= 400 and wal.status_code >= 400


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"seconds": 0}, "seconds must be more than 0"),
        ({"seconds": 10_000}, "seconds must be more than 0 and at most"),
        ({"prompt": ""}, "the prompt is empty"),
        ({"prompt": "   "}, "the prompt is empty"),
        ({"variations": 2.7}, "variations must be a whole number, got 2.7"),
        ({"steps": 0}, "steps must be from 1 to 500"),
        ({"prompt": "x" * 5000}, "prompt is 5000 characters; the limit is 1000"),
    ],
)
def test_bad_parameters_get_a_clear_message_and_nothing_is_written(served, changes, message):
    client, studio, _ = served
    before = len(studio.library.search(limit=10_000))
    with pytest.raises(Exception, match=message):
        generate(client, **changes)
    assert len(studio.library.search(limit=10_000)) == before


def wav_header_claiming(rate: int, channels: int, frames: int = 256) -> bytes:
    """A small 16-bit PCM WAV whose header says `rate` Hz and `channels` channels."""
    import struct

    data = bytes(frames * channels * 2)
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * channels * 2, channels * 2, 16)
    body = (
        b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    )
    return b"RIFF" + struct.pack("<I", len(body)) + body


@pytest.mark.parametrize(
    ("rate", "channels", "message"),
    [
        (2_000_003, 2, "its header claims 2000003 Hz; audio files run from 1000 Hz to 768000 Hz"),
        (2**31 - 1, 1, "its header claims 2147483647 Hz"),
        (44100, 1000, "its header claims 1000 channels"),
    ],
)
def test_an_upload_whose_header_lies_is_refused_before_decoding(served, tmp_path, rate, channels, message):
    client, studio, _ = served
    lying = tmp_path / "small.wav"
    lying.write_bytes(wav_header_claiming(rate, channels))
    before = len(studio.library.search(limit=10_000))
    with pytest.raises(Exception, match=message):
        generate(client, init=handle_file(str(lying)))
    assert len(studio.library.search(limit=10_000)) == before


def test_corrupt_upload_is_refused_clearly(served, tmp_path):
    client, studio, _ = served
    corrupt = tmp_path / "broken.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt garbage" * 10)
    before = len(studio.library.search(limit=10_000))
    with pytest.raises(Exception, match="not a readable audio file") as caught:
        generate(client, init=handle_file(str(corrupt)))
    assert "broken.wav" in str(caught.value) and "/tmp" not in str(caught.value)  # no server paths
    assert len(studio.library.search(limit=10_000)) == before


def test_two_hour_upload_is_cut_and_the_ui_says_so(served, tmp_path):
    client = served[0]
    long_take = tmp_path / "two-hours.flac"
    sf.write(long_take, np.zeros((44100 * 7200, 1), np.int16), 44100, subtype="PCM_16")  # silence: tiny FLAC
    files, params = generate(client, "room tone", seconds=0.5, init=handle_file(str(long_take)), strength=0.8)
    assert len(files) == 1 and params[0]["strength"] == 0.8


def test_library_survives_a_restart(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("STUDIO_PRESETS_DIR", str(tmp_path / "presets"))
    library_dir = tmp_path / "library"
    app, studio, url = launch(str(tiny_model_dir), port=free_port(), library_dir=library_dir, block=False)
    try:
        _, params = generate(Client(url, verbose=False), "tape hiss", seed=99)
    finally:
        app.close()
        studio.close()
    app, studio, url = launch(str(tiny_model_dir), port=free_port(), library_dir=library_dir, block=False)
    try:
        rows = Client(url, verbose=False).predict("tape hiss", False, "", api_name="/search")[0]
        assert [row[0] for row in rows["data"]] == [params[0]["id"]]
    finally:
        app.close()
        studio.close()


def test_takes_are_served_in_place_and_gradios_copies_of_uploads_are_swept(tiny_model_dir, tmp_path):
    from gradio.utils import get_upload_folder

    from studio.app import serve
    from studio.service import open_studio

    studio = open_studio(str(tiny_model_dir), library_dir=tmp_path / "library")
    app, url = serve(studio, port=free_port(), block=False, cache_s=2)
    try:
        client = Client(url, verbose=False, download_files=False)  # the server's own paths come back
        recording = handle_file(str(REPO_ASSETS / "drum-loop-120bpm.wav"))
        files, params = client.predict("snap", 0.3, 1, 1, 2, 1.0, 1.0, recording, 0.6, api_name="/generate")
        take = Path(files[0]["path"])
        assert take == studio.library.get(params[0]["id"]).path  # no copy of the take in Gradio's cache
        upload = Path(params[0]["init_audio"])
        assert upload.is_relative_to(get_upload_folder()) and upload.is_file()  # Gradio's copy of the upload
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and upload.exists():
            time.sleep(0.5)
        assert not upload.exists() and take.is_file()
    finally:
        app.close()
        studio.close()


def test_a_wrong_password_is_refused_and_slowed_a_right_one_is_not(tiny_model_dir, tmp_path):
    import httpx

    from studio.app import serve
    from studio.service import open_studio

    studio = open_studio(str(tiny_model_dir), library_dir=tmp_path / "library")
    app, url = serve(studio, port=free_port(), block=False, auth=("ana", "correct-horse"))
    try:
        timings = []
        for password in ("wrong", "wrong", "wrong", "correct-horse"):
            started = time.monotonic()
            response = httpx.post(f"{url.rstrip('/')}/login", data={"username": "ana", "password": password})
            timings.append((response.status_code, time.monotonic() - started))
        assert [code for code, _ in timings] == [400, 400, 400, 200]
        assert timings[2][1] > timings[0][1] + 0.5  # each failure within a minute waits longer
        assert timings[3][1] < 0.5
    finally:
        app.close()
        studio.close()


def test_takes_go_to_the_player_as_written_and_other_audio_is_still_checked(tmp_path, monkeypatch):
    import gradio as gr
    from gradio import processing_utils

    from studio.app.common import take_player
    from studio.audio import write_audio

    probed: list[str] = []
    monkeypatch.setattr(processing_utils, "ffmpeg_installed", lambda: True)
    monkeypatch.setattr(processing_utils, "audio_is_playable", lambda path: probed.append(path) or True)
    take = write_audio(tmp_path / "take.wav", np.zeros((2, 4410), np.float32), 44100)
    other = write_audio(tmp_path / "take.flac", np.zeros((2, 4410), np.float32), 44100)
    with gr.Blocks():
        player = take_player(label="Take")
    sent = player.postprocess(str(take))
    assert Path(sent.path) == take and sent.orig_name == "take.wav"
    assert probed == []  # a library take is not probed with ffprobe on its way to the browser
    assert Path(player.postprocess(str(other)).path) == other
    assert probed == [str(other)]
    assert player.postprocess(None) is None
