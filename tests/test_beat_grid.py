"""The beat grid: a DiT that is told where the beats of a stated tempo fall, from the prompt to the
engine's takes and through training's random crops."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import soundfile as sf
import torch

from studio.data.manifest import Clip
from studio.engine import Engine
from studio.errors import ModelConfigError
from studio.models import AudioModel, ModelConfig, load_model, save_model
from studio.models.dit import DiT, beat_features
from studio.request import Request
from studio.training.data import LatentCache, LatentClips
from studio.training.flow import parameter_groups
from studio.training.loop import train_only
from tests.tiny import make_model_folder, tiny_config

BEAT_CONFIG = tiny_config(**{"model.diffusion.config.beat_grid": True})


def test_beat_features_put_every_beat_and_every_bar_on_phase_zero():
    # 4 frames a beat, starting on a downbeat; a second row with no tempo.
    features = beat_features(torch.tensor([[0.25, 0.0], [0.0, 0.0]]), frames=33)
    beat_sin, beat_cos, _, bar_cos = features[0]
    on_beats = torch.arange(0, 33, 4)
    assert torch.allclose(beat_cos[on_beats], torch.ones(len(on_beats)), atol=1e-5)
    assert torch.allclose(beat_sin[on_beats], torch.zeros(len(on_beats)), atol=1e-5)
    assert beat_cos[2] == pytest.approx(-1.0, abs=1e-5)  # half-way through a beat
    assert bar_cos[[0, 16, 32]].tolist() == pytest.approx([1.0, 1.0, 1.0], abs=1e-5)
    assert bar_cos[8] == pytest.approx(-1.0, abs=1e-5)  # beat 3 of the bar
    assert torch.equal(features[1], torch.zeros(4, 33))


def test_a_window_cut_later_in_the_sound_starts_later_in_the_bar():
    late = beat_features(torch.tensor([[0.25, 1.5]]), frames=8)[0]  # 1.5 beats in
    early = beat_features(torch.tensor([[0.25, 0.0]]), frames=14)[0]
    assert torch.allclose(late, early[:, 6:], atol=1e-5)


def test_the_grid_starts_at_zero_so_a_model_without_one_warm_starts_unchanged():
    torch.manual_seed(0)
    with_grid = DiT(8, 64, 2, 2, context_dim=64, global_dim=64, patch_size=2, beat_grid=True)
    without = DiT(8, 64, 2, 2, context_dim=64, global_dim=64, patch_size=2)
    without.load_state_dict({k: v for k, v in with_grid.state_dict().items() if not k.startswith("beat_in")})
    x, t = torch.randn(2, 8, 12), torch.tensor([0.3, 0.7])
    context, global_cond = torch.randn(2, 5, 64), torch.randn(2, 64)
    beats = torch.tensor([[0.3, 0.0], [0.2, 0.5]])
    assert torch.equal(with_grid(x, t, context, global_cond, beats), without(x, t, context, global_cond))
    torch.nn.init.normal_(with_grid.beat_in.weight)
    assert not torch.allclose(
        with_grid(x, t, context, global_cond, beats), without(x, t, context, global_cond)
    )


def test_a_prompt_states_the_tempo_and_the_crop_says_where_the_window_starts():
    model = AudioModel(ModelConfig.from_dict(BEAT_CONFIG))
    frame_seconds = 2048 / 44100
    cond = model.condition(
        ["house drum loop at 120 BPM", "drum loop 90 bpm", "a soft pad"], [1.0] * 3, starts=[0.0, 1.0, 2.0]
    )
    expected = torch.tensor([[2 * frame_seconds, 0.0], [1.5 * frame_seconds, 1.5], [0.0, 0.0]])
    assert torch.allclose(cond.beats, expected)
    assert torch.equal(model.condition(["drum loop at 120 BPM"], [1.0]).beats[:, 1], torch.zeros(1))
    # The grid belongs to the prompt: CFG's other branch and conditioning dropout go without it.
    assert torch.equal(cond.unconditional().beats, torch.zeros(3, 2))
    kept = cond.dropped(torch.tensor([1.0, 0.0, 1.0])).beats
    assert torch.equal(kept[1], torch.zeros(2)) and torch.equal(kept[0], cond.beats[0])
    assert (
        AudioModel(ModelConfig.from_dict(tiny_config())).condition(["loop at 120 BPM"], [1.0]).beats is None
    )


def test_beat_grid_must_be_true_or_false():
    with pytest.raises(ModelConfigError, match="beat_grid"):
        ModelConfig.from_dict(tiny_config(**{"model.diffusion.config.beat_grid": "yes"}))


def test_a_conditioner_cannot_take_the_name_the_grid_travels_under():
    config = tiny_config(**{"model.diffusion.config.beat_grid": True})
    prompt = config["model"]["conditioning"]["configs"][0]
    prompt["id"] = "beats"
    diffusion = config["model"]["diffusion"]
    for ids in ("cross_attention_cond_ids", "global_cond_ids"):
        diffusion[ids] = ["beats" if i == "prompt" else i for i in diffusion.get(ids, [])]
    with pytest.raises(ModelConfigError, match=r"configs\[0\]\.id' is 'beats'.*rename"):
        ModelConfig.from_dict(config)
    diffusion["config"]["beat_grid"] = False  # without a grid the name is free
    assert ModelConfig.from_dict(config).conditioners[0].id == "beats"


def test_the_engine_reads_the_tempo_from_the_prompt_and_the_grid_survives_a_checkpoint(tmp_path):
    folder = make_model_folder(tmp_path / "beat", BEAT_CONFIG)
    model = load_model(folder)
    torch.nn.init.normal_(model.dit.beat_in.weight, std=0.5)
    save_model(model, folder)
    assert torch.equal(load_model(folder).dit.beat_in.weight, model.dit.beat_in.weight)
    torch.nn.init.zeros_(model.dit.beat_in.weight)
    deaf = save_model(model, tmp_path / "deaf")

    def takes(model_folder, prompt: str) -> list[np.ndarray]:
        with Engine(model_folder, batch_window_s=0.0) as engine:
            request = Request(prompt, seconds=1.0, seed=7, steps=2, cfg=2.0, variations=2)
            return [take.audio for take in engine.generate(request).takes]

    loop = "drum loop at 120 BPM"
    for with_grid, without in zip(takes(folder, loop), takes(deaf, loop), strict=True):
        assert np.abs(with_grid - without).max() > 1e-4
    for with_grid, without in zip(takes(folder, "a drum loop"), takes(deaf, "a drum loop"), strict=True):
        assert np.array_equal(with_grid, without)


def test_grid_guidance_steers_only_guided_takes_of_prompts_that_state_a_tempo(tmp_path, monkeypatch):
    plain = make_model_folder(tmp_path / "plain", BEAT_CONFIG)
    model = load_model(plain)
    torch.nn.init.normal_(model.dit.beat_in.weight, std=0.5)
    save_model(model, plain)
    steered = tmp_path / "steered"
    save_model(model, steered)
    config_file = steered / "model_config.json"
    config_file.write_text(json.dumps(json.loads(config_file.read_text()) | {"grid_guidance": 6.0}))
    branches: list[int] = []
    velocities = AudioModel.velocities
    monkeypatch.setattr(
        AudioModel,
        "velocities",
        lambda self, x, t, conds: branches.append(len(conds)) or velocities(self, x, t, conds),
    )

    def takes(folder, prompt: str, cfg: float) -> list[np.ndarray]:
        branches.clear()
        with Engine(folder, batch_window_s=0.0) as engine:
            request = Request(prompt, seconds=1.0, seed=7, steps=3, cfg=cfg, variations=2)
            return [take.audio for take in engine.generate(request).takes]

    loop = "drum loop at 120 BPM"
    for a, b in zip(takes(plain, loop, 2.0), takes(steered, loop, 2.0), strict=True):
        assert np.abs(a - b).max() > 1e-4
    assert branches == [3, 3, 3]  # a third branch at every guided step
    for prompt, cfg in (("a drum loop", 2.0), (loop, 1.0)):  # no tempo stated; no guidance at all
        for a, b in zip(takes(plain, prompt, cfg), takes(steered, prompt, cfg), strict=True):
            assert np.array_equal(a, b)
        assert 3 not in branches


def test_grid_guidance_needs_a_grid_and_a_sane_scale():
    with pytest.raises(ModelConfigError, match=r"grid_guidance.*beat_grid"):
        ModelConfig.from_dict(tiny_config(grid_guidance=4.0))
    with pytest.raises(ModelConfigError, match=r"grid_guidance.*between 0"):
        ModelConfig.from_dict(tiny_config(**{"model.diffusion.config.beat_grid": True, "grid_guidance": -1}))
    assert ModelConfig.from_dict(tiny_config(**{"model.diffusion.config.beat_grid": True})).grid_guidance == 0


def test_a_crop_reports_where_it_starts(tmp_path):
    clip_seconds, sample_size = 5.0, BEAT_CONFIG["sample_size"]
    rng = np.random.default_rng(0)
    sf.write(tmp_path / "loop.wav", 0.3 * rng.standard_normal((int(clip_seconds * 44100), 2)), 44100)
    clip = Clip(id="loop", path="loop.wav", caption="drum loop at 120 BPM", split="train", folder=tmp_path)
    model = AudioModel(ModelConfig.from_dict(BEAT_CONFIG))
    cache = LatentCache.for_vae(tmp_path / "cache", model.vae, 44100, 2, sample_size)
    cache.encode(clip, model.vae, torch.device("cpu"))
    data = LatentClips([clip], cache, sample_size // 2048, 2048)
    window_seconds = sample_size / 44100
    starts = [data[(0, seed)]["start"] for seed in range(30)]
    frame_seconds = 2048 / 44100
    assert all(0 <= s <= clip_seconds - window_seconds + 1e-6 for s in starts)
    assert all(math.isclose(s / frame_seconds, round(s / frame_seconds), abs_tol=1e-6) for s in starts)
    assert len(set(starts)) > 5


def test_the_grid_projection_can_learn_faster_than_the_rest_of_the_dit():
    model = AudioModel(ModelConfig.from_dict(BEAT_CONFIG))
    trainable = train_only(model, model.dit, model.conditioners)
    assert parameter_groups(model, trainable, 1e-3, 1.0) == [{"params": trainable}]
    rest, grid = parameter_groups(model, trainable, 1e-3, 10.0)
    assert grid["params"] == [model.dit.beat_in.weight] and grid["lr"] == pytest.approx(1e-2)
    assert len(rest["params"]) == len(trainable) - 1 and "lr" not in rest

    optimizer = torch.optim.AdamW([rest, grid], lr=1e-3, weight_decay=0.0)
    before = {id(p): p.detach().clone() for p in trainable}
    for p in trainable:
        p.grad = torch.ones_like(p)
    optimizer.step()
    moved = {id(p): (before[id(p)] - p.detach()).abs().max().item() for p in trainable}
    assert moved[id(model.dit.beat_in.weight)] == pytest.approx(1e-2, rel=1e-3)  # Adam's first step: lr
    assert max(v for k, v in moved.items() if k != id(model.dit.beat_in.weight)) == pytest.approx(
        1e-3, rel=1e-3
    )

    plain = AudioModel(ModelConfig.from_dict(tiny_config()))
    plain_trainable = train_only(plain, plain.dit, plain.conditioners)
    assert parameter_groups(plain, plain_trainable, 1e-3, 10.0) == [{"params": plain_trainable}]
