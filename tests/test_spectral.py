"""Studio's STFT autoencoder: framing, the config type, loading, training on tiny configs, and the
measures `studio eval vae` reads it with (pitch, comb, DC, distances) on signals with known answers."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny import make_model_folder, tiny_stft_config, write_config

from studio.errors import ModelConfigError
from studio.eval import sound
from studio.models import AudioModel, ModelConfig, load_model, save_model
from studio.models.config import StftConfig
from studio.models.precision import place_model
from studio.models.spectral import StftDecoder, frame_spectra, hann_lobe, overlap_add
from studio.training import losses
from studio.training.autoencoder import AutoencoderTrainConfig, VaeRoundTrip, autoencoder_step
from studio.training.discriminators import AudioDiscriminator

RATE = 44100


def sine(
    freq: float, frames: int, channels: int = 2, amplitude: float = 0.5, phase: float = 0.3
) -> np.ndarray:
    t = np.arange(frames) / RATE
    return np.repeat(amplitude * np.sin(2 * np.pi * freq * t + phase)[None], channels, axis=0).astype(
        np.float32
    )


# -- framing -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("n_fft", "hop"), [(2048, 512), (1024, 512), (48, 16)])
def test_frames_overlap_add_back_to_the_signal_to_its_edges(n_fft, hop):
    audio = torch.randn(2, 3, 40 * hop, dtype=torch.float64).float()
    spectra = frame_spectra(audio, n_fft, hop)
    assert spectra.shape == (2, 3, 40, n_fft // 2 + 1)  # exactly one frame per hop block
    torch.testing.assert_close(overlap_add(spectra, n_fft, hop), audio, rtol=0, atol=1e-5)


def test_a_frame_is_centred_on_its_hop_block():
    hop, n_fft = 512, 2048
    audio = torch.zeros(1, 1, 8 * hop)
    audio[..., 5 * hop + hop // 2] = 1.0  # an impulse in the middle of block 5
    energy = frame_spectra(audio, n_fft, hop).abs().square().sum(-1)[0, 0]
    assert int(energy.argmax()) == 5
    assert torch.allclose(energy[4], energy[6])


# -- the config type and the loader --------------------------------------------------------------


def test_the_stft_type_loads_through_the_same_loader_and_keeps_its_names(tmp_path):
    folder = make_model_folder(tmp_path / "model", tiny_stft_config())
    model = load_model(folder)
    auto = model.config.autoencoder
    assert isinstance(auto.encoder, StftConfig) and isinstance(auto.decoder, StftConfig)
    assert auto.decoder.n_fft == 2048 and auto.decoder.hop_length == auto.downsampling_ratio == 512
    from safetensors import safe_open

    keys = set(safe_open(str(folder / "model.safetensors"), "pt").keys())
    assert "pretransform.model.decoder.trunk.proj_out.weight" in keys
    banded = make_model_folder(tmp_path / "banded", tiny_stft_config(**BANDED))
    banded_keys = set(safe_open(str(banded / "model.safetensors"), "pt").keys())
    assert "pretransform.model.decoder.band_head.out" in banded_keys
    assert load_model(banded).vae.decoder.band_head.out.shape == (8, 16, 2 * 3 * 128)
    assert "pretransform.model.encoder.trunk.blocks.0.mix.weight" in keys
    audio = torch.from_numpy(sine(440, 16 * 512))[None]
    with torch.no_grad():
        latents = model.vae.encode(audio)
        assert latents.shape == (1, 8, 16)
        assert model.vae.decode(latents).shape == audio.shape


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"model.pretransform.config.decoder.config.hop_length": 256}, "hop_length.*must agree"),
        ({"model.pretransform.config.encoder.config.n_fft": 512}, "n_fft.*at least twice"),
        ({"model.pretransform.config.encoder.config.n_fft": 2000}, "n_fft.*whole multiple"),
        ({"model.pretransform.config.decoder.config.kernel_size": 4}, "kernel_size.*odd"),
        ({"model.pretransform.config.decoder.config.width": 0}, "width.*more than 0"),
        ({"model.pretransform.config.decoder.type": "vocos"}, "supported: oobleck, stft"),
        ({"model.pretransform.config.encoder.config.sureness_power": 2.0}, "sureness_power.*decoder option"),
        ({"model.pretransform.config.decoder.config.sureness_power": 0}, "sureness_power.*more than 0"),
        ({"model.pretransform.config.encoder.config.head_bands": 8}, "head_bands.*decoder option"),
        ({"model.pretransform.config.decoder.config.head_bands": 3}, "head_bands.*equal bands"),
        ({"model.pretransform.config.decoder.config.head_bands": -1}, "head_bands.*must be 0"),
        ({"model.pretransform.config.encoder.config.partial_bands": 64}, "partial_bands.*decoder option"),
        ({"model.pretransform.config.decoder.config.partial_bands": 48}, "partial_bands.*equal bands"),
    ],
)
def test_a_bad_stft_section_is_refused_with_the_field_named(tmp_path, change, message):
    folder = make_model_folder(tmp_path / "model", tiny_stft_config())
    write_config(folder, tiny_stft_config(**change))
    with pytest.raises(ModelConfigError, match=message) as info:
        load_model(folder)
    assert "model_config.json" in str(info.value)


def test_the_decoder_has_no_way_to_write_a_constant_offset():
    """Whatever the trunk writes, the 1st bin (21.5 Hz) included, every Hann-windowed frame sums
    to 0, so overlap-adding the frames leaves no offset."""
    torch.manual_seed(0)
    decoder = StftDecoder(ModelConfig.from_dict(tiny_stft_config()).autoencoder.decoder)
    with torch.no_grad():
        out = decoder.trunk(torch.randn(2, 64, 8)) + 6.0  # loud in every bin it can write
        spectra, *_ = decoder.spectra(out, torch.zeros(2, 2, 64, 1024, dtype=torch.complex64))
    assert spectra.shape == (2, 2, 64, 1025) and spectra[..., 1:].abs().min() > 0
    frames = torch.fft.irfft(spectra, n=decoder.n_fft) * torch.hann_window(decoder.n_fft)
    assert frames.sum(-1).abs().max() < 1e-6 * frames.abs().sum(-1).max()


def test_the_decoder_writes_sure_phases_as_they_are_and_unsure_ones_from_the_noise():
    torch.manual_seed(0)
    decoder = StftDecoder(ModelConfig.from_dict(tiny_stft_config()).autoencoder.decoder)
    phasors = decoder.trunk.proj_out.bias.view(2, 3, 1024)[:, 1:]
    noises = [torch.randn(1, 2, 16 * 512, generator=torch.Generator().manual_seed(s)) for s in (1, 2)]
    latents = torch.randn(1, 8, 16)
    with torch.no_grad():
        decoder.trunk.proj_out.weight.view(2, 3, 1024, -1)[:, 1:] = 0  # the phasors are their biases
        phasors.copy_(torch.tensor([0.6, 0.8])[None, :, None])  # length 1: sure
        sure = [decoder(latents, noise) for noise in noises]
        phasors.zero_()  # length 0: anyone's guess
        unsure = [decoder(latents, noise) for noise in noises]
    torch.testing.assert_close(sure[0], sure[1])
    assert (unsure[0] - unsure[1]).abs().mean() > 0.5 * unsure[0].abs().mean()
    torch.testing.assert_close(decoder(latents), decoder(latents))  # no noise given: a fixed draw


BANDED = {
    "model.pretransform.config.decoder.config.head_bands": 8,
    "model.pretransform.config.decoder.config.head_band_width": 16,
}


def test_a_band_head_starts_at_zero_so_a_trained_decoder_decodes_as_before(tmp_path):
    plain = load_model(make_model_folder(tmp_path / "plain", tiny_stft_config()))
    banded = AudioModel(ModelConfig.from_dict(tiny_stft_config(**BANDED)))
    missing = banded.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert missing and all(key.startswith("vae.decoder.band_head.") for key in missing)
    latents = torch.randn(1, 8, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(banded.vae.decode(latents), plain.vae.decode(latents), rtol=0, atol=0)
        banded.vae.decoder.band_head.out.normal_()
        assert not torch.equal(banded.vae.decode(latents), plain.vae.decode(latents))


def test_a_band_head_writes_each_band_into_its_own_bins_in_the_linear_layout():
    decoder = StftDecoder(ModelConfig.from_dict(tiny_stft_config(**BANDED)).autoencoder.decoder)
    head = decoder.band_head
    band_bins = decoder.bins // 8
    with torch.no_grad():
        # band 5, channel 1, output 0 (log magnitude), 7th bin of the band
        head.bias.view(8, 2, 3, band_bins)[5, 1, 0, 7] = 1.0
        out = head(torch.randn(2, 4, 32)).view(2, 4, 2, 3, decoder.bins)  # proj_out's layout
    expected = torch.zeros_like(out)
    expected[:, :, 1, 0, 5 * band_bins + 7] = 1.0
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


def test_a_band_head_writes_spectra_beyond_the_span_of_a_linear_output():
    """A linear output layer `width` wide writes every frame's log magnitudes in one
    `width`-dimensional subspace; with a band head they leave it."""
    torch.manual_seed(0)
    decoder = StftDecoder(ModelConfig.from_dict(tiny_stft_config(**BANDED)).autoencoder.decoder)
    with torch.no_grad():
        decoder.band_head.out.normal_(std=0.1)
        hidden = torch.randn(1, 400, 32)  # 400 frames of the trunk's output, 32 wide
        linear = decoder.trunk.proj_out(hidden)
        banded = linear + decoder.band_head(hidden)

    def rank(out: torch.Tensor) -> int:
        log_magnitudes = out.view(400, 2, 3, decoder.bins)[:, :, 0].flatten(1)
        return int(torch.linalg.matrix_rank(log_magnitudes - log_magnitudes.mean(0)))

    assert rank(linear) <= 32
    assert rank(banded) > 32 + 100  # 8 bands of 16 features each


PARTIALS = {"model.pretransform.config.decoder.config.partial_bands": 64}


def test_a_partial_head_starts_silent_so_a_trained_decoder_decodes_as_before(tmp_path):
    plain = load_model(make_model_folder(tmp_path / "plain", tiny_stft_config()))
    placing = AudioModel(ModelConfig.from_dict(tiny_stft_config(**PARTIALS)))
    missing = placing.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert missing and all(key.startswith("vae.decoder.partial_head.") for key in missing)
    placing = load_model(save_model(placing, tmp_path / "placing"))  # as a model folder loads
    latents = torch.randn(1, 8, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(placing.vae.decode(latents), plain.vae.decode(latents), rtol=0, atol=1e-7)
        placing.vae.decoder.partial_head.out.bias.zero_()  # every band's partial at level 1
        assert (placing.vae.decode(latents) - plain.vae.decode(latents)).abs().max() > 1e-2


def test_the_placement_loss_trains_the_partial_head_and_leaves_the_decoder_it_reads_alone():
    decoder = StftDecoder(ModelConfig.from_dict(tiny_stft_config(**PARTIALS)).autoencoder.decoder)
    latents = torch.randn(1, 8, 12, generator=torch.Generator().manual_seed(2))
    original = torch.from_numpy(sine(3000.0, 12 * 512, amplitude=0.3))[None]
    *_, (positions, levels) = decoder.decode(latents)
    target = frame_spectra(original, 2048, 512)[..., 1:]
    losses.partial_placement_loss(positions, levels, target).backward()
    head = decoder.partial_head
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in (head.out.weight, head.read[0].weight))
    assert all(p.grad is None for p in decoder.trunk.parameters())


def test_the_partial_head_writes_the_lobe_a_sine_between_two_bins_leaves():
    """A sine 0.3 of a bin above a bin's frequency, through the analysis the encoder reads: its
    magnitudes round the peak are the Hann lobe the head writes."""
    place = 99.3  # counted from the first bin above 0 Hz, as the decoder's bins are
    audio = torch.from_numpy(sine((place + 1) * RATE / 2048, 16 * 512, amplitude=0.3))[None]
    magnitudes = frame_spectra(audio, 2048, 512)[0, 0, 8, 1:].abs()
    bins = torch.arange(98, 102)  # within two bins of the sine
    torch.testing.assert_close(magnitudes[bins] / magnitudes[99], hann_lobe(bins - place) / hann_lobe(
        torch.tensor(99 - place)), rtol=0.02, atol=0.005)  # fmt: skip

    decoder = StftDecoder(ModelConfig.from_dict(tiny_stft_config(**PARTIALS)).autoencoder.decoder)
    quiet = torch.full((1, 2, 1, 1024), -20.0)
    band = int(place) // 16
    positions = (torch.arange(64) * 16 + 8.0).index_fill(0, torch.tensor([band]), place)
    levels = torch.full((64,), -30.0).index_fill(
        0, torch.tensor([band]), (magnitudes[99].log() - hann_lobe(torch.tensor(99 - place)).log()).item()
    )
    written = decoder.partial_head.write(quiet, positions.expand(1, 2, 1, 64), levels.expand(1, 2, 1, 64))
    written = written[0, 0, 0]
    torch.testing.assert_close(written[bins].exp(), magnitudes[bins], rtol=0.03, atol=1e-3)


def test_the_loudest_partial_of_a_band_is_found_between_bins_and_a_noise_has_none():
    rng = np.random.default_rng(0)
    frames = 16 * 512
    noise = 0.005 * rng.standard_normal((2, frames)).astype(np.float32)  # 32 dB under the sine
    place = 300.37
    audio = torch.from_numpy(sine((place + 1) * RATE / 2048, frames, amplitude=0.2) + noise)[None]
    target = frame_spectra(audio, 2048, 512)[..., 1:]
    positions, _, weights = losses.loudest_partials(target, 64)
    band = int(place // 16)
    middle = slice(3, -3)  # frames the sine fills whole
    assert (positions[..., middle, band] - place).abs().max() < 0.1
    assert weights[..., middle, band].min() > 0.8
    others = torch.cat([weights[..., :band], weights[..., band + 1 :]], dim=-1)
    assert others.mean() < 0.02  # the noise's strongest bins seldom stand out as partials


def test_the_placement_loss_is_zero_where_the_head_writes_the_partial_and_counts_bins_off():
    audio = torch.from_numpy(sine(2000.0, 16 * 512, amplitude=0.2))[None]
    target = frame_spectra(audio, 2048, 512)[..., 1:]
    positions, levels, _ = losses.loudest_partials(target, 64)
    assert losses.partial_placement_loss(positions, levels, target).item() == pytest.approx(0, abs=1e-6)
    assert losses.partial_placement_loss(positions + 2, levels, target).item() == pytest.approx(2, abs=1e-4)
    # one band of 64 holds the sine: writing it 13 nats too quietly costs the full 13, not 13 / 64
    band = int(2000.0 / RATE * 2048 - 1) // 16
    quiet = levels.clone()
    quiet[..., band] -= 13
    assert losses.partial_placement_loss(positions, quiet, target).item() == pytest.approx(13, rel=0.05)


# -- training --------------------------------------------------------------------------------------


def train_steps(
    model: AudioModel, audio: torch.Tensor, steps: int, lr: float = 2e-3, **options
) -> list[dict[str, float]]:
    net = VaeRoundTrip(model.vae)
    disc = AudioDiscriminator(2, filters=4, n_ffts=(256, 128))
    config = AutoencoderTrainConfig(
        corpus=Path("."), out=Path("."), fft_sizes=(2048, 512, 128), lr=lr, **options
    )
    opt_vae = torch.optim.Adam(net.parameters(), lr=config.lr, betas=(0.8, 0.99))
    opt_disc = torch.optim.Adam(disc.parameters(), lr=1e-3, betas=(0.8, 0.99))
    frames = (
        model.config.autoencoder.latent_dim,
        audio.shape[-1] // model.config.autoencoder.downsampling_ratio,
    )
    generator = torch.Generator().manual_seed(0)
    return [
        autoencoder_step(
            net, disc, opt_vae, opt_disc, audio, torch.randn(len(audio), *frames, generator=generator),
            config, False, RATE,
        )
        for _ in range(steps)
    ]  # fmt: skip


@pytest.mark.parametrize("changes", [{}, BANDED, PARTIALS], ids=["linear head", "band head", "partial head"])
def test_stft_autoencoder_losses_fall_on_a_fixed_batch(changes):
    torch.manual_seed(0)
    model = AudioModel(ModelConfig.from_dict(tiny_stft_config(**changes)))
    audio = torch.stack([torch.from_numpy(sine(f, 32 * 512)) for f in (220, 1320)])
    weights = {"mel_weight": 1.0, "phase_weight": 1.0, "magnitude_weight": 1.0, "low_band_weight": 0.1}
    history = train_steps(model, audio, 30, partial_weight=1.0, **weights)
    assert all(math.isfinite(v) for step in history for v in step.values())
    assert {"stft", "mel", "phasor", "magnitude", "low_band", "kl"} <= set(history[0])
    names = ["stft", "mel", "phasor", "magnitude"] + (["partial"] if changes is PARTIALS else [])
    assert ("partial" in history[0]) == (changes is PARTIALS)  # only a decoder with the head has it
    for name in names:
        assert history[-1][name] < 0.9 * history[0][name], name


def test_a_briefly_trained_tiny_stft_autoencoder_brings_a_sine_closer():
    torch.manual_seed(0)
    model = AudioModel(ModelConfig.from_dict(tiny_stft_config()))
    tone = sine(330, 32 * 512)
    audio = torch.from_numpy(tone)[None]

    def error() -> tuple[float, float]:
        with torch.no_grad():
            copy = model.vae.decode(model.vae.encode(audio))[0].numpy()
        spectral = losses.multi_resolution_stft_loss(torch.from_numpy(copy)[None], audio).item()
        return spectral, abs(sound.cents(sound.dominant_frequency(copy, RATE), 330))

    before = error()
    train_steps(model, audio, 200, lr=4e-3, mel_weight=1.0, phase_weight=1.0)
    after = error()
    assert after[0] < 0.5 * before[0]
    assert after[1] < 10 < before[1]  # it comes back at its own pitch


def test_the_written_magnitude_loss_reaches_a_partial_written_far_too_quietly():
    """A partial written 15 nats too quiet is only leakage in the output's STFT, so a loss on the
    output barely moves it; the loss on the written log magnitudes pulls it as hard as any bin."""
    noise = 0.01 * np.random.default_rng(0).standard_normal((2, 32 * 512)).astype(np.float32)
    audio = torch.from_numpy(sine(2005, 32 * 512) + noise)
    target = frame_spectra(audio[None], 2048, 512)
    written = target.abs().clamp_min(1e-8).log()[..., 1:].clone()
    peak = round(2005 / RATE * 2048) - 1  # the written bins start at the 1st
    written[..., peak - 3 : peak + 4] -= 15
    written[..., 200] += 1  # an ordinary bin, a little too loud
    written.requires_grad_(True)
    spectra = torch.polar(torch.nn.functional.pad(written, (1, 0), value=-30.0).exp(), target.angle())
    output = overlap_add(spectra, 2048, 512)
    pulls = {}
    for name, loss in (
        ("output", losses.multi_resolution_stft_loss(output, audio[None], (2048, 512, 128))),
        ("written", losses.log_magnitude_loss(written, target[..., 1:])),
    ):
        (gradient,) = torch.autograd.grad(loss, written)
        middle = gradient[..., 8:-8, :].abs().mean(dim=(0, 1, 2))
        pulls[name] = (middle[peak] / middle[200]).item()
    assert pulls["output"] < 0.01
    assert pulls["written"] == pytest.approx(1.0)


def test_the_written_magnitude_loss_leaves_the_decoder_free_below_the_floor():
    quiet = torch.full((1, 4), 1e-5, dtype=torch.complex64)
    assert losses.log_magnitude_loss(torch.full((1, 4), -20.0), quiet).item() == 0  # both inaudible
    above = torch.full((1, 4), math.log(1e-3) + 2)
    assert losses.log_magnitude_loss(above, quiet).item() == pytest.approx(2)
    loud = torch.full((1, 4), 2.0, dtype=torch.complex64)
    assert losses.log_magnitude_loss(torch.full((1, 4), math.log(2.0)), loud).item() == pytest.approx(
        0, abs=1e-6
    )
    assert losses.log_magnitude_loss(torch.full((1, 4), -20.0), loud).item() == pytest.approx(
        20 + math.log(2)
    )


def test_phase_loss_is_zero_for_equal_audio_and_counts_only_what_is_heard():
    rng = np.random.default_rng(0)
    audio = torch.from_numpy(rng.standard_normal((1, 2, 8192)).astype(np.float32))
    assert losses.phase_loss(audio, audio).item() < 1e-6
    assert losses.phase_loss(audio, 3 * audio).item() < 1e-6  # level is the magnitude losses' business
    flipped = losses.phase_loss(-audio, audio).item()  # every phase off by π, every difference right
    assert flipped == pytest.approx(2 / 3, abs=1e-3)
    # a shifted tone: each frame's phase is wrong but its advance is right, so pitch costs nothing
    tone, later = (torch.from_numpy(sine(440, RATE, phase=p))[None] for p in (0.0, 1.0))
    assert losses.phase_loss(later, tone).item() == pytest.approx((1 - math.cos(1.0)) / 3, abs=0.02)
    # a tone a semitone off: its frame-to-frame advance is wrong too
    sharp = torch.from_numpy(sine(440 * 2 ** (1 / 12), RATE, phase=0.0))[None]
    assert losses.phase_loss(sharp, tone).item() > 0.2


# -- measures with known answers ---------------------------------------------------------------------


@pytest.mark.parametrize("freq", [40.0, 97.3, 440.0, 1234.5, 4000.0])
def test_a_clean_sine_is_read_to_its_own_pitch_and_has_no_comb(freq):
    tone = sine(freq, 2 * RATE)
    assert abs(sound.cents(sound.dominant_frequency(tone, RATE), freq)) < 0.05
    assert sound.comb_score([tone], RATE, RATE / 1024) == 0


def test_a_planted_frame_rate_comb_scores_high_and_noise_scores_chance():
    rng = np.random.default_rng(1)
    t = np.arange(2 * RATE) / RATE
    noises = [0.1 * rng.standard_normal((2, len(t))) for _ in range(8)]
    comb = sum(0.02 * np.sin(2 * np.pi * k * RATE / 1024 * t + k) for k in range(2, 110))
    assert sound.comb_score([n + comb for n in noises], RATE, RATE / 1024) > 0.9
    assert sound.comb_score(noises, RATE, RATE / 1024) < 0.2
    # the multiples of rate / 512 are on the same grid
    hum = sum(0.02 * np.sin(2 * np.pi * k * RATE / 512 * t) for k in range(1, 50))
    assert sound.comb_score([noises[0] + hum], RATE, RATE / 1024) > 0.9


def test_a_note_moved_by_a_few_cents_is_measured_by_its_partials():
    t = np.arange(int(1.5 * RATE)) / RATE

    def note(f0: float) -> np.ndarray:
        # a weak fundamental under strong upper partials, as a low bass note has
        partials = sum(
            a * np.sin(2 * np.pi * k * f0 * t) for k, a in ((1, 0.05), (2, 0.4), (3, 0.3), (4, 0.1))
        )
        return np.repeat(partials[None], 2, axis=0)

    f0 = 41.2
    for shift in (0.0, 7.0, -25.0):
        moved = note(f0 * 2 ** (shift / 1200))
        assert sound.note_pitch_error_cents(note(f0), moved, RATE, f0) == pytest.approx(shift, abs=0.5)
    # partials snapped to the nearest multiple of rate / 1024, as a ringing decoder puts them
    grid = RATE / 1024
    snapped = sum(
        a * np.sin(2 * np.pi * round(k * f0 / grid) * grid * t) for k, a in ((1, 0.05), (2, 0.4), (3, 0.3))
    )
    expected = sound.cents(round(2 * f0 / grid) * grid, 2 * f0)  # the loudest partial, the 2nd
    measured = sound.note_pitch_error_cents(note(f0), np.repeat(snapped[None], 2, axis=0), RATE, f0)
    assert measured == pytest.approx(expected, abs=0.5) and abs(measured) > 10


def test_dc_si_sdr_and_distances_have_their_known_values():
    rng = np.random.default_rng(2)
    audio = 0.1 * rng.standard_normal((2, RATE))
    assert sound.dc_offset_dbfs(audio + 0.01) == pytest.approx(-40, abs=0.5)
    assert sound.dc_offset_dbfs(np.zeros((2, 100))) == -math.inf
    assert sound.si_sdr_db(audio, 0.5 * audio) > 100  # gain does not count
    noisy = audio + 0.1 * rng.standard_normal(audio.shape)
    assert sound.si_sdr_db(audio, noisy) == pytest.approx(0, abs=0.3)


def test_in_bfloat16_the_decoder_trunk_goes_half_and_writes_the_same_spectra(tmp_path):
    """The precision policy puts an STFT decoder's trunk and heads in bfloat16 beside the denoiser,
    their LayerNorms and the spectra, phase noise and inverse STFT in float32; bf16's rounding then
    moves each bin by a small relative amount, not by a floor of error under quiet bins."""
    folder = make_model_folder(tmp_path / "model", tiny_stft_config(**BANDED, **PARTIALS))
    reference, half = load_model(folder), load_model(folder)
    for model in (reference, half):
        model.vae.decoder.partial_head.out.bias.data.fill_(-1.0)  # partials as loud as the trunk's bins
    place_model(half, torch.device("cpu"), torch.bfloat16)
    trunk = half.vae.decoder.trunk
    block = trunk.blocks[0]
    assert trunk.proj_out.weight.dtype == block.mix.weight.dtype == block.up.weight.dtype == torch.bfloat16
    assert (
        half.vae.decoder.band_head.up.weight.dtype == half.vae.decoder.band_head.out.dtype == torch.bfloat16
    )
    assert half.vae.decoder.partial_head.read[0].weight.dtype == torch.bfloat16
    assert trunk.norm_out.weight.dtype == block.norm.weight.dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in half.vae.encoder.parameters())
    latents = torch.randn(1, half.vae.latent_dim, 32, generator=torch.Generator().manual_seed(3))
    latents[..., 16:] *= 0.01  # a quiet second half
    with torch.no_grad():
        expected, actual = reference.vae.decode(latents), half.vae.decode(latents)
    assert actual.dtype == torch.float32 and not torch.equal(actual, expected)
    decoder = half.vae.decoder
    magnitudes = [frame_spectra(audio, decoder.n_fft, decoder.hop).abs() for audio in (expected, actual)]
    ratio_db = 20 * (magnitudes[1] / magnitudes[0]).log10().abs()
    audible = magnitudes[0] > 1e-4 * magnitudes[0].max()
    assert ratio_db[audible].median() < 0.2
    assert ratio_db[..., 20:, :][audible[..., 20:, :]].median() < 0.2  # in the quiet frames too
