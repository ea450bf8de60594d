"""The T5 text path reproduces stable-audio-tools 0.0.19 on the recorded T5 parity cases.

The fixture folder (STUDIO_T5_FIXTURES, default ../shared/fixtures/sao-t5) holds an offline Hugging
Face cache with a tiny random "t5-base", a tiny stable-audio-open-small-format model that uses it,
and what the reference recorded: token ids, T5 states in fp16 and fp32, the assembled conditioning,
DiT velocities and two seeded 8-step ping-pong generations. The reference runs T5 in fp16 on every
device; Studio does so on CUDA and in fp32 on the CPU, so the downstream cases cast T5 to fp16 first.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from studio import sampling
from studio.engine import Engine
from studio.models import AudioModel, load_model
from studio.request import Request

TOLERANCE = 1e-4


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    actual, expected = actual.double(), expected.double()
    return float((actual - expected).norm() / expected.norm())


@pytest.fixture(scope="module")
def folder(t5_fixture_dir) -> Path:
    return t5_fixture_dir


@pytest.fixture(scope="module", autouse=True)
def fixture_hub_cache(folder):
    """The fixture's cache is where "t5-base" comes from (huggingface_hub reads this at call time)."""
    import huggingface_hub.constants as hub

    saved = hub.HF_HUB_CACHE
    hub.HF_HUB_CACHE = str(folder / "hf-home" / "hub")
    yield
    hub.HF_HUB_CACHE = saved


@pytest.fixture(scope="module")
def cases(folder) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "cases.safetensors"))


@pytest.fixture(scope="module")
def meta(folder) -> dict:
    return json.loads((folder / "cases.json").read_text())


@pytest.fixture
def reference_fp16_kernels():
    """fp16 matmuls as the reference's CPU ran them. Where oneDNN has AVX512-FP16 (this VM's Xeon)
    it computes fp16 natively and lands 4.7e-4 off the recorded T5 states; PyTorch's own fp16
    kernels accumulate in fp32 as the recording machine's did, and reproduce them bit for bit."""
    with torch.backends.mkldnn.flags(enabled=False, allow_tf32=None):
        yield


def with_fp16_t5(model: AudioModel) -> AudioModel:
    """The model with its T5 in fp16, as Studio runs it on CUDA and the reference everywhere."""
    encoder = model.prompt_encoder
    tokenizer, t5 = encoder._load_backbone(torch.device("cpu"))
    encoder._backbone = (tokenizer, t5.half())
    return model


@pytest.fixture(scope="module")
def model(folder) -> AudioModel:
    return load_model(folder / "model")


@pytest.fixture(scope="module")
def model_fp16_t5(folder) -> AudioModel:
    return with_fp16_t5(load_model(folder / "model"))


def test_tokens_and_mask_are_exact(model, cases, meta):
    encoder = model.prompt_encoder
    tokenizer, _ = encoder._load_backbone(torch.device("cpu"))
    tokens = tokenizer(
        meta["prompts"],
        truncation=True,
        max_length=encoder.max_length,
        padding="max_length",
        return_tensors="pt",
    )
    assert torch.equal(tokens["input_ids"], cases["t5_input_ids"])
    _, mask = encoder(meta["prompts"])
    assert torch.equal(mask, cases["t5_attention_mask"])


def test_prompt_states_with_t5_in_fp32(model, cases, meta):
    """Studio's own CPU path (T5 in fp32), every prompt: empty, truncated, non-ASCII."""
    with torch.no_grad():
        states, _ = model.prompt_encoder(meta["prompts"])
    for i, prompt in enumerate(meta["prompts"]):
        assert relative_error(states[i], cases["t5_emb_fp32"][i]) < TOLERANCE, prompt


def test_prompt_states_with_t5_in_fp16(model_fp16_t5, cases, meta, reference_fp16_kernels):
    with torch.no_grad():
        states, _ = model_fp16_t5.prompt_encoder(meta["prompts"])
    for i, prompt in enumerate(meta["prompts"]):
        assert relative_error(states[i], cases["t5_emb_fp16"][i]) < TOLERANCE, prompt


def conditioning_case(model: AudioModel, cases, meta):
    case = meta["cases"]["conditioning"]
    seconds = cases["cond_seconds_total"].tolist()
    with torch.no_grad():
        return model.condition(case["prompts"], seconds)


def test_conditioning(model_fp16_t5, cases, meta, reference_fp16_kernels):
    cond = conditioning_case(model_fp16_t5, cases, meta)
    assert relative_error(cond.context, cases["cond_cross_attn"]) < TOLERANCE
    assert relative_error(cond.global_cond, cases["cond_global"]) < TOLERANCE
    # The reference's mask: T5's, then the seconds token's; its DiT ignores it, as ours does.
    _, mask = model_fp16_t5.prompt_encoder(meta["cases"]["conditioning"]["prompts"])
    full_mask = torch.cat((mask, torch.ones(len(mask), 1, dtype=torch.bool)), dim=1)
    assert torch.equal(full_mask, cases["cond_cross_attn_mask"].bool())


@pytest.mark.parametrize("cfg", [1.0, 3.0])
def test_dit_velocity(model_fp16_t5, cases, meta, cfg, reference_fp16_kernels):
    cond = conditioning_case(model_fp16_t5, cases, meta)
    velocity = sampling.guided(lambda x, t: model_fp16_t5.velocities(x, t, (cond, cond.unconditional())), cfg)
    with torch.no_grad():
        v = velocity(cases["dit_x"], cases["dit_t"])
    assert relative_error(v, cases[f"dit_v_cfg{cfg:g}"]) < TOLERANCE


@pytest.fixture(scope="module")
def engine(folder):
    with Engine(folder / "model", device="cpu", dtype="float32", warmup=False) as engine:
        with_fp16_t5(engine.model)
        yield engine


def generation_runs(cases) -> list[str]:
    return sorted(k[: -len("_seed")] for k in cases if k.startswith("gen") and k.endswith("_seed"))


def test_fixture_has_both_generations(cases):
    assert generation_runs(cases) == ["gen0", "gen1"]


@pytest.mark.parametrize("run", ["gen0", "gen1"])
def test_recorded_noises_are_the_seeds_cpu_stream(cases, run):
    noises = cases[f"{run}_noises"]
    generator = torch.Generator().manual_seed(int(cases[f"{run}_seed"]))
    drawn = torch.stack([torch.randn(noises.shape[2:], generator=generator)[None] for _ in noises])
    assert torch.equal(drawn, noises)


@pytest.mark.parametrize("run", ["gen0", "gen1"])
def test_seeded_generation_through_the_engine(engine, cases, meta, run, reference_fp16_kernels):
    """A request with the recorded seed reproduces the reference's latents' audio: prompt, seconds
    token, 8 ping-pong steps, per-take CPU noise and the Oobleck decode, end to end."""
    index = int(run.removeprefix("gen"))
    case = meta["cases"]["conditioning"]
    seconds = float(cases["cond_seconds_total"][index])
    request = Request(case["prompts"][index], seconds=seconds, steps=8, cfg=1, seed=int(cases[f"{run}_seed"]))
    take = engine.generate(request).takes[0]
    frames = take.audio.shape[-1]
    assert frames == round(seconds * engine.config.sample_rate)
    expected = cases[f"{run}_audio"][0, :, :frames]
    assert relative_error(torch.from_numpy(take.audio), expected) < TOLERANCE


@pytest.mark.parametrize("run", ["gen0", "gen1"])
def test_pingpong_latents_with_recorded_noises(model_fp16_t5, cases, meta, run, reference_fp16_kernels):
    index = int(run.removeprefix("gen"))
    case = meta["cases"]["conditioning"]
    noises, schedule = cases[f"{run}_noises"], cases[f"{run}_schedule"]
    assert relative_error(sampling.logsnr_schedule(len(schedule) - 1), schedule) < 1e-6
    with torch.no_grad():
        cond = model_fp16_t5.condition([case["prompts"][index]], [float(cases["cond_seconds_total"][index])])
        latents = sampling.sample_pingpong(
            lambda x, t: model_fp16_t5.velocity(x, t, cond), noises[0], schedule, noises.__getitem__
        )
    assert relative_error(latents, cases[f"{run}_latents"]) < TOLERANCE
