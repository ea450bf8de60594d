"""The corpus builder on a small synthetic subset: procedural sounds, GM renders (when a soundfont is
installed) and a fake Debian tree of tiny WAVs written here, so no package is installed by the tests."""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import re
import shutil
import struct
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from studio.data import CATEGORIES, SPLITS, CorpusError, debian, midi_render, read_manifest, split_for, synth
from studio.data import augment as aug
from studio.data.build import (
    build_corpus,
    extend_corpus,
    loop_bpm,
    parse_licences,
    parse_sources,
    water_fill,
)
from studio.data.captions import NOTE_NAMES, Description, captions, phrasings
from studio.data.cli import add_data_commands
from studio.data.manifest import parse_focus

RATE = 22050
FIELDS = {"id", "path", "caption", "captions", "category", "source", "source_file", "licence", "split",
          "seconds", "sample_rate", "augment", "tags"}  # fmt: skip
PROCEDURAL_CORE = (
    "kick",
    "snare",
    "hi-hat",
    "bass",
    "pad",
    "bell",
    "rain",
    "footsteps",
    "explosion",
    "riser",
)
SOURCES = "procedural,sonic-pi-samples,hydrogen-drumkits"

SONIC_PI_COPYRIGHT = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/

Files: *
License: MIT

Files: etc/samples/bd_fake.wav
License: CC0
"""
DRUMKIT_XML = """<?xml version="1.0" encoding="UTF-8"?>
<drumkit_info xmlns="http://www.hydrogen-music.org/drumkit">
 <name>Fake Kit</name>
 <license>This work is licensed under the Creative Commons 0 License.</license>
 <instrumentList>
  <instrument><id>0</id><name>Kick</name><layer><filename>k.wav</filename><min>0</min><max>1</max></layer>
  </instrument>
  <instrument><id>1</id><name>Closed HH</name><layer><filename>h.wav</filename></layer></instrument>
  <instrument><id>2</id><name>Empty</name><layer><filename>empty.wav</filename></layer></instrument>
 </instrumentList>
</drumkit_info>
"""


def _tone(seconds: float, freq: float, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    t = np.arange(int(seconds * 44100)) / 44100
    rng = np.random.default_rng(seed)
    x = np.sin(2 * np.pi * freq * t) + noise * rng.standard_normal(t.size)
    return (0.5 * x * np.exp(-t / (seconds / 4))).astype(np.float32)


def make_fake_debian(root: Path) -> Path:
    """A few tiny WAVs laid out like sonic-pi-samples and hydrogen-drumkits, with licence files."""
    samples = root / "usr/share/sonic-pi/samples"
    samples.mkdir(parents=True)
    sf.write(samples / "bd_fake.wav", _tone(0.5, 55), 44100)
    sf.write(samples / "sn_fake.wav", _tone(0.4, 200, noise=1.0, seed=1), 44100)
    doc = root / "usr/share/doc/sonic-pi-samples"
    doc.mkdir(parents=True)
    (doc / "copyright").write_text(SONIC_PI_COPYRIGHT)
    kit = root / "usr/share/hydrogen/data/drumkits/FakeKit"
    kit.mkdir(parents=True)
    (kit / "drumkit.xml").write_text(DRUMKIT_XML)
    sf.write(kit / "k.wav", _tone(0.6, 50, seed=2), 44100)
    sf.write(kit / "h.wav", _tone(0.3, 9000, noise=2.0, seed=3), 44100)
    sf.write(kit / "empty.wav", np.zeros(4410, dtype=np.float32), 44100)
    return root


@pytest.fixture(scope="module")
def fake_root(tmp_path_factory) -> Path:
    return make_fake_debian(tmp_path_factory.mktemp("debian"))


@pytest.fixture(scope="module")
def corpora(tmp_path_factory, fake_root) -> tuple[Path, Path]:
    """The same corpus built twice: in-process and with two worker processes."""
    base = tmp_path_factory.mktemp("corpus")
    one, two = base / "one", base / "two"
    build_corpus(one, 0.01, seed=7, sources=SOURCES, sample_rate=RATE, workers=1, debian_root=fake_root)
    build_corpus(two, 0.01, seed=7, sources=SOURCES, sample_rate=RATE, workers=2, debian_root=fake_root)
    return one, two


@pytest.fixture(scope="module")
def corpus(corpora) -> Path:
    return corpora[0]


def test_manifest_records_have_the_contract_fields(corpus):
    lines = (corpus / "manifest.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert records and all(set(r) == FIELDS for r in records)
    assert len({r["id"] for r in records}) == len(records)
    for r in records:
        assert r["caption"] == r["captions"][0] and 2 <= len(r["captions"]) <= 5
        assert all(isinstance(c, str) and c.strip() for c in r["captions"])
        assert r["category"] is None or r["category"] in CATEGORIES
        assert r["split"] in SPLITS and r["sample_rate"] == RATE
        assert 0.25 <= r["seconds"] <= 12.0
        assert r["licence"] and r["source"] in ("procedural", "sonic-pi-samples", "hydrogen-drumkits")
        assert r["augment"] is None or isinstance(r["augment"], dict)
        assert all(isinstance(t, str) for t in r["tags"])
        assert (corpus / r["path"]).is_file()


def test_splits_group_by_source_file(corpus):
    clips = read_manifest(corpus)
    splits = defaultdict(set)
    for clip in clips:
        splits[clip.source_file].add(clip.split)
        assert clip.split == split_for(clip.source_file)
    assert all(len(s) == 1 for s in splits.values()), "a source file must not span splits"
    # real files come back augmented, and every copy shares its original's split
    augmented = [c for c in clips if c.augment and c.source != "procedural"]
    assert augmented
    originals = {c.source_file: c.split for c in clips if not c.augment}
    assert all(originals[c.source_file] == c.split for c in augmented)


def test_every_procedural_core_category_is_in_every_split(corpus):
    clips = read_manifest(corpus)
    for category in PROCEDURAL_CORE:
        for split in SPLITS:
            assert any(c.category == category and c.split == split for c in clips), (category, split)
    summary = json.loads((corpus / "corpus.json").read_text())
    assert summary["clips"] == len(clips) and summary["seed"] == 7 and summary["sample_rate"] == RATE
    assert summary["counts"]["by_category"]["kick"]["total"] == sum(c.category == "kick" for c in clips)
    assert {"builder_version", "hours", "counts"} <= set(summary)


def test_real_files_are_labelled_and_licensed(corpus):
    clips = [c for c in read_manifest(corpus) if c.source != "procedural" and not c.augment]
    by_file = {Path(c.source_file).name: c for c in clips}
    assert by_file["bd_fake.wav"].category == "kick"
    assert by_file["bd_fake.wav"].licence == "CC0-1.0"  # its own stanza
    assert by_file["sn_fake.wav"].licence == "CC0-1.0"  # not the package's catch-all MIT
    assert by_file["sn_fake.wav"].category == "snare"
    assert by_file["k.wav"].category == "kick" and by_file["h.wav"].category == "hi-hat"
    assert by_file["k.wav"].licence == "CC0-1.0"  # from drumkit.xml
    assert "Fake kit" in " ".join(by_file["k.wav"].captions)
    assert by_file["k.wav"].source_file == "/usr/share/hydrogen/data/drumkits/FakeKit/k.wav"
    skipped = json.loads((corpus / "corpus.json").read_text())["skipped"]
    assert {
        "source_file": "/usr/share/hydrogen/data/drumkits/FakeKit/empty.wav",
        "reason": "silent",
    } in skipped


def test_audio_is_16_bit_stereo_flac_of_the_declared_length(corpus):
    for clip in read_manifest(corpus):
        info = sf.info(corpus / clip.path)
        assert (info.format, info.subtype, info.channels) == ("FLAC", "PCM_16", 2)
        assert info.samplerate == clip.sample_rate
        assert abs(info.frames / info.samplerate - clip.seconds) < 1e-3


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_builds_are_deterministic_whatever_the_worker_count(corpora):
    one, two = corpora
    assert (one / "manifest.jsonl").read_bytes() == (two / "manifest.jsonl").read_bytes()
    assert _digest(one) == _digest(two)


def test_read_manifest_filters_splits_and_explains_errors(corpus, tmp_path):
    test = read_manifest(corpus, split="test")
    assert test and all(c.split == "test" for c in test)
    with pytest.raises(CorpusError, match=r"no manifest\.jsonl"):
        read_manifest(tmp_path)
    with pytest.raises(CorpusError, match="unknown split"):
        read_manifest(corpus, split="dev")


def test_build_never_overwrites_a_foreign_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(CorpusError, match="not empty"):
        build_corpus(tmp_path, 0.001, sources="procedural", sample_rate=RATE)


def test_missing_sources_say_how_to_install_them(tmp_path, fake_root):
    with pytest.raises(CorpusError) as err:
        build_corpus(tmp_path / "c", 0.01, sources="ufoai-sound", debian_root=fake_root)
    assert "ufoai-sound" in str(err.value) and "studio data setup" in err.value.hint
    with pytest.raises(CorpusError, match="unknown source"):
        parse_sources("procedural,freesound")
    assert parse_sources("debian") == debian.DEBIAN_PACKAGES
    assert parse_sources("generated,procedural") == ("gm-render", "procedural", "gm-notes", "bpm-loops")
    assert parse_sources("bpm-loops,procedural") == ("procedural", "bpm-loops")


def test_captions_follow_augmentation():
    loop = Description("drum loop", (), ("four on the floor",), style="latin funk", bpm=115)
    assert phrasings(loop)[0] == "latin funk drum loop 115 BPM, four on the floor"
    stretched = aug.describe(loop, {"stretch": 1.2})
    assert "138 BPM" in phrasings(stretched)[0]
    bell = Description("FM bell", ("bright",), ("long tail",), note=72)
    up = aug.describe(bell, {"pitch_semitones": 2, "reverb": {"space": "hall", "decay_s": 2.0, "wet": 0.3}})
    assert phrasings(up)[0] == "bright FM bell D5, long tail, with hall reverb"
    quiet = aug.describe(bell, {"filter": {"type": "lowpass", "cutoff_hz": 800}, "gain_db": -12})
    assert phrasings(quiet)[0] == "quiet muffled FM bell C5, long tail"  # no longer bright
    chosen = captions(bell, np.random.default_rng(0))
    assert chosen[0] == phrasings(bell)[0] and 2 <= len(chosen) <= 5


def test_water_fill_tops_up_the_emptiest_categories():
    assert water_fill({"kick": 100.0, "rain": 0.0, "bell": 20.0}, 60.0) == {
        "kick": 0.0,
        "rain": 40.0,
        "bell": 20.0,
    }


def _band_energy(audio: np.ndarray, lo: float, hi: float) -> float:
    spectrum = np.abs(np.fft.rfft(audio.mean(axis=0))) ** 2
    freqs = np.fft.rfftfreq(audio.shape[1], 1 / RATE)
    return float(spectrum[(freqs >= lo) & (freqs < hi)].sum() / spectrum.sum())


def _render(category: str, seed: int = 0) -> tuple[synth.Recipe, np.ndarray]:
    recipe = synth.design(category, np.random.default_rng(seed))
    return recipe, synth.render(recipe, RATE, np.random.default_rng(seed + 1))


def test_procedural_sounds_have_the_shape_their_captions_claim():
    for seed in range(3):
        _, kick = _render("kick", seed)
        assert _band_energy(kick, 0, 250) > 0.6  # a pitch-dropping sine: energy low
        _, hat = _render("hi-hat", seed)
        assert _band_energy(hat, 3000, RATE / 2) > 0.8  # metallic noise: energy high
        _, riser = _render("riser", seed)
        quarter = riser.shape[1] // 4
        assert np.abs(riser[:, -quarter:]).mean() > 3 * np.abs(riser[:, :quarter]).mean()  # it rises
        _, boom = _render("explosion", seed)
        assert _band_energy(boom, 0, 2000) > 0.85  # low noise burst
    recipe, steps = _render("footsteps", 4)
    envelope = np.convolve(np.abs(steps.mean(axis=0)), np.ones(RATE // 50) / (RATE // 50), "same")
    loud = envelope > envelope.max() * 0.3
    onsets = np.flatnonzero(loud[1:] & ~loud[:-1])
    gaps = np.diff(onsets) / RATE
    steps_heard = 1 + int((gaps > 0.5 / recipe.params["rate"]).sum())  # heel and toe count as one step
    assert steps_heard == recipe.params["steps"]


def test_dep5_and_drumkit_licences():
    stanzas = debian.parse_dep5(SONIC_PI_COPYRIGHT)
    assert stanzas == [(("*",), "MIT"), (("etc/samples/bd_fake.wav",), "CC0")]
    assert debian.licence_from_text("Attribution-Share Alike 3.0 United States") == "CC-BY-SA-3.0-US"
    assert debian.licence_from_text("cc-by ==> http://creativecommons.org/licenses/by/3.0/") == "CC-BY-3.0"
    assert debian.spdx("GPL-2+") == "GPL-2.0-or-later"


@pytest.mark.parametrize(
    ("name", "category", "subject"),
    [
        ("bd_808", "kick", "808 bass drum"),
        ("drum_cymbal_closed", "hi-hat", "closed hi-hat"),
        ("loop_amen", "drum-loop", "amen loop"),
        ("ambi_piano", "piano", "ambient piano"),
        ("elec_blip", "ui-blip", "electronic blip"),
    ],
)
def test_sonic_pi_names_become_labels(name, category, subject):
    got_category, desc = debian._sonic_pi(name)
    assert (got_category, desc.subject) == (category, subject)


def test_data_cli_registers_build_and_setup(capsys):
    parser = argparse.ArgumentParser(prog="studio")
    add_data_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["data", "build", "--hours", "0.5", "--out", "x", "--sources", "procedural"])
    assert (args.hours, args.out, args.extend, args.sources, args.focus) == (0.5, "x", None, "procedural", "")
    args = parser.parse_args(["data", "build", "--hours", "4", "--extend", "x", "--focus", "rain,piano=8"])
    assert (args.extend, args.out, args.focus, args.seed, args.sample_rate) == (
        "x",
        None,
        "rain,piano=8",
        None,
        None,
    )
    with pytest.raises(SystemExit):  # --out and --extend are either-or
        parser.parse_args(["data", "build", "--hours", "1", "--out", "x", "--extend", "y"])
    args = parser.parse_args(["data", "build", "--hours", "4", "--extend", "x", "--sample-rate", "16000"])
    with pytest.raises(CorpusError, match="cannot change an existing corpus"):
        args.func(args)
    args = parser.parse_args(["data", "setup", "--dry-run"])
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert "hydrogen-drumkits-effects" in printed and "--no-deps tinysoundfont" in printed


FONTS = midi_render.find_soundfonts()
GM_READY = bool(FONTS) and midi_render.renderer() == "tinysoundfont"


def _in_process_fonts_only(patch: pytest.MonkeyPatch) -> None:
    """Leave out the fonts only fluidsynth plays: it starts a process per clip (about 0.8 s each), and
    test_fluidsynth_fallback_renders_stereo_audio covers that path."""
    fonts = [(f, e) for f, e in midi_render.playable_soundfonts() if e == "tinysoundfont"]
    patch.setattr(midi_render, "playable_soundfonts", lambda: fonts)
    patch.setattr(midi_render, "check_gm_available", lambda: fonts)


@pytest.mark.skipif(
    not GM_READY,
    reason="needs a GM soundfont (apt-get install fluid-soundfont-gm) and tinysoundfont (pip install "
    "--no-deps tinysoundfont); fluidsynth alone starts a process per clip, too slow for a whole build here",
)
def test_gm_renders_cover_the_instrument_categories(tmp_path, monkeypatch):
    _in_process_fonts_only(monkeypatch)
    out = tmp_path / "gm"
    build_corpus(out, 0.001, seed=3, sources="gm-render", sample_rate=RATE)
    clips = read_manifest(out)
    for category in ("piano", "strings", "bass", "bell", "pad", "drum-loop"):
        assert {c.split for c in clips if c.category == category} == set(SPLITS), category
    assert {c.licence for c in clips} <= {f.licence for f in FONTS}
    loops = [c for c in clips if c.category == "drum-loop"]
    assert all("BPM" in c.caption for c in loops)
    names = {i[1] for i in midi_render.INSTRUMENTS}
    tonal = [c for c in clips if c.category in ("piano", "strings")]
    assert all(any(n in c.caption for n in names) for c in tonal)


@pytest.mark.skipif(
    not FONTS or shutil.which("fluidsynth") is None, reason="needs a GM soundfont and fluidsynth"
)
def test_fluidsynth_fallback_renders_stereo_audio():
    piece = midi_render.compose("piano", np.random.default_rng(0))
    audio = midi_render.render_midi(piece.midi, FONTS[0].path, RATE, engine="fluidsynth")
    assert audio.shape[0] == 2 and audio.shape[1] > RATE * 0.5 and np.abs(audio).max() > 0.01


def test_a_licence_filter_keeps_only_clips_under_those_licences(tmp_path, fake_root):
    out = tmp_path / "mit-only"
    build_corpus(out, 0.005, seed=3, sources=SOURCES, sample_rate=RATE, debian_root=fake_root, licences="MIT")
    clips = read_manifest(out)
    assert clips and {c.licence for c in clips} == {"MIT"}
    assert json.loads((out / "corpus.json").read_text())["licences"] == ["MIT"]
    assert "CC0-1.0" in parse_licences("permissive") and parse_licences("any") is None
    with pytest.raises(CorpusError, match="empty"):
        parse_licences(",")


# ---------------------------------------------------------------- growing a corpus

HOP = 256


def _old_state(folder: Path) -> tuple[bytes, dict[str, str], list]:
    return (folder / "manifest.jsonl").read_bytes(), _digest(folder / "audio"), read_manifest(folder)


@pytest.fixture(scope="module")
def extended(tmp_path_factory, fake_root) -> tuple[Path, tuple[bytes, dict[str, str], list]]:
    """A tiny corpus (two recordings, three loops) and what it held, then grown with augmented copies
    of the recordings, more loops and, where a GM font is here, single notes."""
    folder = tmp_path_factory.mktemp("grown") / "corpus"
    build_corpus(
        folder, 0.001, seed=5, sources="sonic-pi-samples,bpm-loops", sample_rate=RATE, debian_root=fake_root
    )
    before = _old_state(folder)
    hours = sum(c.seconds for c in before[2]) / 3600 + 0.03
    sources = "sonic-pi-samples,bpm-loops" + (",gm-notes" if GM_READY else "")
    with pytest.MonkeyPatch.context() as patch:
        _in_process_fonts_only(patch)
        extend_corpus(folder, hours, sources=sources, focus="drum-loop=8", debian_root=fake_root)
    return folder, before


def test_extending_leaves_every_old_clip_as_it_was(extended):
    folder, (manifest, digests, old) = extended
    now = (folder / "manifest.jsonl").read_bytes()
    assert now.startswith(manifest) and len(now) > len(manifest)  # old records first, byte for byte
    assert {p: d for p, d in _digest(folder / "audio").items() if p in digests} == digests
    clips = read_manifest(folder)
    new = clips[len(old) :]
    assert clips[: len(old)] == old and new and not {c.id for c in new} & {c.id for c in old}
    assert all(c.split == split_for(c.source_file) for c in new)
    assert {c.source for c in new} >= {"sonic-pi-samples", "bpm-loops"}
    assert all(c.augment for c in new if c.source == "sonic-pi-samples")  # originals are not made twice
    old_loops = max(int(c.id.rsplit("/", 1)[1]) for c in old if c.source == "bpm-loops")
    assert all(int(c.id.rsplit("/", 1)[1]) > old_loops for c in new if c.source == "bpm-loops")
    summary = json.loads((folder / "corpus.json").read_text())
    assert summary["clips"] == len(clips) and summary["builder_version"] == "1.1"
    (step,) = summary["extensions"]
    assert (step["clips_before"], step["clips_added"], step["focus"]) == (
        len(old),
        len(new),
        {"drum-loop": 8.0},
    )
    assert summary["hours"]["total"] == pytest.approx(sum(c.seconds for c in clips) / 3600, abs=1e-3)


def test_extending_refuses_to_shrink_or_widen_a_corpus(extended, tmp_path):
    folder, _ = extended
    with pytest.raises(CorpusError, match="already holds"):
        extend_corpus(folder, 0.001, sources="bpm-loops")
    with pytest.raises(CorpusError, match=r"no readable corpus\.json"):
        extend_corpus(tmp_path, 1, sources="bpm-loops")
    mit = tmp_path / "mit"
    build_corpus(mit, 0.0005, sources="bpm-loops", sample_rate=RATE, licences="MIT")
    with pytest.raises(CorpusError, match="may not widen"):
        extend_corpus(mit, 1, sources="bpm-loops", licences="permissive")


def test_focus_weights_tilt_the_fill():
    assert water_fill({"rain": 0.0, "kick": 0.0}, 50.0, {"rain": 4.0}) == {"rain": 40.0, "kick": 10.0}
    assert water_fill({"rain": 30.0, "kick": 0.0}, 10.0, {"rain": 4.0}) == {"rain": 2.0, "kick": 8.0}
    assert parse_focus("rain, piano=8,other") == {"rain": 4.0, "piano": 8.0, None: 4.0}
    with pytest.raises(CorpusError, match="unknown focus"):
        parse_focus("thunder")
    with pytest.raises(CorpusError, match="not a number"):
        parse_focus("rain=lots")


def _repeats_at(audio: np.ndarray, bpm: float) -> float:
    """Correlation of the loop's onset envelope with itself one 4/4 bar of `bpm` later: near 1 when the
    pattern repeats every bar at that tempo, near 0 a few percent off (its hits no longer line up)."""
    import librosa

    env = librosa.onset.onset_strength(y=audio.mean(axis=0), sr=RATE, hop_length=HOP)
    bar = 240 / bpm * RATE / HOP
    return max(float(np.corrcoef(env[:-lag], env[lag:])[0, 1]) for lag in (int(bar), int(bar) + 1))


def test_bpm_loops_repeat_at_their_captioned_tempo(extended):
    folder, _ = extended
    loops = [c for c in read_manifest(folder) if c.source == "bpm-loops"]
    assert len(loops) >= 6
    for clip in loops:
        bpm = int(re.search(r"(\d+) BPM", clip.caption)[1])
        audio, _ = sf.read(clip.file, always_2d=True)
        assert _repeats_at(audio.T, bpm) > 0.4, clip.caption
        assert _repeats_at(audio.T, bpm * 1.03) < 0.2, clip.caption  # the check tells a tempo 3 % off
    tempi = [loop_bpm(i) for i in range(90)]
    assert min(tempi) == 70 and max(tempi) >= 158
    assert np.histogram(tempi, bins=9, range=(70, 160))[0].min() >= 8  # evenly spread


def _cents_off(audio: np.ndarray, note: int) -> float:
    """Cents between `note` and the pitch heard in the clip's first half second: YIN searching within a
    fifth of the note (no octave slips), provided the note's fundamental or third harmonic is there (a
    note an octave up, which YIN's window would pass, has neither; low piano notes lack the first)."""
    import librosa

    mono = audio.mean(axis=0)
    start = int(np.flatnonzero(np.abs(mono) > 0.1 * np.abs(mono).max())[0])
    part = mono[start : start + RATE // 2]
    freq = 440 * 2 ** ((note - 69) / 12)
    spectrum = np.abs(np.fft.rfft(part * np.hanning(len(part)), 1 << 16))
    bins = np.fft.rfftfreq(1 << 16, 1 / RATE)
    odd = max(
        spectrum[(bins > k * freq * 2 ** (-1 / 24)) & (bins < k * freq * 2 ** (1 / 24))].max() for k in (1, 3)
    )
    if odd < 0.05 * spectrum.max():
        return math.inf
    f0 = librosa.yin(part, fmin=freq * 2 ** (-7 / 12), fmax=freq * 2 ** (7 / 12), sr=RATE, frame_length=2048)
    return abs(1200 * math.log2(float(np.median(f0)) / freq))


@pytest.mark.skipif(not GM_READY, reason="needs a GM soundfont and tinysoundfont (see the GM test above)")
def test_note_clips_sound_at_their_captioned_note(extended):
    folder, _ = extended
    notes = [c for c in read_manifest(folder) if c.source == "gm-notes"]
    assert {c.category for c in notes} >= {"piano", "bell", "pad", "strings", "bass", None}
    names = {f"{name} note" for _, name, *_ in midi_render.NOTE_PROGRAMS}
    checked = 0
    for clip in notes:
        note = re.search(r" note ([A-G]#?\d)\b", clip.caption)[1]
        assert any(f"{name} {note}" in clip.caption for name in names), clip.caption
        midi = NOTE_NAMES.index(note[:-1]) + 12 * (int(note[-1]) + 1)
        if clip.category in ("piano", "bass", "strings", "pad"):  # harmonic: one clear f0
            audio, _ = sf.read(clip.file, always_2d=True)
            assert _cents_off(audio.T, midi) < 50, clip.caption
            assert _cents_off(audio.T, midi + 1) > 50, clip.caption  # a semitone off is caught
            checked += 1
    assert checked >= 12


def test_freedoom_sounds_come_out_of_the_wad(tmp_path):
    wad = tmp_path / "usr/share/games/doom/freedoom2.wad"
    wad.parent.mkdir(parents=True)
    lumps = {"DSBAREXP": 2205, "DSPOSIT1": 1102, "DSBOSPIT": 500}  # explosion, voice, unlabelled
    body, table = b"", b""
    for name, count in lumps.items():
        samples = (128 + 100 * np.sin(np.arange(count) / 5)).astype(np.uint8).tobytes()
        lump = struct.pack("<HHI", 3, 11025, count + 32) + bytes(16) + samples + bytes(16)
        table += struct.pack("<ii8s", 12 + len(body), len(lump), name.encode())
        body += lump
    wad.write_bytes(b"IWAD" + struct.pack("<ii", len(lumps), 12 + len(body)) + body + table)
    doc = tmp_path / "usr/share/doc/freedoom"
    doc.mkdir(parents=True)
    (doc / "copyright").write_text("Files: *\nCopyright: Freedoom contributors\nLicense: freedoom-license\n")
    files, _ = debian.scan(["freedoom"], tmp_path)
    got = {f.member: (f.category, f.description.subject, f.licence, round(f.seconds, 2)) for f in files}
    assert got == {
        "DSBAREXP": ("explosion", "barrel explosion", "BSD-3-Clause", 0.2),
        "DSPOSIT1": (None, "monster growl", "BSD-3-Clause", 0.1),
    }
    audio, rate = debian.read_real_audio(files[0])
    assert rate == 11025 and audio.shape == (1, 2205) and 0.7 < np.abs(audio).max() < 0.8
