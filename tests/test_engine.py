"""The engine as a front-end uses it: variations, diversity, seeds, batching, init audio, errors."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import soundfile as sf
import torch

from studio import sampling
from studio.engine import Engine, pick_device
from studio.errors import AudioError, ModelConfigError, RequestError
from studio.request import Request
from tests.tiny import make_model_folder, tiny_config, tiny_stft_config, write_config


def distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((a - b) ** 2)))


def test_takes_have_the_asked_length_rate_and_channels(engine):
    result = engine.generate(Request("soft rain", seconds=0.5, seed=1, variations=2))
    assert len(result.takes) == 2
    for take in result.takes:
        assert take.audio.shape == (2, round(0.5 * 44100))
        assert take.audio.dtype == np.float32 and np.isfinite(take.audio).all()
        assert take.sample_rate == 44100
    assert result.device == "cpu"


def test_diversity_zero_gives_identical_takes(engine):
    takes = engine.generate(Request("kick", seconds=0.4, seed=11, variations=4, diversity=0.0)).takes
    for take in takes[1:]:
        assert np.array_equal(take.audio, takes[0].audio)


def test_takes_differ_more_as_diversity_rises(engine):
    spread = []
    for diversity in (0.0, 0.3, 1.0):
        takes = engine.generate(
            Request("kick", seconds=0.4, seed=11, variations=3, diversity=diversity)
        ).takes
        spread.append(np.mean([distance(takes[0].audio, t.audio) for t in takes[1:]]))
    assert spread[0] == 0
    assert spread[0] < spread[1] < spread[2]


def test_same_seed_same_audio_and_params_reproduce_a_take(engine):
    first = engine.generate(Request("metal hit", seconds=0.3, seed=42, variations=3, diversity=0.6))
    again = engine.generate(Request("metal hit", seconds=0.3, seed=42, variations=3, diversity=0.6))
    for a, b in zip(first.takes, again.takes, strict=True):
        assert np.array_equal(a.audio, b.audio)
    third = first.takes[2]
    assert (third.params.seed, third.params.take_seed, third.params.take_index) == (42, 44, 2)
    alone = engine.generate(Request.from_params(third.params.to_dict())).takes[0]
    np.testing.assert_allclose(alone.audio, third.audio, atol=1e-5)


def test_random_seed_is_reported(engine):
    take = engine.generate(Request("noise", seconds=0.2, seed=-1)).takes[0]
    again = engine.generate(Request.from_params(take.params.to_dict())).takes[0]
    np.testing.assert_allclose(again.audio, take.audio, atol=1e-5)


def test_prompt_and_seconds_condition_the_output(engine):
    a = engine.generate(Request("deep kick", seconds=0.5, seed=3)).takes[0].audio
    b = engine.generate(Request("glass shatter", seconds=0.5, seed=3)).takes[0].audio
    c = engine.generate(Request("deep kick", seconds=0.25, seed=3)).takes[0].audio
    assert distance(a, b) > 0
    assert c.shape[1] == round(0.25 * 44100)
    assert distance(a[:, : c.shape[1]], c) > 0  # seconds_total is a condition, not only a cut


def test_negative_prompt_changes_guided_output(engine):
    plain = engine.generate(Request("pad", seconds=0.3, seed=5, cfg=4)).takes[0].audio
    negative = (
        engine.generate(Request("pad", seconds=0.3, seed=5, cfg=4, negative_prompt="hiss")).takes[0].audio
    )
    unguided = engine.generate(Request("pad", seconds=0.3, seed=5)).takes[0].audio
    assert distance(plain, negative) > 0 and distance(plain, unguided) > 0


def test_euler_sampler(engine):
    take = engine.generate(Request("riser", seconds=0.3, seed=5, sampler="euler", steps=4)).takes[0]
    assert take.params.sampler == "euler" and take.params.steps == 4


def test_a_model_names_the_sampler_and_steps_a_request_without_them_gets(tmp_path):
    flow = {"model.diffusion.diffusion_objective": "rectified_flow"}
    config = tiny_config(default_sampler="pingpong", default_steps=3, **flow)
    with Engine(make_model_folder(tmp_path / "flow", config), device="cpu") as engine:
        bare = engine.generate(Request("riser", seconds=0.3, seed=5)).takes[0].params
        euler = engine.generate(Request("riser", seconds=0.3, seed=5, sampler="euler")).takes[0].params
    assert (bare.sampler, bare.steps) == ("pingpong", 3)
    assert (euler.sampler, euler.steps) == ("euler", 50)  # another sampler keeps its own usual count


def test_guidance_applies_only_within_the_models_guidance_interval(tmp_path):
    folder = make_model_folder(tmp_path / "model")
    request = Request("riser", seconds=0.3, seed=5, cfg=4.0, steps=8)

    def take(**changes) -> np.ndarray:
        write_config(folder, tiny_config(**changes))
        with Engine(folder, device="cpu", warmup=False) as engine:
            return engine.generate(request).takes[0].audio

    everywhere, whole_range = take(), take(guidance_interval=[0, 1])
    late, first_two = take(guidance_interval=[0, 0.6]), take(guidance_interval=[0.99, 1.0])
    assert np.array_equal(everywhere, whole_range)
    assert not np.allclose(late, everywhere) and not np.allclose(late, first_two)
    with Engine(folder, device="cpu", warmup=False) as engine:
        unguided = engine.generate(Request("riser", seconds=0.3, seed=5, cfg=1.0, steps=8)).takes[0].audio
    assert not np.allclose(first_two, unguided)  # t = 1 and 0.993 lie within [0.99, 1]


def test_a_one_step_model_generates_in_one_unguided_evaluation(tmp_path):
    config = tiny_config(default_sampler="onestep", default_cfg=1.0)
    with Engine(make_model_folder(tmp_path / "swift", config), device="cpu", warmup=False) as engine:
        calls = []
        velocity = engine.model.velocity
        engine.model.velocity = lambda x, t, cond: calls.append(float(t[0])) or velocity(x, t, cond)
        request = Request("kick", seconds=0.3, seed=7, variations=3)
        takes = engine.generate(request).takes
        assert calls == [1.0]  # one batched evaluation for all three takes, at t = 1, no CFG pair
        engine.model.velocity = velocity
        same = engine.generate(Request("kick", seconds=0.3, seed=7, variations=3, diversity=0.0)).takes
        pingpong = engine.generate(Request("kick", seconds=0.3, seed=7, sampler="pingpong", steps=1))
        for wrong, words in (({"steps": 2}, "exactly 1 step"), ({"cfg": 4.0}, "runs unguided")):
            with pytest.raises(RequestError, match=words):
                engine.generate(Request("kick", seconds=0.3, sampler="onestep", **wrong))
        # A preset's or a slider's steps and cfg do not apply to a one-step model: one step runs.
        preset = engine.generate(Request("kick", seconds=0.3, seed=7, variations=3, steps=8, cfg=4.0)).takes
    assert (takes[0].params.sampler, takes[0].params.steps, takes[0].params.cfg) == ("onestep", 1, 1.0)
    assert (preset[0].params.steps, preset[0].params.cfg) == (1, 1.0)
    assert np.array_equal(preset[0].audio, takes[0].audio)
    assert not np.allclose(takes[0].audio, takes[1].audio)  # seeds and diversity as for any sampler
    assert all(np.array_equal(take.audio, same[0].audio) for take in same)
    # One unguided ping-pong step is the same single evaluation x - v(x, 1).
    np.testing.assert_allclose(pingpong.takes[0].audio, takes[0].audio, atol=1e-5)


def test_every_tensor_operation_runs_on_the_engines_own_thread(tmp_path, monkeypatch):
    """A second thread running torch gives OpenMP a second team, and on two cores every take gets
    1.4-1.7x slower (reports/bench/engine-thread-cpu-2026-12-06.json): loading and warm-up too."""
    import studio.engine as engine_module

    threads = set()
    load, velocity = engine_module.load_model, engine_module.AudioModel.velocity

    def loading(*args, **kwargs):
        threads.add(threading.current_thread().name)
        return load(*args, **kwargs)

    def stepping(self, *args, **kwargs):
        threads.add(threading.current_thread().name)
        return velocity(self, *args, **kwargs)

    monkeypatch.setattr(engine_module, "load_model", loading)
    monkeypatch.setattr(engine_module.AudioModel, "velocity", stepping)
    with Engine(make_model_folder(tmp_path / "model"), device="cpu") as engine:  # warms up
        engine.generate(Request("kick", seconds=0.2, seed=1))
    assert threads == {"studio-engine"}


@pytest.mark.parametrize(
    ("changes", "wrong"),
    [
        ({"default_sampler": "dpm"}, "default_sampler 'dpm'"),
        ({"default_steps": 0}, "default_steps"),
        ({"guidance_interval": [0.8, 0.2]}, "guidance_interval"),
        ({"guidance_interval": [0, 1.5]}, "guidance_interval"),
    ],
)
def test_a_model_config_with_an_unknown_default_sampler_or_no_steps_is_refused(tmp_path, changes, wrong):
    folder = make_model_folder(tmp_path / "model")
    write_config(folder, tiny_config(**changes))
    with pytest.raises(ModelConfigError, match=wrong):
        Engine(folder, device="cpu")


def write_tone(path, rate: int, channels: int, seconds: float) -> None:
    t = np.arange(int(rate * seconds)) / rate
    tone = 0.5 * np.sin(2 * np.pi * 220 * t)
    sf.write(path, np.stack([tone] * channels, axis=1), rate)


def test_init_audio_is_resampled_converted_and_cut(engine, tmp_path):
    path = tmp_path / "mono-22k.wav"
    write_tone(path, 22050, 1, 3.0)  # longer than the model's 1.49 s
    request = Request("restyle", seconds=0.5, seed=9, init_audio=str(path), strength=0.5)
    result = engine.generate(request)
    report = result.init_report
    assert report.resampled_from == 22050 and report.channels_from == 1 and report.trimmed
    assert result.takes[0].params.init_audio == str(path.resolve())
    assert result.takes[0].params.strength == 0.5
    again = engine.generate(request)
    assert np.array_equal(again.takes[0].audio, result.takes[0].audio)
    without = engine.generate(Request("restyle", seconds=0.5, seed=9)).takes[0].audio
    assert distance(without, result.takes[0].audio) > 0


def test_init_audio_from_an_array(engine):
    audio = np.random.default_rng(0).normal(size=(44100, 2)).astype(np.float32) * 0.1
    take = engine.generate(Request("x", seconds=0.3, seed=1, init_audio=(audio, 44100), strength=0.3)).takes[
        0
    ]
    assert take.params.init_audio == "<array>"


def test_init_audio_that_is_not_audio(engine, tmp_path):
    bogus = tmp_path / "notes.wav"
    bogus.write_text("this is not audio")
    with pytest.raises(AudioError, match="not a readable audio file"):
        engine.generate(Request("x", init_audio=str(bogus)))
    with pytest.raises(AudioError, match="no such audio file"):
        engine.generate(Request("x", init_audio=str(tmp_path / "absent.wav")))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"seconds": -1}, "(?s)seconds must be more than 0.*give a length in seconds"),
        ({"seconds": 1e9}, "(?s)at most 1.49.*ask for a shorter take"),
        ({"seconds": float("nan")}, "seconds"),
        ({"steps": 0}, "steps"),
        ({"steps": 10_000}, "steps"),
        ({"variations": 0}, "variations"),
        ({"variations": 100}, "variations"),
        ({"diversity": 1.5}, "diversity"),
        ({"cfg": -2}, "cfg"),
        ({"seed": -7}, "seed"),
        ({"sampler": "ddim"}, "unknown sampler"),
        ({"init_audio": (np.zeros((2, 100)), 44100), "strength": 0}, "strength"),
    ],
)
def test_absurd_requests_are_refused_clearly(engine, changes, message):
    with pytest.raises(RequestError, match=message):
        engine.generate(Request("x", **changes))


def test_requests_waiting_together_run_as_one_batch(tiny_model_dir):
    requests = [Request(f"sound {i}", seconds=0.3, seed=i, variations=2) for i in range(3)]
    with Engine(tiny_model_dir, warmup=False, batch_window_s=0.5) as engine:
        solo = [engine.generate(r) for r in requests]
        engine.batch_log.clear()
        results: list = [None] * 3
        threads = [
            threading.Thread(target=lambda i=i: results.__setitem__(i, engine.generate(requests[i])))
            for i in range(3)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert list(engine.batch_log) == [(3, 6)]
    for alone, batched in zip(solo, results, strict=True):
        assert batched.batch_size == 6
        for a, b in zip(alone.takes, batched.takes, strict=True):
            np.testing.assert_allclose(a.audio, b.audio, atol=1e-5)


def test_incompatible_requests_run_in_separate_batches(tiny_model_dir):
    with Engine(tiny_model_dir, warmup=False, batch_window_s=0.3) as engine:
        futures = [
            engine.submit(Request("a", seconds=0.2, seed=1, steps=2)),
            engine.submit(Request("b", seconds=0.2, seed=1, steps=3)),
            engine.submit(Request("c", seconds=0.2, seed=1, steps=2)),
        ]
        steps = [f.result(timeout=60).takes[0].params.steps for f in futures]
        assert steps == [2, 3, 2]
        assert sorted(engine.batch_log) == [(1, 1), (2, 2)]


def test_engine_keeps_serving_after_a_failed_batch(engine):
    with pytest.raises(RequestError):
        engine.generate(Request("x", steps=-1))
    assert engine.generate(Request("fine", seconds=0.2, seed=1)).takes


def test_device_choice_on_this_machine():
    assert pick_device().type in {"cpu", "cuda", "mps"}
    assert pick_device("cpu").type == "cpu"


def test_a_model_with_an_stft_decoder_keeps_seeds_batches_and_diversity(tmp_path):
    """Its decoder draws the phases it is unsure of from each take's own noise streams."""
    folder = make_model_folder(tmp_path / "stft", tiny_stft_config())
    with Engine(folder, warmup=False, batch_window_s=0.0) as engine:
        same = engine.generate(Request("rain", seconds=0.5, seed=3, variations=3, diversity=0.0)).takes
        assert all(np.array_equal(t.audio, same[0].audio) for t in same[1:])
        takes = engine.generate(Request("rain", seconds=0.5, seed=3, variations=3, diversity=1.0)).takes
        alone = engine.generate(Request.from_params(takes[2].params.to_dict())).takes[0]
        np.testing.assert_allclose(alone.audio, takes[2].audio, atol=1e-5)
        assert distance(takes[0].audio, takes[1].audio) > 1e-3


def test_noise_drawn_up_front_is_the_noise_drawn_where_it_is_used(tmp_path):
    """The engine draws a batch's noise before sampling (one copy to a GPU); the takes are bit for
    bit those of drawing each noise at its step: start, every ping-pong re-noise, the phases."""
    folder = make_model_folder(tmp_path / "stft", tiny_stft_config())
    prompt, seconds, seed, steps, diversity = "hail on glass", 0.5, 8, 3, 0.5
    with Engine(folder, warmup=False) as engine:
        request = Request(
            prompt, seconds=seconds, seed=seed, steps=steps, cfg=1, variations=2, diversity=diversity
        )
        takes = engine.generate(request).takes
        model, config = engine.model, engine.config
    streams = [
        (torch.Generator().manual_seed(seed), torch.Generator().manual_seed(take.params.take_seed))
        for take in takes
    ]

    def draw(shape: tuple[int, ...]) -> torch.Tensor:
        return torch.stack([
            sampling.diversity_noise(
                torch.randn(shape, generator=anchor)[None], torch.randn(shape, generator=own)[None], diversity
            )[0]
            for anchor, own in streams
        ])  # fmt: skip

    latent_shape = (config.autoencoder.latent_dim, config.latent_length)
    with torch.inference_mode():
        cond = model.condition([prompt] * 2, [seconds] * 2)
        x = sampling.sample_pingpong(
            lambda x, t: model.velocity(x, t, cond),
            draw(latent_shape),
            sampling.logsnr_schedule(steps),
            lambda _: draw(latent_shape),
        )
        audio = model.vae.decode(x, draw(model.vae.phase_noise_shape(config.latent_length))).numpy()
    for row, take in enumerate(takes):
        assert np.array_equal(take.audio, audio[row, :, : take.audio.shape[1]])
