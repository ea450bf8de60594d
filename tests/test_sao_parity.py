"""Our implementation reproduces stable-audio-tools on the recorded parity cases.

The fixture folder comes from STUDIO_SAO_FIXTURES (default ../shared/fixtures/sao-parity), so the
same test proves parity on any folder in that format.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from studio import sampling
from studio.models import AudioModel, ModelConfig, load_model
from studio.models.checkpoint import checkpoint_key
from studio.models.conditioners import NumberConditioner

TOLERANCE = 1e-4


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return float((actual - expected).norm() / expected.norm())


HEAD64_FIXTURE = Path(__file__).resolve().parent / "fixtures" / "sao-parity-head64"


@pytest.fixture(scope="module", params=["shared", "head64"])
def parity_dir(request, fixture_dir) -> Path:
    """The configured fixture folder, and ours recorded on a config whose rotary covers half a head."""
    return fixture_dir if request.param == "shared" else HEAD64_FIXTURE


@pytest.fixture(scope="module")
def model(parity_dir) -> AudioModel:
    return load_model(parity_dir)


@pytest.fixture(scope="module")
def cases(parity_dir) -> dict[str, torch.Tensor]:
    return load_file(str(parity_dir / "cases.safetensors"))


@pytest.fixture(scope="module")
def conditioning(model, cases):
    prompt_id = model.config.prompt_conditioner.id
    seconds_id = model.config.seconds_conditioner.id
    return model.assemble({prompt_id: cases["prompt_embeds"], seconds_id: cases["seconds_embed"][:, None]})


def test_number_conditioner(model, cases):
    conditioner = model.conditioners[model.config.seconds_conditioner.id]
    assert isinstance(conditioner, NumberConditioner)
    with torch.no_grad():
        out = conditioner(cases["seconds_total"])[:, 0]
    assert relative_error(out, cases["seconds_embed"]) < TOLERANCE


def test_dit_velocity_cfg1(model, cases, conditioning):
    with torch.no_grad():
        v = model.velocity(cases["dit_x"], cases["dit_t"], conditioning)
    assert relative_error(v, cases["dit_v"]) < TOLERANCE


def test_dit_velocity_cfg3_zeroed_context(model, cases, conditioning):
    velocity = sampling.guided(
        lambda x, t: model.velocities(x, t, (conditioning, conditioning.unconditional())), 3.0
    )
    with torch.no_grad():
        v = velocity(cases["dit_x"], cases["dit_t"])
    assert relative_error(v, cases["dit_v_cfg3"]) < TOLERANCE


def test_vae_decode(model, cases):
    with torch.no_grad():
        audio = model.vae.decode(cases["vae_z"])
    assert audio.shape == cases["vae_decoded"].shape
    assert relative_error(audio, cases["vae_decoded"]) < TOLERANCE


def test_vae_encode(model, cases):
    with torch.no_grad():
        encoded = model.vae.encoder(cases["vae_audio"])
        mean = model.vae.encode(cases["vae_audio"])  # no generator: the posterior mean
    assert relative_error(encoded, cases["vae_encoder_out"]) < TOLERANCE
    assert relative_error(mean, cases["vae_latent_mean"]) < TOLERANCE


def sampling_runs(cases) -> list[str]:
    return sorted(k[: -len("_out")] for k in cases if k.endswith("_out") and f"{k[:-4]}_noises" in cases)


def test_fixture_has_the_three_pingpong_runs(cases):
    assert {"gen8", "a2a", "a2a_low"} <= set(sampling_runs(cases))


def test_pingpong_runs_with_recorded_noises(model, cases, conditioning, parity_dir):
    described = json.loads((parity_dir / "cases.json").read_text()).get("sampling", {})
    for tag in sampling_runs(cases):
        noises, recorded_schedule = cases[f"{tag}_noises"], cases[f"{tag}_schedule"]
        steps = len(recorded_schedule) - 1
        sigma_max = described.get(tag, {}).get("init_noise_level", float(recorded_schedule[0]))
        schedule = sampling.logsnr_schedule(steps, sigma_max)
        assert relative_error(schedule, recorded_schedule) < 1e-6, tag
        x = noises[0]
        if f"{tag}_init" in cases:
            x = sampling.noised_init(cases[f"{tag}_init"], noises[0], sigma_max)
        with torch.no_grad():
            out = sampling.sample_pingpong(
                lambda x, t: model.velocity(x, t, conditioning), x, schedule, noises.__getitem__
            )
        assert relative_error(out, cases[f"{tag}_out"]) < TOLERANCE, tag


def test_full_size_layout_matches_reference(fixture_dir):
    layout = json.loads((fixture_dir / "sao_small_layout.json").read_text())
    config = ModelConfig.from_dict(layout["config"], source="sao_small_layout.json")
    with torch.device("meta"):
        model = AudioModel(config)
    blocks = len(config.autoencoder.encoder.strides)
    ours = {checkpoint_key(k, blocks): tuple(v.shape) for k, v in model.state_dict().items()}
    expected = {k: tuple(v) for k, v in layout["state_dict_shapes"].items()}
    assert sorted(set(expected) - set(ours)) == []
    assert sorted(set(ours) - set(expected)) == []
    assert {k: s for k, s in ours.items() if expected[k] != s} == {}

    def count(module, skip_rotary=False):
        tensors = dict(module.named_parameters()) | dict(module.named_buffers())
        return sum(t.numel() for name, t in tensors.items() if not (skip_rotary and "rotary" in name))

    counts = layout["counts"]
    assert count(model.dit, skip_rotary=True) == counts["dit_incl_buffers"]
    assert count(model.conditioners[config.seconds_conditioner.id]) == counts["seconds_conditioner"]
    assert count(model.vae) == counts["autoencoder"]
