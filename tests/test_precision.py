"""The precision policy (studio/models/precision.py), checked on the CPU by emulation: the same
half-precision dtypes CUDA uses, on the SAO parity fixture's model, against its float32 self."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from studio import sampling
from studio.engine import Engine
from studio.errors import StudioError
from studio.models import AudioModel, load_model, precision
from studio.models.precision import FLOAT32_TENSORS, ieee_float32, pick_dtype, place_model
from studio.request import Request

CPU = torch.device("cpu")
# Relative error against float32, measured here: velocity 6.5e-3 (bf16) / 8.0e-4 (fp16); eight
# ping-pong steps 1.8e-3 / 2.3e-4.
VELOCITY_TOLERANCE = {torch.bfloat16: 1.5e-2, torch.float16: 2e-3}
PINGPONG_TOLERANCE = {torch.bfloat16: 5e-3, torch.float16: 1e-3}


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return float((actual.double() - expected.double()).norm() / expected.double().norm())


@pytest.fixture(scope="module")
def cases(fixture_dir) -> dict[str, torch.Tensor]:
    return load_file(str(fixture_dir / "cases.safetensors"))


@pytest.fixture(scope="module")
def reference(fixture_dir) -> AudioModel:
    return load_model(fixture_dir)


@pytest.fixture(scope="module")
def conditioning(reference, cases):
    config = reference.config
    return reference.assemble(
        {
            config.prompt_conditioner.id: cases["prompt_embeds"],
            config.seconds_conditioner.id: cases["seconds_embed"][:, None],
        }
    )


@pytest.fixture(scope="module", params=[torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def half_model(request, fixture_dir) -> AudioModel:
    model = load_model(fixture_dir)
    place_model(model, CPU, request.param)
    return model


@pytest.mark.parametrize(
    ("capability", "expected"),
    [((7, 0), torch.float16), ((7, 5), torch.float16), ((8, 0), torch.bfloat16), ((9, 0), torch.bfloat16)],
)
def test_cuda_dtype_follows_compute_capability(monkeypatch, capability, expected):
    """bf16 only where the GPU has bf16 tensor cores; is_bf16_supported() also counts emulation."""
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    assert pick_dtype(torch.device("cuda")) == expected
    assert pick_dtype(torch.device("cuda"), "float32") == torch.float32


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ({"avx2", "amx_bf16", "amx_tile"}, torch.bfloat16),
        ({"avx2", "avx512f", "avx512_bf16"}, torch.bfloat16),
        ({"avx2", "avx512f"}, torch.float32),
        (set(), torch.float32),
    ],
)
def test_cpu_dtype_is_bfloat16_only_with_bf16_matrix_instructions(monkeypatch, flags, expected):
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset(flags))
    assert pick_dtype(CPU) == expected
    assert pick_dtype(CPU, "float32") == torch.float32


def test_cpu_flags_read_the_flags_line_and_are_empty_without_one(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu sse2 amx_bf16 avx2\n\n")
    assert precision.cpu_flags(cpuinfo) == {"fpu", "sse2", "amx_bf16", "avx2"}
    assert precision.cpu_flags(tmp_path / "absent") == frozenset()


def test_unknown_dtypes_are_refused():
    with pytest.raises(StudioError, match="unknown dtype 'float8'"):
        pick_dtype(CPU, "float8")


def test_only_the_denoiser_goes_half_and_its_islands_keep_their_float32_values(half_model, reference):
    dtype = half_model.dit.proj_in.weight.dtype
    assert dtype in (torch.bfloat16, torch.float16)
    float32 = dict(reference.dit.state_dict())
    for name, tensor in [*half_model.dit.named_parameters(), *half_model.dit.named_buffers()]:
        module = half_model.dit.get_submodule(name.rpartition(".")[0])
        island = isinstance(module, nn.LayerNorm) or name.rpartition(".")[2] in FLOAT32_TENSORS
        assert tensor.dtype == (torch.float32 if island else dtype), name
        if island:  # not rounded through half precision on the way
            assert torch.equal(tensor, float32[name]), name
    everything_else = [*half_model.vae.parameters(), *half_model.conditioners.parameters()]
    assert {t.dtype for t in everything_else} == {torch.float32}


def test_velocity_within_tolerance_of_float32(half_model, reference, cases, conditioning):
    with torch.no_grad():
        expected = reference.velocity(cases["dit_x"], cases["dit_t"], conditioning)
        actual = half_model.velocity(cases["dit_x"], cases["dit_t"], conditioning)
    assert actual.dtype == torch.float32
    assert relative_error(actual, expected) < VELOCITY_TOLERANCE[half_model.dit.proj_in.weight.dtype]


def test_pingpong_within_tolerance_of_float32(half_model, reference, cases, conditioning):
    noises, schedule = cases["gen8_noises"], cases["gen8_schedule"]
    with torch.no_grad():
        outs = [
            sampling.sample_pingpong(
                lambda x, t, m=model: m.velocity(x, t, conditioning), noises[0], schedule, noises.__getitem__
            )
            for model in (reference, half_model)
        ]
    assert relative_error(outs[1], outs[0]) < PINGPONG_TOLERANCE[half_model.dit.proj_in.weight.dtype]


def test_sampling_times_are_not_rounded(half_model, cases, conditioning):
    """0.99331 and 0.99219 are the same bfloat16 (and 0.99331 is no float16): a rounded time would
    give both the same velocity, and the DiT would see another time than the sampler's."""
    seen = []
    original = half_model.dit.forward
    half_model.dit.forward = lambda x, t, *rest: seen.append(t) or original(x, t, *rest)
    try:
        x = cases["dit_x"]
        with torch.no_grad():
            velocities = [
                half_model.velocity(x, torch.full((len(x),), t), conditioning) for t in (0.99331, 0.99219)
            ]
    finally:
        del half_model.dit.forward
    assert [t.dtype for t in seen] == [torch.float32, torch.float32]
    assert seen[0].tolist() == torch.full((2,), 0.99331).tolist()
    assert not torch.equal(velocities[0], velocities[1])


def test_vae_decodes_in_float32_exactly_as_the_float32_model(half_model, reference, cases):
    with torch.no_grad():
        assert torch.equal(half_model.vae.decode(cases["vae_z"]), reference.vae.decode(cases["vae_z"]))


def test_ieee_float32_turns_tf32_off():
    saved = torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.fp32_precision
    try:
        torch.backends.cuda.matmul.fp32_precision = "tf32"
        torch.backends.cudnn.fp32_precision = "tf32"
        ieee_float32()
        assert torch.backends.cuda.matmul.fp32_precision == "ieee"
        assert torch.backends.cudnn.conv.fp32_precision == "ieee"
    finally:
        torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.fp32_precision = saved


def test_engine_in_bfloat16_gives_the_float32_take_within_tolerance(tiny_model_dir):
    request = Request("a kick", seconds=0.3, steps=4, seed=11)
    takes = []
    for dtype in ("float32", "bfloat16"):
        with Engine(tiny_model_dir, device="cpu", dtype=dtype, warmup=False) as engine:
            takes.append(torch.from_numpy(engine.generate(request).takes[0].audio))
    assert takes[1].dtype == torch.float32
    assert relative_error(takes[1], takes[0]) < 0.05
