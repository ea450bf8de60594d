"""`studio eval voice`: the measures on signals with known answers, the prompts it asks with, and the
command end to end on the tiny model and the synthetic corpus of test_eval."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
from test_eval import CATEGORIES, studio, write_corpus

from studio.audio import write_audio
from studio.data.manifest import Clip
from studio.eval import sound, voice
from studio.eval.takes import Takes
from studio.prompt_facts import bpm_in, note_frequency, note_in

RATE = 44100


def tone(hz: float, seconds: float = 2.0) -> np.ndarray:
    """A stereo note with five harmonics, as a voiced instrument has."""
    t = np.arange(int(RATE * seconds)) / RATE
    wave = sum(np.sin(2 * np.pi * hz * k * t) / k for k in range(1, 6))
    return np.stack([0.3 * wave] * 2)


def bursts(times: np.ndarray, seconds: float = 4.18) -> np.ndarray:
    """10 ms noise bursts starting at `times` (seconds)."""
    audio = np.zeros(int(RATE * seconds))
    burst = np.random.default_rng(0).standard_normal(441) * np.exp(-np.arange(441) / 88)
    for start in (np.asarray(times) * RATE).astype(int):
        audio[start : start + 441] += burst[: len(audio) - start]
    return audio[None]


def clicks(bpm: float, seconds: float = 4.18) -> np.ndarray:
    """A click track: a 10 ms noise burst on every beat."""
    return bursts(np.arange(0, seconds, 60 / bpm), seconds)


def test_pitch_is_read_against_the_pitch_class_asked_for():
    c4 = note_frequency(60)
    assert c4 == pytest.approx(261.63, abs=0.01)
    f0, voiced = sound.median_f0(tone(261.63), RATE, c4)
    cents, octaves = sound.pitch_class_error(f0, c4)
    assert abs(cents) < 5 and octaves == 0 and voiced > 0.9
    sharp, _ = sound.median_f0(tone(c4 * 2 ** (60 / 1200)), RATE, c4)
    assert sound.pitch_class_error(sharp, c4)[0] == pytest.approx(60, abs=5)  # outside ±50: wrong
    octave_up, _ = sound.median_f0(tone(2 * c4), RATE, c4)
    cents, octaves = sound.pitch_class_error(octave_up, c4)
    assert abs(cents) < 5 and octaves == 1
    assert sound.median_f0(np.zeros((2, RATE)), RATE, c4) == (None, 0.0)

    # The report: right pitch class counts (octave errors said apart); a miss and silence do not.
    takes = {
        "piano note C4": Takes([tone(c4), tone(c4 * 2**0.05), tone(c4 / 2), np.zeros((2, RATE))], RATE, 0, 2)
    }
    report = voice.pitch(takes, {"piano note C4": ("piano", 60)})
    assert [row["right"] for row in report["per_take"]] == [True, False, True, False]
    assert report["share"] == 0.5 and report["per_instrument"] == {"piano": 0.5}
    assert report["octave_errors"] == 1 and report["unvoiced"] == 1
    assert report["per_take"][2]["octaves"] == -1 and report["per_take"][3]["cents"] is None


def test_tempo_is_right_within_three_percent():
    estimate = voice.take_tempo(clicks(120), RATE)
    assert estimate == pytest.approx(120, rel=0.03)
    assert sound.tempo_relation(estimate, 120) == "right"
    assert sound.tempo_relation(voice.take_tempo(clicks(100), RATE), 120) == "wrong"
    assert sound.tempo_relation(61, 120) == "half-time" and sound.tempo_relation(238, 120) == "double-time"
    assert voice.take_tempo(np.zeros((2, RATE)), RATE) is None
    assert sound.tempo_relation(None, 120) == "none"


def test_onsets_are_found_where_sounds_start_even_at_zero():
    times = np.array([0.0, 0.3, 0.65, 1.2, 2.0, 3.1])
    found = sound.onset_times(bursts(times), RATE)
    assert found == pytest.approx(times, abs=0.01)
    assert len(sound.onset_times(np.zeros((2, RATE)), RATE)) == 0


def test_held_out_loops_are_scored_by_the_same_tempo_measure(tmp_path):
    """Loops whose caption states a tempo in range are measured against it, as takes are."""
    config = SimpleNamespace(sample_rate=RATE, audio_channels=2, max_seconds=4.18)

    def loop(name: str, bpm: float, caption: str) -> Clip:
        write_audio(tmp_path / f"{name}.wav", np.repeat(clicks(bpm, 6.0), 2, axis=0), RATE)
        return Clip(id=name, path=f"{name}.wav", caption=caption, split="test", folder=tmp_path)

    held_out = {
        "drum-loop": [
            loop("right", 120, "drum loop at 120 BPM"),
            loop("slow", 100, "a loop at 120 BPM"),  # stated 120, plays 100
            loop("fast", 150, "drum loop at 150 BPM"),  # outside TEMPO_RANGE: not counted
            loop("unstated", 110, "drum loop"),
        ],
        "kick": [loop("kick", 120, "kick at 120 BPM")],
    }
    engine = SimpleNamespace(config=config)
    recordings = voice.held_out_audio(engine, held_out, {"drum-loop", "kick"})
    assert all(audio.shape == (2, round(4.18 * RATE)) for _, audio in recordings["drum-loop"])
    reference = voice.tempo_reference(recordings, RATE)
    assert reference == {"clips": 2, "share": 0.5, "half-time": 0, "double-time": 0, "none": 0}
    assert voice.tempo_reference(voice.held_out_audio(engine, held_out, {"kick"}), RATE) is None


def test_grid_lock_tells_a_loop_on_the_grid_from_one_off_it_or_at_another_tempo():
    sixteenth = 60 / 120 / 4
    pattern = np.array([0, 2, 3, 4, 6, 8, 10, 11, 12, 14])  # a groove, not every sixteenth
    on = bursts(np.concatenate([pattern * sixteenth + bar * 2.0 for bar in range(2)]))
    lock, offset = sound.grid_lock(on, RATE, 120)
    assert lock > 0.9 and abs(offset) < 0.15  # the onset envelope reads a hop (0.05 sixteenth) early
    late = bursts(np.concatenate([(pattern + 0.4) * sixteenth + bar * 2.0 for bar in range(2)]))
    lock, offset = sound.grid_lock(late, RATE, 120)
    assert lock > 0.9 and 0.25 < offset < 0.45  # on tempo, in time, but off the grid's lines
    assert sound.grid_lock(clicks(100), RATE, 120)[0] < 0.5  # another tempo drifts through the grid
    scattered = bursts(np.random.default_rng(3).uniform(0, 4, 24))
    assert sound.grid_lock(scattered, RATE, 120)[0] < 0.4
    assert sound.grid_lock(bursts([0.5, 1.0]), RATE, 120) is None  # too few onsets to say


def test_the_tempo_report_says_how_far_takes_sit_on_the_grid():
    sixteenth = 60 / 120 / 4
    on = bursts(np.arange(0, 4, 2 * sixteenth))
    off = bursts(np.arange(0, 4, 2 * sixteenth) + sixteenth / 2)
    takes = {"drum loop at 120 BPM": Takes([on[0], off[0]], RATE, 0, 1)}
    report = voice.tempo(takes, {"drum loop at 120 BPM": ("drum loop at {bpm} BPM", 120)})
    on_row, off_row = report["per_take"]
    assert on_row["grid_lock"] > 0.9 and abs(on_row["grid_offset"]) < 0.15
    assert off_row["grid_lock"] > 0.9 and abs(off_row["grid_offset"]) > 0.35  # between the lines
    assert report["on_grid_median"] == pytest.approx(0.0, abs=0.2)  # one on, one between: no lean


def test_decay_tells_a_hit_from_a_held_sound():
    t = np.arange(int(RATE * 4)) / RATE
    noise = np.random.default_rng(0).standard_normal((2, t.size)) * 0.5
    hit = noise * np.exp(-t / 0.4)  # falls 11 dB every 0.5 s
    assert sound.decay_db(hit, RATE) >= 30
    assert sound.decay_db(hit, RATE) == pytest.approx(sound.decay_db(hit * 0.01, RATE))  # level-free
    assert abs(sound.decay_db(noise, RATE)) < 3  # steady noise: no decay
    assert sound.decay_db(noise * (t < 0.1), RATE) <= 120  # a silent second half sits at −120 dBFS


def test_correlation_between_takes():
    rng = np.random.default_rng(0)
    take = rng.standard_normal((2, RATE))
    assert sound.mean_abs_correlation([take, take.copy(), -take]) == pytest.approx(1)
    independent = [rng.standard_normal((2, RATE)) for _ in range(4)]
    assert sound.mean_abs_correlation(independent) < 0.02
    assert np.isnan(sound.correlation(take, np.ones((2, RATE))))
    with pytest.raises(ValueError):
        sound.mean_abs_correlation([take])


def test_notes_and_tempos_are_drawn_from_the_seed_and_read_back_from_the_prompt():
    notes = voice.note_prompts(7, 4)
    assert notes == voice.note_prompts(7, 4) and notes != voice.note_prompts(8, 4)
    assert len(notes) == 4 * len(voice.PITCH_INSTRUMENTS)
    for prompt, (instrument, note) in notes.items():
        low, high = voice.PITCH_INSTRUMENTS[instrument][1]
        assert low <= note <= high and note_in(prompt) == note
    piano = sorted(note for instrument, note in notes.values() if instrument == "piano")
    assert piano[-1] - piano[0] >= 24  # spread over the register, not bunched
    tempos = voice.tempo_prompts(7, 3)
    assert len(tempos) == 3 * len(voice.TEMPO_PHRASINGS) and tempos == voice.tempo_prompts(7, 3)
    for prompt, (phrasing, bpm) in tempos.items():
        assert 90 <= bpm <= 140 and bpm_in(prompt) == bpm and prompt == phrasing.format(bpm=bpm)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("corpus"))


def test_eval_voice_writes_the_report(corpus, tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "reports"
    argv = ("eval", "voice", "--model", tiny_model_dir, "--corpus", corpus, "--quick", "--takes", 2)
    assert studio(*argv, "--out", out, "--seed", 3) == 0
    folder = out / tiny_model_dir.name
    report = json.loads((folder / "voice.json").read_text())
    assert report["settings"] == {
        "takes_per_prompt": 2,
        "seed": 3,
        "cfg": 1.0,  # the tiny model's own default_cfg and sampler
        "sampler": "pingpong-8",
        "seconds": pytest.approx(65536 / RATE),  # a prompt with no length: the model's full length
    }
    variety = report["variety"]
    assert set(variety["per_prompt"]) == set(voice.VARIETY_CATEGORIES)
    assert all(0 <= p["mean_abs_correlation"] <= 1 for p in variety["per_prompt"].values())
    assert variety["diversity_0"]["max_abs_difference"] == 0  # identical to the bit
    pitch, tempo = report["pitch"], report["tempo"]
    assert pitch["takes"] == len(pitch["per_take"]) == 2 * len(voice.PITCH_INSTRUMENTS)
    assert {row["prompt"] for row in pitch["per_take"]} == set(voice.note_prompts(3, 1))
    assert tempo["takes"] == 2 * len(voice.TEMPO_PHRASINGS) and 0 <= tempo["share"] <= 1
    assert "held_out" in tempo  # None: the synthetic corpus holds out no loops that state a tempo
    assert set(report["decay"]["per_prompt"]) == set(voice.DECAY_CATEGORIES)
    clean = report["clean"]
    assert clean["takes"] == 2 * (4 + 1 + 4 + 2 + 3)  # every take above
    assert clean["dc_offset_dbfs"]["max"] < 0
    # only the categories the corpus holds out clips of have a low-band reference
    assert set(clean["low_band_excess_db"]["per_category"]) == set(CATEGORIES)
    markdown = (folder / "voice.md").read_text()
    assert "| variety: mean" in markdown and "## Tempo" in markdown
    printed = capsys.readouterr().out
    assert "variety" in printed and str(folder / "voice.json") in printed
