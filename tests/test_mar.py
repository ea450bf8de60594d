"""MAR models (AudioDEAR): energy score, decoding schedule, representation CFG, config, checkpoints,
training with each head and with distillation, and generation through the engine and the CLI."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from test_training import write_corpus
from tiny import make_model_folder, tiny_config, tiny_mar_config, write_config

from studio import cli, sampling
from studio.engine import Engine, NoiseSource
from studio.errors import CheckpointError, ModelConfigError, RequestError
from studio.models import MarModel, ModelConfig, load_model, save_model
from studio.models.mar import EnergyHead, FlowHead
from studio.models.registry import list_models, resolve_model
from studio.request import Request
from studio.training import cli as train_cli
from studio.training import losses
from studio.training.arc import ArcTrainConfig, train_arc
from studio.training.flow import FlowTrainConfig, train_flow
from studio.training.loop import TrainingError
from studio.training.mar import (
    MarDraws,
    MarTrainConfig,
    MaskedFrames,
    mar_model,
    random_mask,
    train_mar,
)

SAMPLE_SIZE = 16384  # 8 latent frames: ~0.37 s at 44.1 kHz
FRAMES = SAMPLE_SIZE // 2048
RUN = {"steps": 3, "batch_size": 2, "workers": 0, "lr": 1e-3, "log_every": 1, "val_every": 3}


def tiny_mar(head: str = "diffusion", seed: int = 0) -> MarModel:
    torch.manual_seed(seed)
    return MarModel(ModelConfig.from_dict(tiny_mar_config(head)))


def log_rows(run: Path, split: str = "train") -> list[dict]:
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    return [r for r in rows if r["split"] == split]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def vae_folder(tmp_path_factory) -> Path:
    """A diffusion model whose VAE and conditioners a new MAR model reuses."""
    return make_model_folder(tmp_path_factory.mktemp("vae") / "model", tiny_config(sample_size=SAMPLE_SIZE))


@pytest.fixture(scope="module")
def mar_config_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("config") / "model_config.json"
    path.write_text(json.dumps(tiny_mar_config("diffusion")))
    return path


@pytest.fixture(scope="module")
def mar_folder(tmp_path_factory) -> Path:
    """A random energy-head MAR model (untrained: for the engine's plumbing)."""
    return make_model_folder(tmp_path_factory.mktemp("mar") / "tiny-mar", tiny_mar_config("energy"))


@pytest.fixture(scope="module")
def mar_engine(mar_folder):
    with Engine(mar_folder, warmup=False) as engine:
        yield engine


@pytest.fixture(scope="module")
def teacher_folder(corpus, vae_folder, mar_config_file, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("teacher-run")
    return train_mar(MarTrainConfig(corpus=corpus, out=out, init=vae_folder, config=mar_config_file, **RUN))


# -- pure functions ------------------------------------------------------------------------------


def test_energy_score_on_a_hand_computed_case():
    x1 = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    x2 = torch.tensor([[3.0, 4.0], [1.0, 1.0]])
    y = torch.tensor([[0.0, 4.0], [1.0, 1.0]])
    # Row 0: ‖x1 − y‖ = 4, ‖x2 − y‖ = 3, ‖x1 − x2‖ = 5 → 2; row 1: all equal → 0.
    assert losses.energy_score_loss(x1, x2, y).item() == pytest.approx(1.0)
    # α = 2: 16 + 9 − 25 = 0 (at α = 2 the score only sees the mean; it is proper below 2)
    assert losses.energy_score_loss(x1, x2, y, alpha=2.0).item() == pytest.approx(0.0, abs=1e-6)
    twice = losses.energy_score_loss(x1[:1], x1[:1], y[:1])  # identical samples: 4 + 4 − 0
    assert twice.item() == pytest.approx(8.0)


def test_energy_score_is_minimised_by_the_data_distribution():
    """A one-step affine generator x = μ + Aε trained only with the energy score on samples of a
    correlated 2-D Gaussian recovers its mean and covariance."""
    generator = torch.Generator().manual_seed(0)
    mean = torch.tensor([1.0, -2.0])
    cov = torch.tensor([[1.0, 0.6], [0.6, 0.5]])
    chol = torch.linalg.cholesky(cov)
    mu = torch.zeros(2, requires_grad=True)
    a = torch.eye(2, requires_grad=True)
    optimizer = torch.optim.Adam([mu, a], lr=0.03)
    for step in range(600):
        y = mean + torch.randn(512, 2, generator=generator) @ chol.T
        e1, e2 = torch.randn(2, 512, 2, generator=generator)
        loss = losses.energy_score_loss(mu + e1 @ a.T, mu + e2 @ a.T, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step == 400:
            optimizer.param_groups[0]["lr"] = 0.005
    torch.testing.assert_close(mu.detach(), mean, atol=0.08, rtol=0)
    torch.testing.assert_close((a @ a.T).detach(), cov, atol=0.1, rtol=0)


@pytest.mark.parametrize(
    ("length", "iterations"), [(8, 8), (8, 4), (8, 3), (8, 1), (8, 20), (1, 1), (1, 5), (90, 8), (90, 90)]
)
def test_mask_schedule_fills_every_position_exactly_once(length, iterations):
    schedule = sampling.mask_schedule(length, iterations)
    assert len(schedule) == min(length, iterations)  # K clamped to L
    assert schedule[-1] == 0 and all(a > b for a, b in zip([length, *schedule], schedule, strict=False))

    filled = []

    def hidden(tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return mask[..., None].float()  # the head sees whether its position is still masked

    def head(z: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        assert (z == 1).all()  # a position is only ever filled while it is masked: at most once
        filled.append(len(z))
        return noise

    noise = torch.arange(2 * length * 3, dtype=torch.float32).view(2, length, 3) + 1
    order = torch.stack([sampling.decoding_order(length, torch.Generator().manual_seed(s)) for s in (1, 2)])
    tokens = sampling.sample_masked(hidden, head, noise, order, schedule)
    assert torch.equal(tokens, noise)  # and every position got the token made from its own noise
    assert sum(filled) == 2 * length and min(filled) >= 2  # at least one position per row and iteration


def test_mask_schedule_is_cosine():
    assert sampling.mask_schedule(8, 4) == [7, 5, 3, 0]  # floor(8 · cos(π/2 · k/4))
    assert sampling.mask_schedule(4, 4) == [3, 2, 1, 0]  # kept strictly decreasing
    with pytest.raises(ValueError):
        sampling.mask_schedule(8, 0)


def test_random_training_masks_cover_the_ratio_range():
    mask = random_mask(2000, 8, 0.7, torch.Generator().manual_seed(0))
    counts = mask.sum(1)
    assert counts.min() == 6 and counts.max() == 8  # ceil(0.7 · 8) … 8
    assert mask.float().mean(0).std() < 0.02  # every position equally likely


def test_representation_cfg():
    zc, zu = torch.randn(3, 5, 7), torch.randn(3, 5, 7)
    torch.testing.assert_close(sampling.representation_cfg(zc, zu, 1.0), zc)
    torch.testing.assert_close(sampling.representation_cfg(zc, zu, 0.0), zu)
    torch.testing.assert_close(sampling.representation_cfg(zc, zu, 3.0), 3 * zc - 2 * zu)


@pytest.mark.parametrize("head", ["diffusion", "energy"])
def test_guidance_at_scale_one_is_the_conditional_path(head):
    model = tiny_mar(head).eval()
    torch.nn.init.normal_(model.head.net.proj_out.weight, std=0.3)  # a flow head starts at zero velocity
    cond = model.condition(["kick", "glass"], [0.2, 0.3])
    noise = torch.randn(2, 8, FRAMES, generator=torch.Generator().manual_seed(0))
    order = torch.stack([sampling.decoding_order(FRAMES, torch.Generator().manual_seed(s)) for s in (4, 5)])
    with torch.inference_mode():
        plain = model.generate(cond, noise, order, 3)
        scale_one = model.generate(cond, noise, order, 3, cond.unconditional(), 1.0)
        guided = model.generate(cond, noise, order, 3, cond.unconditional(), 4.0)
    assert plain.shape == (2, 8, FRAMES)
    torch.testing.assert_close(scale_one, plain, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(guided, plain, atol=1e-3)


# -- config and checkpoint -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"model.mar.head.type": "gan"}, "supported: diffusion, energy"),
        ({"model.mar.head.width": 0}, r"model\.mar\.head\.width' must be more than 0"),
        ({"model.mar.io_channels": 4}, "must equal the autoencoder latent_dim"),
        ({"model.mar.mask_ratio_min": 0}, "mask_ratio_min"),
        ({"model.mar.num_heads": 2}, "narrower than 32"),
        ({"model.mar.global_cond_ids": ["prompt"]}, "only name number conditioners"),
        ({"model.mar.context_cond_ids": ["lyrics"]}, "unknown conditioners"),
        ({"model.mar.head": "energy"}, "should be dict"),
        ({"model_type": "mar"}, "Studio runs 'diffusion_cond' and 'mar_cond' models"),
    ],
)
def test_bad_mar_configs_are_refused_with_the_field_named(change, message):
    with pytest.raises(ModelConfigError, match=message):
        ModelConfig.from_dict(tiny_mar_config(**change), source="model_config.json")


def test_mar_config_defaults():
    config = ModelConfig.from_dict(tiny_mar_config())
    assert config.model_type == "mar_cond" and config.dit is None and config.objective is None
    assert config.context_cond_ids == ("prompt",) and config.global_cond_ids == ("seconds_total",)
    raw = tiny_mar_config()
    del raw["model"]["mar"]["head"]["steps"], raw["model"]["mar"]["head"]["temperature"]
    head = ModelConfig.from_dict(raw).mar.head
    assert (head.steps, head.temperature) == (25, 1.0)


@pytest.mark.parametrize("head", ["diffusion", "energy"])
def test_save_and_load_round_trip_exactly(tmp_path, head):
    model = tiny_mar(head)
    loaded = load_model(save_model(model, tmp_path / head))
    assert isinstance(loaded, MarModel)
    assert isinstance(loaded.head, FlowHead if head == "diffusion" else EnergyHead)
    assert loaded.state_dict().keys() == model.state_dict().keys()
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name]), name
    keys = set(load_file(str(tmp_path / head / "model.safetensors")))
    assert "model.mar.backbone.blocks.1.self_attn.qkv.weight" in keys
    assert "model.mar.head.net.proj_out.weight" in keys
    assert "pretransform.model.decoder.layers.1.layers.1.weight_v" in keys  # the reference VAE names
    assert "conditioner.conditioners.seconds_total.embedder.embedding.0.weights" in keys


def test_mismatched_mar_weights_are_named(tmp_path):
    folder = save_model(tiny_mar("energy"), tmp_path / "model")
    state = load_file(str(folder / "model.safetensors"))
    del state["model.mar.head.net.proj_in.bias"]
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"missing keys \(1\): model\.mar\.head\.net\.proj_in\.bias"):
        load_model(folder)
    write_config(folder, tiny_mar_config("diffusion"))  # an energy head's weights under a flow config
    with pytest.raises(CheckpointError, match=r"missing keys \(6\):.*model\.mar\.head\.time_weight"):
        load_model(folder)


# -- training ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("head", "drop"), [("diffusion", 0.8), ("energy", 0.5)])
def test_each_head_learns_a_fixed_batch(head, drop):
    model = tiny_mar(head, seed=1)
    net = MaskedFrames(model)
    optimizer = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(3, 8, FRAMES, generator=generator)
    draws = MarDraws.draw((3, FRAMES, 8), generator, 0.7, 0.3)
    prompts, seconds = ["kick", "snare", "hat"], [0.1, 0.2, 0.3]
    history = []
    for _ in range(20):
        loss, z = net(latents, prompts, seconds, draws)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append(loss.item())
    assert z.shape == (int(draws.mask.sum()), 32)  # backbone outputs at the masked frames only
    assert all(math.isfinite(v) for v in history)
    assert history[-1] < drop * history[0]


def test_a_diffusion_head_run_exports_a_model_the_engine_decodes(teacher_folder):
    rows = log_rows(teacher_folder.parent)
    assert [r["step"] for r in rows] == [1, 2, 3] and all(math.isfinite(r["flow"]) for r in rows)
    assert math.isfinite(log_rows(teacher_folder.parent, "valid")[0]["flow"])
    model = load_model(teacher_folder)
    assert isinstance(model, MarModel) and isinstance(model.head, FlowHead)
    with Engine(teacher_folder, warmup=False) as engine:
        assert engine.default_sampler == "mar"
        take = engine.generate(Request("a soft low sine tone", seconds=0.3, steps=4, seed=3, cfg=2)).takes[0]
    assert take.audio.shape == (2, round(0.3 * 44100)) and np.isfinite(take.audio).all()
    assert take.params.sampler == "mar"


def test_distillation_starts_from_the_teacher_and_logs_its_term(corpus, teacher_folder, tmp_path):
    config = MarTrainConfig(
        corpus=corpus, out=tmp_path / "student", teacher=teacher_folder, distill_weight=10.0
    )
    teacher = load_model(teacher_folder)
    student = mar_model(config, teacher)
    assert isinstance(student.head, EnergyHead)  # the default head of a student
    for name, tensor in teacher.backbone.state_dict().items():
        assert torch.equal(student.backbone.state_dict()[name], tensor), name

    out = train_mar(replace(config, **RUN))
    rows = log_rows(tmp_path / "student")
    for row in rows:
        assert all(math.isfinite(row[k]) for k in ("energy", "distill", "loss"))
        assert row["loss"] == pytest.approx(row["energy"] + 10.0 * row["distill"], rel=1e-4)
    assert rows[0]["distill"] == pytest.approx(0.0, abs=1e-8)  # the student starts as the teacher
    assert rows[-1]["distill"] > 0
    assert isinstance(load_model(out).head, EnergyHead)
    with Engine(out, warmup=False) as engine:
        take = engine.generate(Request("noise burst", seconds=0.2, steps=2, seed=1)).takes[0]
    assert take.audio.shape == (2, round(0.2 * 44100)) and np.isfinite(take.audio).all()


def test_training_options_are_checked(corpus, vae_folder, mar_folder, mar_config_file, tmp_path):
    base = {"corpus": corpus, "out": tmp_path / "run", "workers": 0}
    with pytest.raises(TrainingError, match="--distill-weight needs --teacher") as info:
        train_mar(MarTrainConfig(init=vae_folder, distill_weight=1.0, **base))
    assert "--head diffusion" in info.value.hint
    with pytest.raises(TrainingError, match="--teacher is only used for distillation"):
        train_mar(MarTrainConfig(teacher=mar_folder, **base))
    with pytest.raises(TrainingError, match="not both"):
        train_mar(MarTrainConfig(init=vae_folder, teacher=mar_folder, distill_weight=1.0, **base))
    with pytest.raises(TrainingError, match="--head must be one of"):
        train_mar(MarTrainConfig(init=vae_folder, head="gan", **base))
    with pytest.raises(TrainingError, match="not a diffusion-head MAR model"):  # an energy model
        train_mar(MarTrainConfig(teacher=mar_folder, distill_weight=1.0, **base))
    with pytest.raises(TrainingError, match="not a diffusion-head MAR model"):  # a DiT
        train_mar(MarTrainConfig(teacher=vae_folder, distill_weight=1.0, **base))
    with pytest.raises(TrainingError, match="needs --init"):
        train_mar(MarTrainConfig(**base))
    with pytest.raises(
        TrainingError, match="is a diffusion model: a new MAR model over its VAE needs --config"
    ):
        train_mar(MarTrainConfig(init=vae_folder, **base))
    dit_config = tmp_path / "dit.json"
    dit_config.write_text(json.dumps(tiny_config(sample_size=SAMPLE_SIZE)))
    with pytest.raises(TrainingError, match="needs mar_cond"):
        train_mar(MarTrainConfig(init=vae_folder, config=dit_config, **base))
    other = tiny_mar_config(**{"model.conditioning.cond_dim": 32})
    (tmp_path / "other.json").write_text(json.dumps(other))
    with pytest.raises(TrainingError, match=r"'cond_dim' differs .* VAE and conditioners are reused"):
        train_mar(MarTrainConfig(init=vae_folder, config=tmp_path / "other.json", **base))


def test_diffusion_trainers_refuse_a_mar_model(corpus, mar_folder, vae_folder, mar_config_file, tmp_path):
    base = {"corpus": corpus, "workers": 0}
    with pytest.raises(TrainingError, match=r"mar_cond \(masked autoregressive\) model; `studio train arc`"):
        train_arc(ArcTrainConfig(out=tmp_path / "arc", init=mar_folder, **base))
    with pytest.raises(TrainingError, match="`studio train flow` trains the DiT") as info:
        train_flow(FlowTrainConfig(out=tmp_path / "flow", init=mar_folder, **base))
    assert "studio train mar" in info.value.hint
    with pytest.raises(TrainingError, match="`studio train flow` trains the DiT"):
        train_flow(FlowTrainConfig(out=tmp_path / "flow", init=vae_folder, config=mar_config_file, **base))


def test_cli_maps_mar_options(corpus, capsys):
    argv = ["mar", "--corpus", str(corpus), "--out", str(corpus / "run"), "--distill-weight", "5"]
    assert train_cli.main(argv) == 2
    assert "--distill-weight needs --teacher" in capsys.readouterr().err
    parser = cli.build_parser()
    args = parser.parse_args(
        ["train", "mar", "--corpus", "c", "--out", "o", "--teacher", "t", "--head", "energy"]
    )
    config = train_cli._config(MarTrainConfig, args)
    assert (config.teacher, config.head, config.distill_weight) == (Path("t"), "energy", 0.0)
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "mar", "--corpus", "c", "--out", "o", "--head", "gan"])


# -- engine, registry, CLI -----------------------------------------------------------------------


def test_engine_decodes_exactly_what_the_model_generates_without_guidance(mar_engine):
    seed, seconds, steps = 21, 0.25, 3
    take = mar_engine.generate(Request("vinyl crackle", seconds=seconds, steps=steps, seed=seed)).takes[0]
    model, config = mar_engine.model, mar_engine.config
    with torch.inference_mode():
        cond = model.condition(["vinyl crackle"], [seconds])
        noise = NoiseSource([(seed, seed, 1.0)], (8, FRAMES)).draw()[0]
        order = sampling.decoding_order(FRAMES, torch.Generator().manual_seed(seed))[None]
        audio = model.vae.decode(model.generate(cond, noise, order, steps))[0, :, : take.audio.shape[1]]
    np.testing.assert_allclose(take.audio, audio.numpy(), atol=1e-5)
    assert take.audio.shape == (2, round(seconds * config.sample_rate))
    guided = mar_engine.generate(
        Request("vinyl crackle", seconds=seconds, steps=steps, seed=seed, cfg=3)
    ).takes[0]
    assert not np.allclose(guided.audio, take.audio, atol=1e-4)


def test_mar_takes_follow_seed_and_diversity(mar_engine):
    same = mar_engine.generate(Request("kick", seconds=0.2, seed=5, variations=3, diversity=0.0)).takes
    assert all(np.array_equal(t.audio, same[0].audio) for t in same[1:])
    first = mar_engine.generate(Request("kick", seconds=0.2, seed=5, variations=3, diversity=0.7, steps=50))
    assert not np.allclose(first.takes[0].audio, first.takes[1].audio)
    alone = mar_engine.generate(Request.from_params(first.takes[2].params.to_dict())).takes[0]
    np.testing.assert_allclose(alone.audio, first.takes[2].audio, atol=1e-5)
    assert first.takes[2].params.steps == 50  # more iterations than frames: every frame in its own


def test_engine_refuses_what_a_model_kind_cannot_do(mar_engine, vae_folder, tmp_path):
    with pytest.raises(RequestError, match="'pingpong' sampler is for diffusion models") as info:
        mar_engine.generate(Request("kick", sampler="pingpong"))
    assert "mar" in info.value.hint
    recording = (np.zeros((2, 4410), dtype=np.float32), 44100)
    with pytest.raises(RequestError, match="cannot restyle a recording") as info:
        mar_engine.generate(Request("kick", init_audio=recording))
    assert "diffusion model" in info.value.hint
    with Engine(vae_folder, warmup=False) as dit, pytest.raises(RequestError, match="is a diffusion model"):
        dit.generate(Request("kick", sampler="mar"))


def test_mar_folders_are_listed_and_generate_from_the_cli(mar_folder, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("STUDIO_MODELS_DIR", str(mar_folder.parent))
    assert any(e.path == mar_folder and e.source == "user" for e in list_models())
    assert resolve_model("tiny-mar").path == mar_folder
    out = tmp_path / "takes"
    argv = ["generate", "a bright beep", "--model", "tiny-mar", "--seconds", "0.2", "--seed", "4", "--out"]
    assert cli.main([*argv, str(out), "--steps", "2", "--cfg", "2"]) == 0
    sidecar = json.loads(next(out.glob("*.json")).read_text())
    assert (sidecar["sampler"], sidecar["steps"], sidecar["cfg"]) == ("mar", 2, 2.0)
    assert len(list(out.glob("*.wav"))) == 1
    assert cli.main(["models"]) == 0
    assert "tiny-mar" in capsys.readouterr().out
