"""Evaluation and benchmark: metrics on cases with known answers, the aisfx front-end against values
recorded from Essentia, and `studio eval --quick`, `studio eval adherence`, `studio train clap` and
`studio bench` end to end on the tiny model and a synthetic corpus."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from scipy.linalg import sqrtm
from tiny import make_model_folder, tiny_stft_config

from studio.audio import mel_filterbank
from studio.data import CorpusError, read_manifest
from studio.engine import Engine
from studio.errors import StudioError
from studio.eval import metrics, sound
from studio.eval.clap import ClapModel, ClapModelError
from studio.eval.cli import add_clap_train_command, add_eval_commands
from studio.eval.corpus import held_out_by_category
from studio.eval.embeddings import F_MAX, F_MIN, N_FFT, N_MELS, SAMPLE_RATE, AisfxEmbedder, mel_spectrogram
from studio.eval.vae import swapped_halves
from studio.models import AudioModel
from studio.models.spectral import frame_spectra

RATE = 44100
CATEGORIES = ("kick", "hi-hat", "rain")


# -- metrics with known answers -------------------------------------------------------------------


def whitened(n: int, dim: int, seed: int) -> np.ndarray:
    """n samples whose sample mean is exactly 0 and unbiased sample covariance exactly I."""
    x = np.random.default_rng(seed).standard_normal((n, dim))
    x -= x.mean(axis=0)
    return x @ np.linalg.inv(np.linalg.cholesky(np.cov(x, rowvar=False))).T


@pytest.mark.parametrize(("n", "dim"), [(40, 128), (500, 8)])  # shrunk and sample covariances
def test_frechet_distance_of_identical_sets_is_zero(n, dim):
    x = np.random.default_rng(0).standard_normal((n, dim)) * np.linspace(0.1, 3, dim)
    assert metrics.frechet_distance(x, x.copy()) == pytest.approx(0, abs=1e-8 * dim)


def test_frechet_distance_of_shifted_gaussians_is_analytic():
    # N(0, I) vs N(1, 4I) in 4-d: |1|^2 + tr(I) + tr(4I) - 2 tr(2I) = 4 + 4 + 16 - 16 = 8.
    a, b = whitened(200, 4, 1), 2 * whitened(200, 4, 2) + 1
    assert metrics.frechet_distance(a, b) == pytest.approx(8.0, rel=1e-9)
    # Covariances that do not commute, against the textbook sqrtm formula.
    rng = np.random.default_rng(3)
    la, lb = rng.standard_normal((5, 5)), rng.standard_normal((5, 5))
    mean_b = rng.standard_normal(5)
    a, b = whitened(300, 5, 4) @ la.T, whitened(300, 5, 5) @ lb.T + mean_b
    cov_a, cov_b = la @ la.T, lb @ lb.T
    expected = mean_b @ mean_b + np.trace(cov_a + cov_b - 2 * sqrtm(cov_a @ cov_b).real)
    assert metrics.frechet_distance(a, b) == pytest.approx(expected, rel=1e-8)
    assert metrics.gaussian_frechet_distance(np.zeros(5), cov_a, mean_b, cov_b) == pytest.approx(expected)


def test_ledoit_wolf_shrinkage_keeps_the_trace_and_fixes_the_rank():
    x = np.random.default_rng(0).standard_normal((6, 30)) * np.linspace(0.5, 2, 30)
    shrunk = metrics.ledoit_wolf_covariance(x)
    centred = x - x.mean(axis=0)
    assert np.trace(shrunk) == pytest.approx(np.trace(centred.T @ centred / 6))  # shrinks towards tr/p * I
    assert np.linalg.matrix_rank(shrunk) == 30 and np.allclose(shrunk, shrunk.T)
    assert metrics.needs_shrinkage(6, 100, 30) and not metrics.needs_shrinkage(31, 100, 30)


def test_ccds_known_cases():
    take = np.random.default_rng(0).standard_normal(16)
    assert metrics.ccds(np.stack([take] * 4)) == pytest.approx(0, abs=1e-12)
    assert metrics.ccds(np.eye(3)) == pytest.approx(1.0)
    assert metrics.ccds(np.array([[1.0, 0], [0.5, np.sqrt(3) / 2]])) == pytest.approx(0.5)  # 60 degrees
    with pytest.raises(ValueError):
        metrics.ccds(take[None])


def test_centroid_accuracy_and_recall_on_toy_cases():
    reference = np.array([[1, 0.1, 0], [1, -0.1, 0], [0, 1, 0.1], [0, 1, -0.1], [0, 0, 1], [0.1, 0, 1]])
    labels = ["a", "a", "b", "b", "c", "c"]
    queries = np.array([[2, 0, 0], [0, 3, 0], [0, 0, 0.5], [0.1, 0.2, 5]])
    assert metrics.nearest_centroid(reference, labels, queries) == ["a", "b", "c", "c"]
    assert metrics.centroid_accuracy(reference, labels, queries, ["a", "b", "c", "a"]) == 0.75
    assert metrics.leave_one_out_accuracy(reference, labels) == 1.0
    assert metrics.leave_one_out_accuracy(reference, labels, reference * 3) == 1.0  # level does not count
    swapped = reference[[2, 3, 4, 5, 0, 1]]  # every copy sounds like the next category
    assert metrics.leave_one_out_accuracy(reference, labels, swapped) == 0.0
    assert metrics.leave_one_out_predictions(reference, labels, swapped) == ["b", "b", "c", "c", "a", "a"]
    similarity = np.array([[0.9, 0.1, 0.0], [0.2, 0.5, 0.8], [0.3, 0.2, 0.1]])
    assert metrics.recall_at_k(similarity, np.eye(3), 1) == pytest.approx(1 / 3)
    assert metrics.recall_at_k(similarity, np.eye(3), 2) == pytest.approx(2 / 3)
    assert metrics.recall_at_k(similarity, np.eye(3), 3) == 1.0
    assert metrics.recall_at_k(similarity, np.eye(3, k=1) + np.eye(3), 1) == pytest.approx(2 / 3)


# -- aisfx -----------------------------------------------------------------------------------------


def chirp(seconds: float) -> np.ndarray:
    t = np.arange(int(RATE * seconds)) / RATE
    noise = np.random.default_rng(0).standard_normal(t.size)
    return (0.4 * np.sin(2 * np.pi * (110 + 400 * t) * t) + 0.1 * noise * np.exp(-3 * t)).astype(np.float32)


# Recorded with aisfx 0.1.2's own Essentia front-end (essentia 2.1b6.dev1389,
# aisfx.spectrogram.spectrogram_essentia + spectrogram_normalize "original") on chirp(0.25):
# the mean over frames of each band, and the mean over bands of each frame.
ESSENTIA_BAND_MEANS = [
    0.513197, 0.507703, 0.531241, 0.615659, 0.659291, 0.709123, 0.711559, 0.713077, 0.676319, 0.625952,
    0.544203, 0.514491, 0.498767, 0.487249, 0.491580, 0.489469, 0.459645, 0.481623, 0.486537, 0.468572,
    0.467588, 0.472192, 0.472615, 0.472793, 0.470699, 0.465616, 0.462882, 0.469835, 0.454082, 0.473365,
    0.480622, 0.471980, 0.456509, 0.462923, 0.477299, 0.471206, 0.474399, 0.478578, 0.466213, 0.452387,
    0.471082, 0.479105, 0.465122, 0.472696, 0.478421, 0.471400, 0.461905, 0.462889, 0.454800, 0.451246,
    0.470724, 0.474219, 0.463811, 0.461617, 0.464777, 0.471253, 0.468143, 0.466886, 0.476721, 0.476705,
    0.476827, 0.478012, 0.470297, 0.467325, 0.473833, 0.467820, 0.465245, 0.468850, 0.473085, 0.468735,
    0.468008, 0.471786, 0.463009, 0.455404, 0.468904, 0.462101, 0.465349, 0.468044, 0.473111, 0.472815,
    0.465099, 0.472072, 0.468940, 0.471044, 0.469439, 0.471309, 0.473651, 0.474865, 0.472758, 0.475597,
    0.472758, 0.471714, 0.467039, 0.471770, 0.471397, 0.474847,
]  # fmt: skip
ESSENTIA_FRAME_MEANS = [
    0.505028, 0.518030, 0.512501, 0.506859, 0.499831, 0.492911, 0.486724, 0.488650, 0.479792, 0.467600,
    0.468752, 0.429000,
]  # fmt: skip
# aisfx.inference.model_get_embedding on the Essentia spectrogram of chirp(3.1): the first 12 of 512
# values and the vector's L2 norm.
AISFX_EMBEDDING_HEAD = [
    2.49996, 2.08982, 0.61257, 0.57985, 0.83657, 0.90530, 0.94757, 2.80158, 1.69295, 0.53672,
    4.23766, 1.07011,
]  # fmt: skip
AISFX_EMBEDDING_NORM = 42.42746


def test_mel_front_end_matches_essentia():
    bank = mel_filterbank(SAMPLE_RATE, N_FFT, N_MELS, F_MIN, F_MAX)
    assert bank.shape == (96, 1025)
    np.testing.assert_allclose(bank.sum(axis=1), 1.0)
    spec = mel_spectrogram(chirp(0.25))
    assert spec.shape == (12, 96)  # ceil((11025 + 1024) / 1024) frames, as Essentia's FrameCutter
    np.testing.assert_allclose(spec.mean(axis=0), ESSENTIA_BAND_MEANS, atol=2e-6)
    np.testing.assert_allclose(spec.mean(axis=1), ESSENTIA_FRAME_MEANS, atol=2e-6)


def test_aisfx_embedding_matches_the_package_pipeline(tmp_path):
    embedder = AisfxEmbedder(cache_dir=tmp_path / "cache")
    embedding = embedder.embed([(chirp(3.1), RATE)])
    assert embedding.shape == (1, 512)
    np.testing.assert_allclose(embedding[0, :12], AISFX_EMBEDDING_HEAD, rtol=1e-4, atol=1e-4)
    assert np.linalg.norm(embedding) == pytest.approx(AISFX_EMBEDDING_NORM, rel=1e-5)
    # Stereo is mixed down, another rate resampled (a band-limited tone: the same sound at 22.05 kHz).
    t = np.arange(RATE // 2) / RATE
    tone = (0.4 * np.sin(2 * np.pi * (220 + 800 * t) * t)).astype(np.float32)
    mono = embedder.embed([(tone, RATE)])
    np.testing.assert_allclose(embedder.embed([(np.stack([tone, tone]), RATE)]), mono, atol=1e-5)
    path = tmp_path / "tone.flac"
    sf.write(path, np.stack([tone[::2]] * 2, axis=1), RATE // 2)
    from_file = embedder.embed_files([path])
    assert metrics.cosine_similarity(from_file, mono)[0, 0] > 0.99
    # A file's embedding is cached.
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 1
    np.testing.assert_array_equal(embedder.embed_files([path]), from_file)


# -- synthetic corpus and the commands ------------------------------------------------------------


def synth(category: str, rng: np.random.Generator, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(RATE * seconds)) / RATE
    noise = rng.standard_normal(t.size)
    detune = rng.uniform(0.9, 1.1)
    sound = {
        "kick": lambda: np.sin(2 * np.pi * 55 * detune * t * (1 + 2 * np.exp(-30 * t))) * np.exp(-6 * t),
        "hi-hat": lambda: np.diff(noise, prepend=0) * np.exp(-25 * t),
        "rain": lambda: noise * (1 + 0.5 * np.sin(2 * np.pi * 3 * detune * t)),
    }[category]()
    return (0.8 * sound / np.abs(sound).max()).astype(np.float32)


def write_corpus(root: Path, train: int = 4, test: int = 2) -> Path:
    """A corpus in `studio data build`'s format: per category, train and held-out FLAC clips."""
    rng = np.random.default_rng(0)
    rows = []
    for category in CATEGORIES:
        for i in range(train + test):
            path = Path("audio") / category / f"{i:03d}.flac"
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            mono = synth(category, rng)
            sf.write(root / path, np.stack([mono, mono], axis=1), RATE)
            captions = [f"{category} number {i % 2}", f"a {category}"]
            rows.append(
                {
                    "id": f"procedural/{category}/{i:05d}",
                    "path": str(path),
                    "caption": captions[0],
                    "captions": captions,
                    "category": category,
                    "source": "procedural",
                    "source_file": f"procedural/{category}/{i:05d}",
                    "licence": "MIT",
                    "split": "train" if i < train else "test",
                    "seconds": 1.0,
                    "sample_rate": RATE,
                    "augment": None,
                    "tags": [category],
                }
            )
    (root / "manifest.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return root


def studio(*argv: object) -> int:
    """The commands as `studio` would run them, through this package's own parser wiring."""
    parser = argparse.ArgumentParser(prog="studio")
    sub = parser.add_subparsers(dest="command", required=True)
    add_eval_commands(sub)
    train = sub.add_parser("train").add_subparsers(dest="train_command", required=True)
    add_clap_train_command(train)
    args = parser.parse_args([str(a) for a in argv])
    return args.func(args)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def clap_dir(corpus) -> Path:
    folder = corpus / "clap"
    assert (
        studio("train", "clap", "--corpus", corpus, "--steps", 12, "--batch-size", 12, "--log-every", 4) == 0
    )
    return folder


def test_train_clap_loss_falls_and_reports_held_out_retrieval(clap_dir):
    record = json.loads((clap_dir / "clap.json").read_text())
    curve = record["training"]["loss_curve"]
    assert len(curve) == 3 and curve[-1] < curve[0]
    held_out = record["held_out"]
    assert held_out["clips"] == 6 and held_out["chance_category"] == pytest.approx(1 / 3)
    assert 0 <= held_out["zero_shot_category_accuracy"] <= 1
    model = ClapModel.load(clap_dir)
    audio = model.embed_audio([(synth("kick", np.random.default_rng(1)), RATE)] * 2)
    text = model.embed_text(["kick drum"])
    assert audio.shape == (2, model.config.embed_dim) and text.shape == (1, model.config.embed_dim)
    np.testing.assert_allclose(np.linalg.norm(audio, axis=1), 1, rtol=1e-5)
    assert metrics.ccds(audio) == pytest.approx(0, abs=1e-6)  # the same take twice


def test_eval_quick_writes_the_report(corpus, clap_dir, tiny_model_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    out = tmp_path / "reports"
    assert studio("eval", "--model", tiny_model_dir, "--corpus", corpus, "--quick", "--out", out) == 0
    folder = out / tiny_model_dir.name
    report = json.loads((folder / "eval.json").read_text())
    for key in ("fad", "category_accuracy", "adherence", "ccds", "diversity", "sweep", "clap", "settings"):
        assert key in report
    assert set(report["fad"]["per_category"]) == set(CATEGORIES)
    assert report["category_accuracy"]["chance"] == pytest.approx(1 / 3)
    assert report["category_accuracy"]["held_out_leave_one_out"] == 1.0  # the synthetic sounds differ
    assert 0 <= report["category_accuracy"]["vae_round_trip_leave_one_out"] <= 1  # random tiny VAE
    assert [(row["sampler"], row["steps"]) for row in report["sweep"]] == [
        ("pingpong", 1),
        ("pingpong", 8),
        ("euler", 8),
    ]
    for row in report["sweep"]:
        assert row["fad"] >= 0 and 0 <= row["category_accuracy"] <= 1
        assert {"batch_s", "per_take_s", "rtf"} <= set(row["latency"])
    diversity = report["diversity"]
    assert diversity["knob"] == [0.0, 0.5, 1.0]
    assert diversity["ccds"][0] == pytest.approx(0, abs=1e-6)  # diversity 0: identical takes
    assert "text_to_audio_r1" in report["clap"]["held_out"]
    assert {p.name for p in folder.iterdir()} == {
        "eval.json",
        "eval.md",
        "diversity.png",
        "sweep.png",
        "latency.png",
        "categories.png",
    }
    assert all((folder / name).read_bytes()[:4] == b"\x89PNG" for name in ("diversity.png", "sweep.png"))
    assert "## Sampler sweep" in (folder / "eval.md").read_text()
    assert report["voice"]["variety"]["diversity_0"]["max_abs_difference"] == 0  # the rest: test_eval_voice
    assert "## What a musician hears first" in (folder / "eval.md").read_text()
    assert "prompt-category accuracy" in capsys.readouterr().out
    assert list((tmp_path / "cache" / "studio").rglob("*.npy"))  # held-out embeddings were cached

    # A second model's report (here: the same numbers under another name) compares row by row.
    twin = dict(report, model="twin")
    (out / "twin").mkdir()
    (out / "twin" / "eval.json").write_text(json.dumps(twin))
    assert studio("eval", "compare", "--reports", folder, out / "twin", "--out", out / "cmp") == 0
    rows = json.loads((out / "cmp" / "comparison.json").read_text())["rows"]
    assert [r["model"] for r in rows] == [folder.name] * 3 + ["twin"] * 3
    assert [r["default"] for r in rows[:3]] == [False, True, False]  # the tiny model's ping-pong 8
    page = (out / "cmp" / "comparison.md").read_text()
    assert "| twin | euler | 8 | 1 |" in page
    voice_rows = json.loads((out / "cmp" / "comparison.json").read_text())["voice"]
    assert [r["model"] for r in voice_rows] == [folder.name, "twin"]
    assert voice_rows[0]["pitch_share"] == report["voice"]["pitch"]["share"]
    assert "| twin | pingpong-8, cfg 1 |" in page
    assert (out / "cmp" / "comparison.png").read_bytes()[:4] == b"\x89PNG"
    (out / "twin" / "eval.json").write_text(json.dumps(dict(twin, settings={**twin["settings"], "seed": 7})))
    with pytest.raises(StudioError, match=r"evaluated differently \(seed\)"):
        studio("eval", "compare", "--reports", folder, out / "twin", "--out", out / "cmp")
    # the same contrastive-model folder, retrained in between: its adherence scores mean other things
    retrained = {**twin["clap"], "held_out": {**twin["clap"]["held_out"], "text_to_audio_r1": 0.123}}
    (out / "twin" / "eval.json").write_text(json.dumps(dict(twin, clap=retrained)))
    with pytest.raises(StudioError, match=r"evaluated differently \(clap\)"):
        studio("eval", "compare", "--reports", folder, out / "twin", "--out", out / "cmp")

    # another phrasing of one category's prompt; the others keep the standard ones
    other = f"{CATEGORIES[0]}=a different phrasing"
    argv = ("eval", "adherence", "--model", tiny_model_dir, "--corpus", corpus, "--quick", "--out", out)
    assert studio(*argv, "--prompt", other) == 0
    adherence = json.loads((folder / "adherence.json").read_text())
    prompts = adherence["settings"]["prompts"]
    assert prompts[CATEGORIES[0]] == "a different phrasing"
    assert prompts[CATEGORIES[1]] == report["settings"]["prompts"][CATEGORIES[1]]
    assert set(adherence["category_accuracy"]["per_category"]) == set(CATEGORIES)
    assert "vae_round_trip_leave_one_out" in adherence["category_accuracy"]

    assert studio("eval", "vae", "--model", tiny_model_dir, "--corpus", corpus, "--quick", "--out", out) == 0
    vae = json.loads((folder / "vae.json").read_text())
    assert vae["round_trip_leave_one_out"] == pytest.approx(
        adherence["category_accuracy"]["vae_round_trip_leave_one_out"]
    )
    partials, flatness = vae["frame_rate_partials_db"], vae["spectral_flatness_db"]
    assert set(vae["per_category"]) == set(vae["confusion"]) == set(CATEGORIES)
    low_band = vae["low_band_excess_db"]
    assert set(partials["per_category"]) == set(flatness["per_category"]) == set(CATEGORIES)
    assert set(low_band["per_category"]) == set(CATEGORIES)
    assert all(math.isfinite(measure["median"]) for measure in (partials, flatness, low_band))
    assert vae["latent_frame_rate_hz"] > 0
    assert vae["autoencoder"] == "oobleck"
    assert vae["tone_pitch"]["count"] == len(vae["tone_pitch"]["cents"]) == 81
    assert vae["tone_pitch_by_side"] is None  # an Oobleck decoder writes no spectra to take apart
    assert 0 <= vae["comb_score"]["round_trips"] <= 1 and 0 <= vae["comb_score"]["originals"] <= 1
    assert set(vae["decode"]["batches"]) == {"1", "8"}
    assert all(math.isfinite(vae[m]["median"]) for m in ("stft_distance", "mel_distance", "si_sdr_db"))
    assert "| comb score" in (folder / "vae.md").read_text()


def test_eval_vae_scores_an_stft_autoencoder_and_names_a_run_by_its_folder(corpus, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    model = make_model_folder(tmp_path / "stft-run" / "model", tiny_stft_config())
    out = tmp_path / "reports"
    assert studio("eval", "vae", "--model", model, "--corpus", corpus, "--quick", "--out", out) == 0
    vae = json.loads((out / "stft-run" / "vae.json").read_text())
    assert vae["autoencoder"] == "stft" and vae["latent_frame_rate_hz"] == pytest.approx(44100 / 512)
    assert vae["dc_offset_dbfs"]["round_trips"]["max"] < 0
    sides = vae["tone_pitch_by_side"]
    assert {side["count"] for side in sides.values()} == {81}
    assert set(sides) == {"decoder_magnitudes_original_phases", "original_magnitudes_decoder_phases"}
    assert "the decoder's magnitudes and the original's phases" in (out / "stft-run" / "vae.md").read_text()


def test_swapped_halves_tell_whose_magnitudes_and_whose_phases_a_tone_follows(tmp_path, monkeypatch):
    """A decoder that writes a tone a semitone sharp (26 Hz above 440, less than half the 86 Hz
    a frame's phase advance leaves open): with the original's phases its magnitudes come back at the
    original's pitch, its phases under the original's magnitudes at its own."""
    rate = 44100
    t = np.arange(64 * 512) / rate
    tone = np.repeat(0.3 * np.sin(2 * np.pi * 440 * t)[None], 2, axis=0).astype(np.float32)
    sharp = np.repeat(0.3 * np.sin(2 * np.pi * 440 * 2 ** (1 / 12) * t + 1.0)[None], 2, axis=0)
    written = frame_spectra(torch.from_numpy(sharp.astype(np.float32))[None], 2048, 512)
    with Engine(
        make_model_folder(tmp_path / "stft", tiny_stft_config()), device="cpu", warmup=False
    ) as engine:
        monkeypatch.setattr(engine.model.vae.decoder, "written_spectra", lambda latents: written)
        magnitudes, phases = swapped_halves(engine, tone)
    assert sound.cents(sound.dominant_frequency(magnitudes, rate), 440) == pytest.approx(0, abs=5)
    assert sound.cents(sound.dominant_frequency(phases, rate), 440) == pytest.approx(100, abs=5)


def test_frame_rate_partials_measure_a_decoder_hum_not_level_or_noise():
    rate, hop = 44100, 2048
    noise = np.random.default_rng(0).standard_normal((2, rate * 2)) * 0.1
    t = np.arange(rate * 2) / rate
    hum = sum(0.05 * np.sin(2 * np.pi * k * rate / hop * t) for k in (8, 11, 14, 21))
    assert sound.frame_rate_partials_db(noise, noise + hum, rate, hop) > 10
    assert abs(sound.frame_rate_partials_db(noise, 0.3 * noise, rate, hop)) < 0.01
    tone = np.sin(2 * np.pi * 440 * t)[None]  # a note between the multiples is not a hum
    assert sound.frame_rate_partials_db(noise, noise + 0.05 * tone, rate, hop) < 1


def test_low_band_excess_measures_added_rumble_not_level():
    rate = 44100
    t = np.arange(rate * 2) / rate
    snare = np.random.default_rng(0).standard_normal((2, t.size)) * np.exp(-t * 8)
    steps = np.repeat(np.random.default_rng(1).standard_normal(t.size // 2048 + 1), 2048)[: t.size]
    assert sound.low_band_excess_db(snare, snare + 0.05 * steps, rate) > 10  # frame-rate steps
    assert sound.low_band_excess_db(snare, snare + 0.05, rate) > 10  # a DC offset
    assert abs(sound.low_band_excess_db(snare, 0.2 * snare, rate)) < 0.01
    assert sound.low_band_excess_db(snare, snare, rate) == 0


def test_spectral_flatness_measures_tone_turned_to_noise_not_level():
    rate = 44100
    t = np.arange(rate * 2) / rate
    note = sum(np.sin(2 * np.pi * 220 * k * t) / k for k in range(1, 12))[None].repeat(2, axis=0)
    rng = np.random.default_rng(0)
    # noise under the note's spectral envelope (lines smoothed over 300 Hz): the harmonics lost
    magnitude = np.abs(np.fft.rfft(note, axis=1))
    width = int(300 * note.shape[1] / rate)
    envelope = np.stack([np.convolve(m, np.ones(width) / width, "same") for m in magnitude])
    noise = np.fft.rfft(rng.standard_normal(note.shape), axis=1)
    smeared = np.fft.irfft(envelope * noise / np.abs(noise), n=note.shape[1], axis=1)
    assert sound.spectral_flatness_db(note, smeared, rate) > 5
    hiss, other_hiss = rng.standard_normal((2, *note.shape))
    assert abs(sound.spectral_flatness_db(hiss, other_hiss, rate)) < 0.2  # noise for noise: no change
    assert abs(sound.spectral_flatness_db(note, 0.1 * note, rate)) < 0.01
    assert sound.spectral_flatness_db(note, note, rate) == 0


def test_eval_errors_say_how_to_fix(corpus, tmp_path, tiny_model_dir):
    with pytest.raises(CorpusError, match=r"no manifest\.jsonl") as missing:
        read_manifest(tmp_path)
    assert "studio data build" in missing.value.hint
    with pytest.raises(CorpusError, match=r"no held-out .* clips for bell"):
        held_out_by_category(corpus, ("kick", "bell"))
    with pytest.raises(ClapModelError) as no_clap:
        studio("eval", "--model", tiny_model_dir, "--corpus", corpus, "--quick", "--clap", tmp_path)
    assert "studio train clap" in no_clap.value.hint
    with pytest.raises(StudioError, match="--prompt names thunder") as unknown:
        studio("eval", "adherence", "--corpus", corpus, "--quick", "--prompt", "thunder=loud")
    assert "use one of" in unknown.value.hint
    with pytest.raises(SystemExit):  # argparse: not CATEGORY=PROMPT
        studio("eval", "adherence", "--corpus", corpus, "--prompt", "kick")


def test_bench_writes_stage_timings(tiny_model_dir, tmp_path, capsys):
    argv = (
        "bench",
        "--model",
        tiny_model_dir,
        "--device",
        "cpu",
        "--steps",
        2,
        "--runs",
        1,
        "--out",
        tmp_path,
    )
    assert studio(*argv, "--batch", 1) == 0
    assert studio(*argv, "--batch", 2) == 0  # same settings: merged into the same entry
    (path,) = tmp_path.glob("cpu-*.json")
    report = json.loads(path.read_text())
    assert report["machine"]["cpu_count"] >= 1 and report["device"] == "cpu"
    entry = report["benchmarks"][tiny_model_dir.name]
    assert entry["text_encoder"] == "minilm" and set(entry["batches"]) == {"1", "2"}
    for batch in entry["batches"].values():
        for stage in ("text_encoding_s", "sampling_s", "vae_decode_s", "end_to_end_s"):
            assert set(batch[stage]) == {"median", "min", "max"}
        assert len(batch["step_s"]) == 2 and batch["rtf"] > 0 and batch["peak_rss_mb"] > 0
        assert batch["end_to_end_s"]["median"] >= batch["vae_decode_s"]["median"]
    assert str(path) in capsys.readouterr().out


def test_bench_times_guided_steps_at_the_guidance_asked_for(tiny_model_dir, tmp_path, monkeypatch):
    pairs = []
    velocities = AudioModel.velocities
    monkeypatch.setattr(
        AudioModel, "velocities", lambda self, *a, **k: pairs.append(1) or velocities(self, *a, **k)
    )
    argv = ("bench", "--model", tiny_model_dir, "--device", "cpu", "--batch", 1, "--runs", 1, "--warmup", 0)
    assert studio(*argv, "--steps", 3, "--out", tmp_path / "plain") == 0
    assert pairs == []  # the tiny model's own guidance is 1: one branch a step
    assert studio(*argv, "--steps", 3, "--cfg", 4, "--out", tmp_path / "guided") == 0
    assert len(pairs) == 6  # both branches in one pass a step: 3 in the staged run, 3 in the whole take
    (plain,), (guided,) = (list((tmp_path / f).glob("cpu-*.json")) for f in ("plain", "guided"))
    for path, cfg in [(plain, 1.0), (guided, 4.0)]:
        assert json.loads(path.read_text())["benchmarks"][tiny_model_dir.name]["cfg"] == cfg
