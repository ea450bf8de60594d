"""Training: losses, data, discriminators, the three trainers on tiny configs, resume, export, DDP."""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from tiny import make_model_folder, tiny_config, tiny_stft_config

from studio.data import CorpusError, read_manifest
from studio.engine import Engine
from studio.eval import sound
from studio.models import AudioModel, ModelConfig, load_model, save_model
from studio.models.autoencoder import context_samples
from studio.request import Request
from studio.training import cli, losses
from studio.training.arc import (
    ArcNoise,
    ArcTrainConfig,
    arc_batch,
    discriminator_step,
    generate_x0,
    generator_step,
    train_arc,
)
from studio.training.autoencoder import (
    AutoencoderTrainConfig,
    VaeRoundTrip,
    autoencoder_step,
    train_autoencoder,
)
from studio.training.cli import add_train_commands, main
from studio.training.data import AudioClips, LatentCache, LatentClips, Prompts, StepSampler, balanced_epoch
from studio.training.discriminators import ArcDiscriminator, AudioDiscriminator, PeriodDiscriminator
from studio.training.flow import ConditionedVelocity, FlowTrainConfig, flow_loss, flow_model, train_flow
from studio.training.loop import EMA, TrainingError, ema_decay, train_only
from studio.training.vsd import Distiller, VsdTrainConfig, fake_score_step, student_step, train_vsd

REPO = Path(__file__).resolve().parents[1]
SAMPLE_SIZE = 8192  # 4 latent frames: ~0.19 s at 44.1 kHz
AE_OPTIONS = {
    "batch_size": 2,
    "workers": 0,
    "lr": 1e-3,
    "chunk": SAMPLE_SIZE // 2,
    "disc_filters": 4,
    "disc_n_ffts": (256, 128),
    "fft_sizes": (512, 128, 32),
    "log_every": 1,
    "val_every": 0,
}
AE_CLI = ["--batch-size", "1", "--workers", "0", "--chunk", str(SAMPLE_SIZE // 2), "--disc-filters", "4"]


def small_config() -> dict:
    return tiny_config(sample_size=SAMPLE_SIZE)


def sine(freq: float, seconds: float, rate: int = 44100, channels: int = 2) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return np.repeat(0.5 * np.sin(2 * np.pi * freq * t)[None], channels, axis=0).astype(np.float32)


def write_corpus(folder: Path) -> Path:
    """Four train clips (short and padded, long and cropped, mono at 22.05 kHz) and one valid clip."""
    rng = np.random.default_rng(0)
    clips = [
        ("sine-low", sine(220, 0.1), 44100, "train", ["a soft low sine tone", "gentle low sine"]),
        (
            "noise-mono",
            (0.3 * rng.standard_normal((1, 8820))).astype(np.float32),
            22050,
            "train",
            ["noise burst"],
        ),
        ("sine-high", sine(1760, 0.3), 44100, "train", ["a bright high beep"]),
        ("sine-mid", sine(660, 0.15), 44100, "train", ["a mid sine blip", "short sine"]),
        ("valid-sine", sine(440, 0.2), 44100, "valid", ["a sine at 440 hz"]),
    ]
    (folder / "audio").mkdir(parents=True)
    rows = []
    for name, audio, rate, split, captions in clips:
        path = f"audio/{name}.wav" if split == "train" else f"audio/{name}.flac"
        sf.write(folder / path, audio.T, rate)
        rows.append(
            {
                "id": f"synthetic/{name}",
                "path": path,
                "caption": captions[0],
                "captions": captions,
                "category": "test",
                "source": "synthetic",
                "source_file": name,
                "licence": "CC0-1.0",
                "split": split,
                "seconds": audio.shape[1] / rate,
                "sample_rate": rate,
                "augment": None,
                "tags": [],
            }
        )
    (folder / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def config_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("config") / "model_config.json"
    path.write_text(json.dumps(small_config()))
    return path


@pytest.fixture(scope="module")
def vae_folder(tmp_path_factory) -> Path:
    return make_model_folder(tmp_path_factory.mktemp("vae") / "model", small_config())


@pytest.fixture(scope="module")
def flow_folder(corpus, vae_folder, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("flow-run")
    return train_flow(
        FlowTrainConfig(
            corpus=corpus,
            out=out,
            init=vae_folder,
            steps=3,
            batch_size=2,
            workers=0,
            lr=1e-3,
            log_every=1,
            val_every=3,
            balance=0.5,
        )
    )


def log_rows(run: Path, split: str = "train") -> list[dict]:
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    return [r for r in rows if r["split"] == split]


def generate(folder: Path) -> tuple[str, np.ndarray]:
    with Engine(folder, warmup=False) as engine:
        take = engine.generate(Request("a soft low sine tone", seconds=0.15, steps=2, seed=3)).takes[0]
        return engine.default_sampler, take.audio


# -- losses --------------------------------------------------------------------------------------


def test_relativistic_and_contrastive_losses_have_the_right_signs():
    real, fake = torch.tensor([3.0, 2.0]), torch.tensor([-1.0, 0.0])
    even = torch.zeros(2)
    d = losses.relativistic_discriminator_loss
    g = losses.relativistic_generator_loss
    assert d(real, fake) < d(even, even) < d(fake, real)  # D is rewarded for ranking real above fake
    assert g(fake, real) < g(even, even) < g(real, fake)  # G for the opposite
    assert math.isclose(d(even, even).item(), math.log(2), rel_tol=1e-6)
    assert torch.isclose(d(real, fake), g(fake, real))

    real = real.clone().requires_grad_(True)
    fake = fake.clone().requires_grad_(True)
    d(real, fake).backward()
    assert (real.grad < 0).all() and (fake.grad > 0).all()  # descending D's loss raises D(real) - D(fake)

    right, wrong = torch.tensor([2.0, 1.0]), torch.tensor([-2.0, 3.0])
    c = losses.contrastive_discriminator_loss
    assert c(right, wrong) > c(right[:1], wrong[:1])  # row 1 prefers the wrong prompt and is penalised
    assert torch.isclose(c(right, wrong, torch.tensor([True, False])), c(right[:1], wrong[:1]))


def test_noise_level_samplers_cover_their_ranges():
    generator = torch.Generator().manual_seed(0)
    t = losses.logsnr_uniform_t(4000, generator, -6.0, 2.0)
    logsnr = torch.log((1 - t) / t)
    assert logsnr.min() >= -6.001 and logsnr.max() <= 2.001
    assert abs(logsnr.mean().item() + 2.0) < 0.2  # uniform: centred on the middle of [-6, 2]
    s = losses.logit_normal_t(4000, generator, mean=-1.0, std=1.0)
    assert abs(s.median().item() - torch.sigmoid(torch.tensor(-1.0)).item()) < 0.03
    x0, noise = torch.randn(3, 4, 5), torch.randn(3, 4, 5)
    times = torch.tensor([0.2, 0.5, 0.9])
    x_t = losses.add_noise(x0, noise, times)
    torch.testing.assert_close(
        losses.denoise(x_t, noise - x0, times), x0
    )  # the true velocity denoises exactly


def test_reconstruction_and_kl_losses():
    audio = torch.from_numpy(sine(440, 0.1))[None]
    mono_source = audio.clone()  # identical channels: a silent side channel
    assert losses.multi_resolution_stft_loss(audio, mono_source, (256, 64)).item() < 1e-6
    noisy = audio + 0.05 * torch.randn_like(audio)
    worse = audio + 0.2 * torch.randn_like(audio)
    small = losses.multi_resolution_stft_loss(noisy, audio, (256, 64))
    large = losses.multi_resolution_stft_loss(worse, audio, (256, 64))
    assert torch.isfinite(large) and 0 < small < large < 50
    assert losses.kl_loss(torch.zeros(2, 3, 4), torch.ones(2, 3, 4)).item() == pytest.approx(0.0, abs=1e-6)
    assert losses.kl_loss(torch.ones(2, 3, 4), torch.ones(2, 3, 4)).item() == pytest.approx(3.0)


def test_ema_warms_up_then_averages_and_applies():
    assert ema_decay(0, 0.999) == 0.0
    assert 0 < ema_decay(10, 0.999) < ema_decay(100, 0.999) < 0.999
    assert ema_decay(10**7, 0.999) == 0.999
    layer = torch.nn.Linear(2, 2)
    ema = EMA(layer, 0.5)
    with torch.no_grad():
        layer.weight.fill_(1.0)
    ema.update(layer, step=0)  # decay 0: the average becomes the weights
    with torch.no_grad():
        layer.weight.fill_(3.0)
    ema.update(layer, step=10**6)  # decay 0.5
    with ema.applied(layer):
        assert torch.allclose(layer.weight, torch.full((2, 2), 2.0))
    assert torch.allclose(layer.weight, torch.full((2, 2), 3.0))


# -- data ----------------------------------------------------------------------------------------


def test_corpus_errors_say_what_is_wrong(config_file, tmp_path):
    with pytest.raises(CorpusError, match=r"no manifest\.jsonl") as info:
        read_manifest(tmp_path)
    assert "--corpus" in info.value.hint
    row = '{"id": "a", "path": "a.wav", "caption": "x", "split": "valid"}\n'
    (tmp_path / "manifest.jsonl").write_text(row + "{oops\n")
    with pytest.raises(CorpusError, match=r"manifest\.jsonl:2: not valid JSON"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.jsonl").write_text(row.replace('"valid"', '"dev"'))
    with pytest.raises(CorpusError, match="split 'dev' is not one of"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.jsonl").write_text(row)
    with pytest.raises(CorpusError, match="no clips in the 'train' split") as info:
        train_autoencoder(AutoencoderTrainConfig(corpus=tmp_path, out=tmp_path / "run", config=config_file))
    assert '"split": "train"' in info.value.hint


def test_step_sampler_resumes_mid_epoch_and_shards_ranks():
    def take(sampler, n):
        stream = iter(sampler)
        return [next(stream) for _ in range(n)]

    whole = take(StepSampler(range(5), seed=3), 12)
    assert take(StepSampler(range(5), seed=3, skip=7), 5) == whole[7:]
    assert sorted(i for i, _ in whole[:5]) == list(range(5))  # an epoch visits every clip once
    rank0 = [i for i, _ in take(StepSampler(range(6), seed=3, rank=0, world=2), 3)]
    rank1 = [i for i, _ in take(StepSampler(range(6), seed=3, rank=1, world=2), 3)]
    assert sorted(rank0 + rank1) == list(range(6))


def test_balanced_epochs_repeat_rare_categories_with_fresh_draws():
    categories = ["guitar"] * 8 + ["rain"] * 2 + [None]
    assert balanced_epoch(categories, 0.0) == list(range(11))
    even = Counter(categories[i] for i in balanced_epoch(categories, 1.0))
    assert even == {"guitar": 8, "rain": 8, None: 8}
    root = Counter(categories[i] for i in balanced_epoch(categories, 0.5))
    assert root == {"guitar": 8, "rain": 4, None: 3}  # 2 × round(√4), 1 × round(√8)

    focused = Counter(categories[i] for i in balanced_epoch(categories, 0.5, {"rain": 3.0, None: 0.5}))
    assert focused == {"guitar": 8, "rain": 12, None: 1}  # 2 × round(2 × 3); √8 / 2 rounds to 1

    sampler = StepSampler(balanced_epoch(categories, 1.0), seed=1)
    stream = iter(sampler)
    keys = [next(stream) for _ in range(24)]
    rain = [seed for index, seed in keys if index == 8]
    assert len(rain) == 4 and len(set(rain)) == 4  # each repeat crops and phrases anew
    resumed = iter(StepSampler(balanced_epoch(categories, 1.0), seed=1, skip=10))
    assert [next(resumed) for _ in range(14)] == keys[10:]


def test_audio_clips_are_cropped_padded_resampled_and_phrased(corpus):
    clips = {c.id: c for c in read_manifest(corpus)}
    data = AudioClips(list(clips.values()), 44100, 2, SAMPLE_SIZE)
    names = list(clips)
    short = data[(names.index("synthetic/sine-low"), 1)]
    assert short["audio"].shape == (2, SAMPLE_SIZE)
    assert short["seconds"] == pytest.approx(0.1, abs=1e-4)
    assert short["audio"][:, 4500:].abs().max() == 0  # padded with silence
    assert short["caption"] in clips["synthetic/sine-low"].captions
    mono = data[(names.index("synthetic/noise-mono"), 1)]  # 0.4 s mono at 22.05 kHz
    assert mono["audio"].shape == (2, SAMPLE_SIZE) and torch.equal(mono["audio"][0], mono["audio"][1])
    assert mono["seconds"] == pytest.approx(SAMPLE_SIZE / 44100)
    crops = {
        data[(names.index("synthetic/sine-high"), seed)]["audio"][0, :64].sum().item() for seed in range(4)
    }
    assert len(crops) > 1  # random crops of a long clip


def test_tone_share_swaps_clips_for_synthetic_notes_at_pitches_of_all_kinds(corpus):
    clips = read_manifest(corpus)
    plain = AudioClips(clips, 44100, 2, SAMPLE_SIZE)
    torch.testing.assert_close(
        AudioClips(clips, 44100, 2, SAMPLE_SIZE, tone_share=0.0)[(0, 5)]["audio"], plain[(0, 5)]["audio"]
    )
    tones = AudioClips(clips, 44100, 2, SAMPLE_SIZE, tone_share=1.0)
    items = [tones[(0, seed)] for seed in range(40)]
    assert all(item["caption"] == "tones" and item["audio"].shape == (2, SAMPLE_SIZE) for item in items)
    torch.testing.assert_close(tones[(0, 3)]["audio"], items[3]["audio"])  # the key decides the draw
    peaks = [sound.dominant_frequency(item["audio"].numpy(), 44100) for item in items]
    assert min(peaks) < 200 and max(peaks) > 2000  # low notes and high ones
    levels = [item["audio"].abs().max().item() for item in items]
    assert max(levels) <= 1 and min(levels) > 1e-3
    assert sum(abs(level) < 0.1 for level in levels) > 5  # quiet notes too


# -- discriminators ------------------------------------------------------------------------------


def test_arc_discriminator_reuses_the_dit_trunk():
    torch.manual_seed(0)
    model = AudioModel(ModelConfig.from_dict(tiny_config(**{"model.diffusion.config.depth": 4})))
    dit = model.dit
    x, t = torch.randn(2, 8, 6), torch.tensor([0.3, 0.8])
    context, global_cond = torch.randn(2, 5, 64), torch.randn(2, 64)
    whole = ArcDiscriminator(dit, depth_fraction=1.0, head_channels=16)
    y = dit.proj_out(whole.hidden_states(x, t, context, global_cond)[:, 1:]).transpose(1, 2)
    torch.testing.assert_close(dit.output_conv(y) + y, dit(x, t, context, global_cond))
    disc = ArcDiscriminator(dit, head_channels=16)
    assert len(disc.trunk.blocks) == 3  # the first 75% of 4 blocks
    assert disc(x, t, context, global_cond).shape == (2,)
    assert not disc.trunk.blocks[0].self_norm.bias.requires_grad  # the DiT's fixed LN biases stay fixed
    audio_disc = AudioDiscriminator(2, filters=4, n_ffts=(256, 128), periods=(2, 3))
    logits, features = audio_disc(torch.randn(3, 2, 4096))
    assert len(logits) == 4 and all(scale.shape[:2] == (3, 1) for scale in logits)
    assert len(features[0]) == 5 and len(features[2]) == 5
    assert logits[3].shape[-1] == 3  # 4096 samples folded into rows of 3 (padded to 4098)


def test_period_discriminator_sees_a_waveform_that_repeats_at_its_period_as_steady_columns():
    torch.manual_seed(0)
    disc = PeriodDiscriminator(channels=1, filters=4, period=7)
    cycle = torch.randn(1, 1, 7)
    logits, features = disc(cycle.repeat(1, 1, 3000))  # each column is one constant value
    # Away from the zero padding at the top and bottom, every row of every layer is the same.
    for hidden in (*features, logits):
        inner = hidden[:, :, 5:-5]
        torch.testing.assert_close(inner, inner[:, :, :1].expand_as(inner))
    noisy_logits, _ = disc(torch.randn(1, 1, 21000))
    # Noise, by contrast, changes down every column.
    assert noisy_logits[:, :, 5:-5].std(dim=2).min() > 1e-3


def test_mel_loss_is_zero_for_equal_audio_and_counts_level_in_every_band():
    noise = torch.from_numpy(np.random.default_rng(0).standard_normal((2, 2, 8192)).astype(np.float32))
    assert losses.multi_resolution_mel_loss(noise, noise, 44100).item() == 0
    quieter = [losses.multi_resolution_mel_loss(noise * gain, noise, 44100).item() for gain in (0.5, 0.1)]
    # log10 of the gain in every band that has bins (a few of the narrowest low bands have none)
    assert 0.8 * np.log10(2) < quieter[0] <= np.log10(2) + 1e-5
    assert 0.8 < quieter[1] <= 1 + 1e-5


def test_low_band_loss_charges_rumble_below_40_hz_and_nothing_above_it():
    t = np.arange(40960) / 44100
    tone = torch.tensor(0.3 * np.sin(2 * np.pi * 440 * t), dtype=torch.float32).expand(2, 2, -1)
    rumble = torch.tensor(0.03 * np.sin(2 * np.pi * 17 * t), dtype=torch.float32).expand(2, 2, -1)
    assert losses.low_band_loss(tone, tone, 44100).item() == 0
    assert losses.low_band_loss(tone + rumble, tone, 44100).item() > 1  # 10 log-units where it lies
    assert losses.low_band_loss(0.5 * tone + rumble, tone + rumble, 44100).item() < 0.01
    halved = losses.low_band_loss(0.5 * rumble, rumble, 44100).item()
    assert 0.1 < halved <= np.log10(4) + 1e-5  # a quarter of the energy in each band it reaches


# -- each trainer's step on a fixed batch ----------------------------------------------------------


def test_autoencoder_losses_fall_on_a_fixed_batch():
    torch.manual_seed(0)
    model = AudioModel(ModelConfig.from_dict(small_config()))
    net = VaeRoundTrip(model.vae)
    disc = AudioDiscriminator(2, filters=4, n_ffts=(256, 128), periods=(3, 5))
    config = AutoencoderTrainConfig(corpus=Path("."), out=Path("."), low_band_weight=1.0, **AE_OPTIONS)
    opt_vae = torch.optim.Adam(net.parameters(), lr=1e-3, betas=(0.8, 0.99))
    opt_disc = torch.optim.Adam(disc.parameters(), lr=1e-3, betas=(0.8, 0.99))
    frames = AE_OPTIONS["chunk"]
    audio = torch.stack([torch.from_numpy(sine(f, frames / 44100)) for f in (220, 1320)])
    noise = torch.randn(2, 8, frames // 2048)
    history = [
        autoencoder_step(net, disc, opt_vae, opt_disc, audio, noise, config, True, 44100) for _ in range(6)
    ]
    assert all(math.isfinite(v) for step in history for v in step.values()) and "low_band" in history[0]
    assert history[-1]["stft"] < 0.85 * history[0]["stft"]
    assert history[-1]["disc"] < history[0]["disc"]  # the discriminator learns to tell them apart


def test_flow_loss_falls_on_a_fixed_batch():
    torch.manual_seed(0)
    model = AudioModel(ModelConfig.from_dict(small_config()))
    trainable = train_only(model, model.dit, model.conditioners)
    net = ConditionedVelocity(model)
    optimizer = torch.optim.AdamW(trainable, lr=3e-3)
    latents, noise = torch.randn(3, 8, 4), torch.randn(3, 8, 4)
    t, keep = torch.tensor([0.2, 0.5, 0.8]), torch.tensor([1.0, 1.0, 0.0])
    prompts, seconds = ["kick", "snare", "hat"], [0.1, 0.15, 0.19]
    history = []
    for _ in range(15):
        loss = flow_loss(net, latents, (prompts, seconds, None), t, noise, keep)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append(loss.item())
    assert all(math.isfinite(v) for v in history)
    assert history[-1] < 0.5 * history[0]


def arc_setup(seed: int = 0) -> tuple:
    torch.manual_seed(seed)
    model = AudioModel(ModelConfig.from_dict(small_config()))
    disc = ArcDiscriminator(model.dit, head_channels=16)
    train_only(model, model.dit)
    config = ArcTrainConfig(corpus=Path("."), out=Path("."), grad_clip=0.0)
    generator = torch.Generator().manual_seed(seed)
    latents = torch.randn(4, 8, 4)
    batch = arc_batch(
        model, latents, ["kick", "snare", "hat", "kick"], [0.1, 0.1, 0.2, 0.2], [0.0] * 4, generator
    )
    draws = ArcNoise.draw(latents.shape, generator, config)
    return model, disc, config, batch, draws


def test_arc_batch_swaps_only_the_prompt_tokens():
    _, _, _, batch, _ = arc_setup()
    prompt_tokens = 16  # the tiny config's MiniLM max_length; the seconds token follows
    assert not torch.equal(batch.wrong_context[:, :prompt_tokens], batch.cond.context[:, :prompt_tokens])
    torch.testing.assert_close(batch.wrong_context[:, prompt_tokens:], batch.cond.context[:, prompt_tokens:])
    assert batch.contrast.sum() >= 2  # rows meeting another text ("kick" may meet "kick")


def test_a_discriminator_step_raises_the_real_fake_margin():
    model, disc, config, batch, draws = arc_setup()
    optimizer = torch.optim.Adam([p for p in disc.parameters() if p.requires_grad], lr=1e-4)

    def margin() -> float:
        with torch.no_grad():
            fake = generate_x0(model.dit, batch, draws)
            real_s = losses.add_noise(batch.latents, draws.renoise, draws.s)
            fake_s = losses.add_noise(fake, draws.renoise, draws.s)
            cond = (draws.s, batch.cond.context, batch.cond.global_cond)
            return (disc(real_s, *cond) - disc(fake_s, *cond)).mean().item()

    before = margin()
    values = discriminator_step(model.dit, disc, optimizer, batch, draws, config)
    assert values["d_margin"] == pytest.approx(before, abs=1e-5)
    assert margin() > before


def test_arc_losses_fall_on_a_fixed_batch():
    model, disc, config, batch, draws = arc_setup(1)
    opt_d = torch.optim.Adam([p for p in disc.parameters() if p.requires_grad], lr=1e-3)
    d_history = [discriminator_step(model.dit, disc, opt_d, batch, draws, config) for _ in range(6)]
    total = [v["d_relativistic"] + v["d_contrastive"] for v in d_history]
    assert all(math.isfinite(v) for v in total)
    assert total[-1] < total[0]
    opt_g = torch.optim.Adam([p for p in model.dit.parameters() if p.requires_grad], lr=1e-3)
    g_history = [
        generator_step(model.dit, disc, opt_g, batch, draws, config)["g_relativistic"] for _ in range(6)
    ]
    assert all(math.isfinite(v) for v in g_history)
    assert g_history[-1] < g_history[0]  # against a fixed discriminator the generator catches up


# -- whole runs ----------------------------------------------------------------------------------


def test_autoencoder_run_resumes_exactly_and_exports_a_loadable_model(corpus, config_file, tmp_path):
    options = {"corpus": corpus, "config": config_file, **AE_OPTIONS}
    straight = train_autoencoder(AutoencoderTrainConfig(out=tmp_path / "straight", steps=3, **options))
    train_autoencoder(AutoencoderTrainConfig(out=tmp_path / "resumed", steps=1, **options))
    assert torch.load(tmp_path / "resumed" / "state.pt", weights_only=True)["step"] == 1
    resumed = train_autoencoder(AutoencoderTrainConfig(out=tmp_path / "resumed", steps=3, **options))

    rows = log_rows(tmp_path / "straight")
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert all(math.isfinite(r["stft"]) and math.isfinite(r["disc"]) for r in rows)
    assert [r["step"] for r in log_rows(tmp_path / "resumed")] == [1, 2, 3]
    for a, b in zip(rows, log_rows(tmp_path / "resumed"), strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)
    states = [torch.load(p.parent / "state.pt", weights_only=True) for p in (straight, resumed)]
    assert states[0]["step"] == states[1]["step"] == 3
    for part in ("model", "discriminator", "ema"):
        for key, tensor in states[0]["parts"][part].items():
            torch.testing.assert_close(tensor, states[1]["parts"][part][key], rtol=1e-4, atol=1e-6)
    assert (
        states[0]["parts"]["opt_vae"]["state"][0]["step"] == states[1]["parts"]["opt_vae"]["state"][0]["step"]
    )

    model = load_model(straight)  # the EMA weights, in the checkpoint format
    ema = states[0]["parts"]["ema"]
    torch.testing.assert_close(model.vae.encoder.in_conv.weight_v, ema["vae.encoder.in_conv.weight_v"])


@pytest.mark.parametrize("make_config", [small_config, tiny_stft_config], ids=["oobleck", "stft"])
def test_vae_context_matches_the_measured_receptive_fields(make_config):
    config = ModelConfig.from_dict(make_config())
    vae, hop = AudioModel(config).vae, config.autoencoder.downsampling_ratio
    context = context_samples(config.autoencoder)

    audio = torch.zeros(1, 2, hop * 32, requires_grad=True)
    vae.encoder(audio)[0, :, 16].sum().backward()
    reached = audio.grad[0].abs().sum(0).nonzero()
    encoder_span = int(reached.max() - reached.min()) + 1

    latents = torch.zeros(1, config.autoencoder.latent_dim, 32, requires_grad=True)
    decoded = vae.decoder(latents)
    decoder_span = 0
    for sample in range(16 * hop, 17 * hop, max(1, hop // 8)):
        latents.grad = None
        decoded[0, :, sample].sum().backward(retain_graph=True)
        reached = latents.grad[0].abs().sum(0).nonzero()
        decoder_span = max(decoder_span, int(reached.max() - reached.min()) * hop)
    assert max(encoder_span, decoder_span) - hop <= context <= max(encoder_span, decoder_span) + hop


def test_a_chunk_shorter_than_the_vae_context_is_warned_about(corpus, config_file, tmp_path, capsys):
    options = {**AE_OPTIONS, "chunk": 2048}
    train_autoencoder(
        AutoencoderTrainConfig(corpus=corpus, config=config_file, out=tmp_path, steps=1, **options)
    )
    warning = capsys.readouterr().err
    assert "warning: --chunk 2048 is shorter than the VAE's context" in warning
    assert "use --chunk" in warning


def train_decoder_only(corpus: Path, init: Path, out: Path, steps: int, **options) -> Path:
    """A --freeze-encoder autoencoder run from `init` (options: AutoencoderTrainConfig fields)."""
    return train_autoencoder(
        AutoencoderTrainConfig(corpus=corpus, out=out, init=init, steps=steps, freeze_encoder=True, **options)
    )


def assert_encoder_and_dit_unchanged(before: AudioModel, after: AudioModel) -> None:
    for part in ("vae.encoder", "dit"):
        for name, tensor in before.get_submodule(part).state_dict().items():
            torch.testing.assert_close(after.get_submodule(part).state_dict()[name], tensor, rtol=0, atol=0)


def test_decoder_fine_tuning_keeps_the_latents_and_the_dit_of_the_init_model(corpus, flow_folder, tmp_path):
    options = {**AE_OPTIONS, "disc_start": 100}  # reconstruction only, as a quick fine-tune runs
    tuned = train_decoder_only(corpus, flow_folder, tmp_path, steps=2, **options)
    before, after = load_model(flow_folder), load_model(tuned)
    assert_encoder_and_dit_unchanged(before, after)
    assert any(
        not torch.equal(after.vae.decoder.state_dict()[name], tensor)
        for name, tensor in before.vae.decoder.state_dict().items()
    )
    assert after.config.objective == before.config.objective  # still sampled as the flow model was
    rows = log_rows(tmp_path)
    assert [r["step"] for r in rows] == [1, 2] and all("kl" not in r for r in rows)


def test_a_new_decoder_layout_trains_under_the_encoder_and_dit_of_the_init_model(
    corpus, flow_folder, tmp_path, capsys
):
    nearest = {"model.pretransform.config.decoder.config.use_nearest_upsample": True}
    config = tmp_path / "model_config.json"
    config.write_text(json.dumps(tiny_config(sample_size=SAMPLE_SIZE, **nearest)))
    options = {**AE_OPTIONS, "disc_start": 100}
    tuned = train_decoder_only(corpus, flow_folder, tmp_path / "run", steps=2, config=config, **options)
    assert "10 tensors start fresh: vae.decoder.blocks.0.up.1.weight_v" in capsys.readouterr().err
    before, after = load_model(flow_folder), load_model(tuned)
    assert after.config.autoencoder.decoder.nearest_upsample
    assert_encoder_and_dit_unchanged(before, after)


def test_a_partial_head_added_to_a_trained_stft_decoder_trains_at_its_own_rate(corpus, tmp_path, capsys):
    stft = tiny_stft_config(sample_size=SAMPLE_SIZE)
    init = make_model_folder(tmp_path / "init", stft)
    config = tmp_path / "model_config.json"
    config.write_text(json.dumps(tiny_stft_config(sample_size=SAMPLE_SIZE, **{
        "model.pretransform.config.decoder.config.partial_bands": 64,
    })))  # fmt: skip
    options = {
        **AE_OPTIONS,
        "chunk": 4 * 512,
        "disc_start": 100,
        "partial_weight": 1.0,
        "partial_lr_scale": 10.0,
    }
    tuned = train_decoder_only(corpus, init, tmp_path / "run", steps=2, config=config, **options)
    assert "8 tensors start fresh: vae.decoder.partial_head." in capsys.readouterr().err
    groups = torch.load(tmp_path / "run" / "state.pt", weights_only=True)["parts"]["opt_vae"]["param_groups"]
    assert [g["lr"] for g in groups] == [pytest.approx(1e-3), pytest.approx(1e-2)]
    assert len(groups[1]["params"]) == 8  # the head's weights and biases
    assert all("partial" in r for r in log_rows(tmp_path / "run"))
    assert_encoder_and_dit_unchanged(load_model(init), load_model(tuned))


def test_freezing_an_encoder_that_init_cannot_fill_is_refused(corpus, flow_folder, tmp_path):
    wider = small_config()
    wider["model"]["pretransform"]["config"]["encoder"]["config"]["channels"] *= 2
    config = tmp_path / "model_config.json"
    config.write_text(json.dumps(wider))
    with pytest.raises(TrainingError, match=r"--freeze-encoder keeps .* latent space"):
        train_decoder_only(corpus, flow_folder, tmp_path / "run", steps=1, config=config, **AE_OPTIONS)


def test_a_discriminator_period_outside_the_chunk_is_refused(corpus, flow_folder, tmp_path):
    options = {**AE_OPTIONS, "disc_periods": (2, 0)}
    with pytest.raises(TrainingError, match=r"--disc-periods 2,0: a period .* from 1 to below the chunk"):
        train_decoder_only(corpus, flow_folder, tmp_path / "run", steps=1, **options)


def test_a_tone_share_outside_0_to_1_is_refused(corpus, flow_folder, tmp_path):
    with pytest.raises(TrainingError, match=r"--tone-share is a share from 0 to 1, got 1.5"):
        train_decoder_only(corpus, flow_folder, tmp_path / "run", steps=1, tone_share=1.5, **AE_OPTIONS)


def test_flow_run_exports_a_model_the_engine_samples_with_euler(flow_folder):
    rows = log_rows(flow_folder.parent)
    assert [r["step"] for r in rows] == [1, 2, 3] and all(math.isfinite(r["flow"]) for r in rows)
    assert math.isfinite(log_rows(flow_folder.parent, "valid")[0]["flow"])
    exported = json.loads((flow_folder / "model_config.json").read_text())
    assert exported["model"]["diffusion"]["diffusion_objective"] == "rectified_flow"
    assert exported["default_cfg"] == 4.0  # a flow model follows its prompt with guidance
    sampler, audio = generate(flow_folder)
    assert sampler == "euler" and audio.shape == (2, round(0.15 * 44100)) and np.isfinite(audio).all()


def test_arc_run_exports_a_ping_pong_model(corpus, flow_folder, tmp_path):
    out = train_arc(
        ArcTrainConfig(
            corpus=corpus,
            out=tmp_path / "arc",
            init=flow_folder,
            steps=2,
            batch_size=3,
            workers=0,
            head_channels=16,
            log_every=1,
            val_every=2,
        )
    )
    rows = log_rows(tmp_path / "arc")
    assert [r["step"] for r in rows] == [1, 2]
    for key in ("d_relativistic", "d_contrastive", "d_margin", "g_relativistic"):
        assert all(math.isfinite(r[key]) for r in rows)
    sampler, audio = generate(out)
    assert sampler == "pingpong" and np.isfinite(audio).all() and np.abs(audio).max() > 0
    assert json.loads((out / "model_config.json").read_text())["default_cfg"] == 1.0  # runs unguided


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ({"focus": "drum-loops=3"}, "unknown focus category 'drum-loops'"),
        ({"focus": "rain=0"}, "focus weight '0' of rain"),
        ({"beat_grid_lr_scale": 0.0}, "--beat-grid-lr-scale must be positive"),
    ],
)
def test_flow_refuses_a_focus_or_grid_rate_it_cannot_use(corpus, vae_folder, tmp_path, option, message):
    options = {"corpus": corpus, "out": tmp_path / "run", "init": vae_folder, "workers": 0}
    with pytest.raises(TrainingError, match=message):
        train_flow(FlowTrainConfig(**options, **option))
    assert not (tmp_path / "run").exists()  # refused before a run folder was made


def test_flow_refuses_a_config_whose_vae_differs_from_init(corpus, vae_folder, tmp_path):
    other = tiny_config(sample_size=SAMPLE_SIZE, **{"model.pretransform.config.encoder.config.channels": 8})
    (tmp_path / "other.json").write_text(json.dumps(other))
    options = {"corpus": corpus, "out": tmp_path / "run", "init": vae_folder, "workers": 0}
    with pytest.raises(TrainingError, match="'autoencoder' differs"):
        train_flow(FlowTrainConfig(config=tmp_path / "other.json", **options))


FINER_HOP = {
    "model.pretransform.config.encoder.config.strides": [2, 4, 4, 4, 4],
    "model.pretransform.config.decoder.config.strides": [2, 4, 4, 4, 4],
    "model.pretransform.config.downsampling_ratio": 512,
    "model.diffusion.config.patch_size": 4,
}


def test_warm_start_carries_the_dit_blocks_over_to_a_finer_hop_vae(corpus, flow_folder, tmp_path):
    fine_vae = make_model_folder(tmp_path / "fine", tiny_config(sample_size=SAMPLE_SIZE, **FINER_HOP), seed=5)
    options = {"corpus": corpus, "workers": 0, "init": fine_vae, "warm_start": flow_folder}
    model = flow_model(FlowTrainConfig(out=tmp_path / "unused", **options))
    source, fresh = load_model(flow_folder), load_model(fine_vae)
    for name, tensor in model.dit.state_dict().items():
        latent_facing = name.split(".")[0] in ("input_conv", "output_conv", "proj_in", "proj_out")
        expected = fresh.dit if latent_facing else source.dit
        assert torch.equal(tensor, expected.state_dict()[name]), name
    for name, tensor in model.conditioners.state_dict().items():
        assert torch.equal(tensor, source.conditioners.state_dict()[name]), name
    for name, tensor in model.vae.state_dict().items():
        assert torch.equal(tensor, fresh.vae.state_dict()[name]), name

    out = train_flow(FlowTrainConfig(out=tmp_path / "run", steps=1, batch_size=2, **options))
    _, audio = generate(out)
    assert audio.shape == (2, round(0.15 * 44100)) and np.isfinite(audio).all()


def test_warm_start_over_the_same_vae_keeps_the_latent_layers_too(corpus, vae_folder, flow_folder, tmp_path):
    model = flow_model(
        FlowTrainConfig(corpus=corpus, out=tmp_path, workers=0, init=vae_folder, warm_start=flow_folder)
    )
    assert torch.equal(model.dit.proj_in.weight, load_model(flow_folder).dit.proj_in.weight)


def test_warm_start_from_a_dit_of_another_width_is_refused(corpus, vae_folder, tmp_path):
    wide = make_model_folder(
        tmp_path / "wide", tiny_config(sample_size=SAMPLE_SIZE, **{"model.diffusion.config.embed_dim": 128})
    )
    options = {"corpus": corpus, "out": tmp_path / "run", "workers": 0, "init": vae_folder}
    with pytest.raises(TrainingError, match=r"--warm-start .* does not fit this model: its DiT tensors"):
        flow_model(FlowTrainConfig(warm_start=wide, **options))


def test_warm_start_into_a_model_with_more_conditioners_starts_only_those_fresh(
    corpus, vae_folder, flow_folder, tmp_path
):
    facts = tiny_config(sample_size=SAMPLE_SIZE)
    facts["model"]["conditioning"]["configs"].append({"id": "note", "type": "note", "config": {}})
    facts["model"]["diffusion"]["cross_attention_cond_ids"].append("note")
    config = tmp_path / "facts.json"
    config.write_text(json.dumps(facts))
    options = {"corpus": corpus, "out": tmp_path / "run", "workers": 0, "init": vae_folder}
    model = flow_model(FlowTrainConfig(config=config, warm_start=flow_folder, **options))
    source = load_model(flow_folder)
    for cond_id in ("prompt", "seconds_total"):
        for name, tensor in model.conditioners[cond_id].state_dict().items():
            assert torch.equal(tensor, source.conditioners[cond_id].state_dict()[name]), name
    assert model.conditioners["note"].absent.abs().max() == 0  # fresh

    # The other way round, a source conditioner the new model lacks, is refused.
    with pytest.raises(TrainingError, match=r"its conditioners \['note'\] are not this model's"):
        flow_model(FlowTrainConfig(warm_start=save_model(model, tmp_path / "src"), **options))


def test_padded_clips_are_also_conditioned_on_longer_lengths_when_asked(corpus, vae_folder, tmp_path):
    clips = [c for c in read_manifest(corpus) if c.id == "synthetic/sine-low"]  # 0.1 s, padded
    model = load_model(vae_folder)
    cache = LatentCache.for_vae(tmp_path / "cache", model.vae, 44100, 2, SAMPLE_SIZE)
    cache.encode(clips[0], model.vae, torch.device("cpu"))
    latent_frames, hop = SAMPLE_SIZE // 2048, 2048
    window = SAMPLE_SIZE / 44100
    own = [LatentClips(clips, cache, latent_frames, hop)[(0, seed)]["seconds"] for seed in range(20)]
    assert own == pytest.approx([0.1] * 20, abs=1e-4)
    drawn = [LatentClips(clips, cache, latent_frames, hop, 1.0)[(0, seed)]["seconds"] for seed in range(20)]
    assert all(0.1 - 1e-4 <= s <= window for s in drawn) and len(set(drawn)) == 20
    half = [LatentClips(clips, cache, latent_frames, hop, 0.5)[(0, seed)]["seconds"] for seed in range(40)]
    assert 5 < sum(abs(s - 0.1) < 1e-4 for s in half) < 35


def test_fact_dropout_also_trains_captions_without_their_note_or_tempo(corpus, vae_folder, tmp_path):
    clip = next(c for c in read_manifest(corpus) if c.id == "synthetic/sine-low")
    model = load_model(vae_folder)
    cache = LatentCache.for_vae(tmp_path / "cache", model.vae, 44100, 2, SAMPLE_SIZE)
    cache.encode(clip, model.vae, torch.device("cpu"))
    caption = "soft piano note playing C#4 at 90 BPM, short note"
    stated = dataclasses.replace(clip, caption=caption, captions=(caption,))

    def captions(fact_dropout: float) -> list[str]:
        data = LatentClips([stated], cache, SAMPLE_SIZE // 2048, 2048, fact_dropout=fact_dropout)
        return [data[(0, seed)]["caption"] for seed in range(40)]

    assert set(captions(0.0)) == set(stated.captions)
    assert set(captions(1.0)) == {"soft piano note, short note"}
    assert 5 < captions(0.5).count("soft piano note, short note") < 35


def test_a_run_folder_refuses_another_kind_of_run(corpus, config_file, vae_folder, tmp_path):
    train_autoencoder(
        AutoencoderTrainConfig(corpus=corpus, out=tmp_path, config=config_file, steps=1, **AE_OPTIONS)
    )
    with pytest.raises(TrainingError, match="holds a 'autoencoder' run"):
        train_flow(FlowTrainConfig(corpus=corpus, out=tmp_path, init=vae_folder, workers=0))


def test_cli_maps_options_onto_the_configs(corpus, capsys):
    parser = argparse.ArgumentParser(prog="studio")
    parser.add_argument("--device")  # the top-level `studio` parser has serve options of its own
    add_train_commands(parser.add_subparsers(dest="command"))
    argv = ["train", "flow", "--corpus", str(corpus), "--out", "run", "--init", "vae", "--steps", "7"]
    shares = ["--cond-dropout", "0.2", "--balance", "0.5", "--padded-seconds-share", "0.5"]
    shares += ["--fact-dropout", "0.3"]
    args = parser.parse_args([*argv, *shares, "--warm-start", "old"])
    config = cli._config(FlowTrainConfig, args)
    assert (config.steps, config.cond_dropout, config.init, config.out) == (7, 0.2, Path("vae"), Path("run"))
    assert (config.warm_start, config.padded_seconds_share, config.fact_dropout) == (Path("old"), 0.5, 0.3)
    assert config.balance == 0.5
    assert config.lr == FlowTrainConfig.lr and config.device is None  # unset options keep the defaults
    ae_argv = ["train", "autoencoder", "--corpus", "c", "--out", "o"]
    args = parser.parse_args([*ae_argv, "--disc-n-ffts", "512,128", "--disc-periods", "2,3"])
    config = cli._config(AutoencoderTrainConfig, args)
    assert (config.disc_n_ffts, config.disc_periods) == ((512, 128), (2, 3))
    assert main(["flow", "--corpus", str(corpus), "--out", str(corpus / "run")]) == 2
    assert "needs --init" in capsys.readouterr().err
    assert main([*argv[1:], "--balance", "2"]) == 2
    assert "--balance must be from 0 to 1, got 2.0" in capsys.readouterr().err
    assert main([*argv[1:], "--padded-seconds-share", "1.5"]) == 2
    assert "--padded-seconds-share must be in [0, 1], got 1.5" in capsys.readouterr().err
    assert main([*argv[1:], "--fact-dropout", "-0.1"]) == 2
    assert "--fact-dropout must be in [0, 1], got -0.1" in capsys.readouterr().err
    weights = ["--phase-weight", "1", "--magnitude-weight", "5", "--partial-weight", "3"]
    args = parser.parse_args([*ae_argv, "--tone-share", "0.2", *weights, "--fft-sizes", "512,128"])
    config = cli._config(AutoencoderTrainConfig, args)
    assert (config.tone_share, config.phase_weight, config.fft_sizes) == (0.2, 1.0, (512, 128))
    assert (config.magnitude_weight, config.partial_weight, config.partial_lr_scale) == (5.0, 3.0, 1.0)
    args = parser.parse_args([*ae_argv, "--partial-lr-scale", "10"])
    assert cli._config(AutoencoderTrainConfig, args).partial_lr_scale == 10.0


# -- torchrun ------------------------------------------------------------------------------------


def test_torchrun_trains_on_two_processes(corpus, config_file, tmp_path):
    out = tmp_path / "ddp"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "studio.training.cli",
        "autoencoder",
        "--corpus",
        str(corpus),
        "--out",
        str(out),
        "--config",
        str(config_file),
        "--steps",
        "2",
        "--log-every",
        "1",
        "--device",
        "cpu",
        "--minutes",
        "60",  # never reached, but every logged step asks rank 0 the time
        *AE_CLI,
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    try:
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"cannot spawn torchrun processes here: {exc}")
    if result.returncode != 0 and "Address family not supported" in result.stderr:
        pytest.skip("this machine cannot open the local sockets the process group needs")
    assert result.returncode == 0, result.stderr[-3000:]
    state = torch.load(out / "state.pt", weights_only=True)
    assert state["step"] == 2
    rows = log_rows(out)
    assert [r["step"] for r in rows] == [1, 2] and all(math.isfinite(r["loss"]) for r in rows)
    assert load_model(out / "model").config.sample_size == SAMPLE_SIZE


def test_a_run_out_of_minutes_stops_exports_and_resumes(corpus, vae_folder, tmp_path, capsys):
    options = {"corpus": corpus, "out": tmp_path / "run", "init": vae_folder, "batch_size": 2, "workers": 0}
    options |= {"log_every": 2, "val_every": 100, "export_every": 100}
    exported = train_flow(FlowTrainConfig(steps=50, minutes=1e-9, **options))
    assert "stopped at step 2 of 50: --minutes 1e-09 is spent" in capsys.readouterr().err
    assert torch.load(tmp_path / "run" / "state.pt", weights_only=True)["step"] == 2
    assert [r["step"] for r in log_rows(tmp_path / "run", "valid")] == [2]  # validated where it stopped
    assert load_model(exported).config.dit is not None
    train_flow(FlowTrainConfig(steps=4, **options))
    assert [r["step"] for r in log_rows(tmp_path / "run")] == [2, 4]


def test_resumed_flow_run_reuses_the_latent_cache_of_its_vae(corpus, flow_folder, tmp_path):
    """A resumed run rebuilds its model from the config; the latents must still come from the
    trained VAE (the same cache), not from freshly initialised weights."""
    run = tmp_path / "flow-run"
    shutil.copytree(flow_folder.parent, run)
    caches = corpus / ".cache" / "latents"
    before = sorted(p.name for p in caches.iterdir())
    train_flow(
        FlowTrainConfig(
            corpus=corpus, out=run, init=flow_folder, steps=4, batch_size=2, workers=0, lr=1e-3, log_every=1
        )
    )
    assert [r["step"] for r in log_rows(run)][-1] == 4
    assert sorted(p.name for p in caches.iterdir()) == before


def test_training_commands_run_without_the_apps_packages():
    """A bare GPU machine has torch and transformers, not gradio, librosa or audio devices."""
    app_only = ["gradio", "librosa", "pyloudnorm", "pydub", "mido", "rtmidi", "sounddevice", "pythonosc"]
    script = f"""
import importlib.abc, sys
class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in {app_only!r}:
            raise ImportError(f"{{name}} is not installed here")
sys.meta_path.insert(0, Absent())
from studio.cli import build_parser
import studio.training.arc, studio.training.autoencoder, studio.training.flow, studio.training.vsd
args = build_parser().parse_args(["train", "arc", "--corpus", "c", "--out", "o", "--minutes", "5"])
print(args.func.__name__, args.minutes)
"""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-c", script]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["cmd_train_arc", "5.0"]


# -- variational score distillation ----------------------------------------------------------------


def gaussian_denoiser(mean: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """E[x0 | x_t] for data x0 ~ N(mean, I) and x_t = (1 - t) x0 + t ε: the exact denoiser."""
    a = (1 - t).view(-1, 1)
    return mean + a / (a**2 + t.view(-1, 1) ** 2) * (x_t - a * mean)


def test_distribution_matching_moves_samples_toward_the_teachers_gaussian():
    real_mean, student_mean = torch.tensor([2.0, -1.0, 0.5]), torch.zeros(3, requires_grad=True)
    optimizer = torch.optim.SGD([student_mean], lr=0.5)
    generator = torch.Generator().manual_seed(0)
    distances = []
    for _ in range(60):
        x0 = student_mean + torch.randn(256, 3, generator=generator)
        t = 0.02 + 0.96 * torch.rand(256, generator=generator)
        x_t = losses.add_noise(x0.detach(), torch.randn(256, 3, generator=generator), t)
        real = gaussian_denoiser(real_mean, x_t, t)
        fake = gaussian_denoiser(student_mean.detach(), x_t, t)  # the fake score, exact
        optimizer.zero_grad()
        losses.distribution_matching_loss(x0, real, fake).backward()
        optimizer.step()
        distances.append(float((student_mean.detach() - real_mean).norm()))
    assert distances[0] > 2 and distances[-1] < 0.2  # from 2.3 away to the teacher's mean
    assert max(distances[30:]) < 0.5 * distances[0]  # it moves there and stays
    same = losses.distribution_matching_loss(
        torch.ones(2, 3, requires_grad=True), torch.zeros(2, 3), torch.zeros(2, 3)
    )
    assert same.item() == 0  # a student that makes the teacher's distribution is not moved


def test_temporal_smoothness_is_zero_on_a_constant_latent_and_positive_on_noise():
    assert losses.temporal_smoothness(torch.full((2, 8, 16), 0.7)).item() == 0
    assert losses.temporal_smoothness(torch.randn(2, 8, 16)).item() == pytest.approx(2.0, rel=0.2)


def vsd_setup() -> tuple[Distiller, AudioModel, VsdTrainConfig]:
    torch.manual_seed(0)
    model = AudioModel(ModelConfig.from_dict(small_config()))
    teacher, fake = copy.deepcopy(model.dit).requires_grad_(False), copy.deepcopy(model.dit)
    train_only(model, model.dit)
    config = VsdTrainConfig(corpus=Path("."), out=Path("."), grad_clip=0.0, fake_lr=1e-3, lr=1e-3)
    return Distiller(model.dit, fake, teacher, 3.0, (0.0, 1.0), torch.device("cpu")), model, config


def test_the_fake_score_learns_the_students_samples():
    nets, model, _ = vsd_setup()
    optimizer = torch.optim.AdamW(nets.fake.parameters(), lr=1e-3)
    cond = model.condition(["kick", "snare", "hat"], [0.1, 0.2, 0.3])
    student = copy.deepcopy(model.dit.state_dict())
    losses_seen = [
        fake_score_step(nets, optimizer, cond, (3, 8, 4), torch.Generator().manual_seed(1), 0.0)
        for _ in range(40)
    ]
    assert losses_seen[-1] < 0.5 * losses_seen[0]
    assert all(torch.equal(v, model.dit.state_dict()[k]) for k, v in student.items())  # student untouched


def test_a_student_step_moves_only_the_student_and_logs_both_terms():
    nets, model, config = vsd_setup()
    optimizer = torch.optim.AdamW([p for p in model.dit.parameters() if p.requires_grad], lr=1e-3)
    cond = model.condition(["kick", "snare"], [0.1, 0.2])
    teacher, fake = copy.deepcopy(nets.teacher.state_dict()), copy.deepcopy(nets.fake.state_dict())
    before = copy.deepcopy(model.dit.state_dict())
    values = student_step(nets, optimizer, cond, (2, 8, 4), torch.Generator().manual_seed(2), config)
    assert set(values) == {"distribution_matching", "smoothness"} and all(map(math.isfinite, values.values()))
    assert any(not torch.equal(v, model.dit.state_dict()[k]) for k, v in before.items())
    assert all(torch.equal(v, nets.teacher.state_dict()[k]) for k, v in teacher.items())
    assert all(torch.equal(v, nets.fake.state_dict()[k]) for k, v in fake.items())


def test_prompts_come_from_captions_and_fresh_designs_without_audio(corpus):
    clips = [dataclasses.replace(c, category="kick") for c in read_manifest(corpus) if c.split == "train"]
    read = [Prompts(clips, 0.25)[(i % len(clips), seed)] for seed in range(12) for i in range(len(clips))]
    assert {r["caption"] for r in read} <= {c for clip in clips for c in clip.captions}
    assert {r["seconds"] for r in read} <= {min(clip.seconds, 0.25) for clip in clips}
    designed = [Prompts(clips, 4.0, designed_share=1.0)[(0, seed)] for seed in range(12)]
    assert not {d["caption"] for d in designed} & {c for clip in clips for c in clip.captions}
    assert len({d["caption"] for d in designed}) > 6 and all(0 < d["seconds"] <= 4.0 for d in designed)
    assert Prompts(clips, 4.0, designed_share=1.0)[(0, 5)] == designed[5]  # the key decides the draw


def test_vsd_distils_from_captions_alone_into_a_one_step_model(corpus, flow_folder, tmp_path):
    captions_only = tmp_path / "captions-only"  # the manifest without its audio: none is read
    captions_only.mkdir()
    shutil.copy(corpus / "manifest.jsonl", captions_only)
    options = dict(corpus=captions_only, teacher=flow_folder, batch_size=2, workers=0, fake_updates=2)
    options |= dict(log_every=1, val_every=2, export_every=2, designed_share=0.5)
    out = train_vsd(VsdTrainConfig(out=tmp_path / "vsd", steps=2, **options))
    rows = log_rows(tmp_path / "vsd")
    assert [r["step"] for r in rows] == [1, 2]
    assert all(
        math.isfinite(r[k]) for r in rows for k in ("fake_flow", "distribution_matching", "smoothness")
    )
    assert math.isfinite(log_rows(tmp_path / "vsd", "valid")[0]["teacher_gap"])
    exported = json.loads((out / "model_config.json").read_text())
    assert (exported["default_sampler"], exported["default_steps"], exported["default_cfg"]) == (
        "onestep",
        1,
        1.0,
    )
    with Engine(out, warmup=False) as engine:
        take = engine.generate(Request("a soft low sine tone", seconds=0.15, seed=3, variations=2)).takes
    assert take[0].params.sampler == "onestep" and np.isfinite(take[0].audio).all()
    assert not np.array_equal(take[0].audio, take[1].audio)
    resumed = train_vsd(VsdTrainConfig(out=tmp_path / "vsd", steps=3, **options))  # continues at step 2
    assert [r["step"] for r in log_rows(tmp_path / "vsd")] == [1, 2, 3] and resumed == out
    with pytest.raises(TrainingError, match="needs --teacher"):
        train_vsd(VsdTrainConfig(corpus=captions_only, out=tmp_path / "none", workers=0))
    with pytest.raises(TrainingError, match="--fake-updates must be at least 1"):
        train_vsd(VsdTrainConfig(out=tmp_path / "bad", steps=1, **(options | {"fake_updates": 0})))
