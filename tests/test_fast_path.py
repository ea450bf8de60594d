"""The fast path: which one a device gets, compiled takes against eager ones, the CUDA-graph
buckets' bookkeeping, and the float16 decode the precision policy keeps only where it is faithful."""

from __future__ import annotations

import copy
import subprocess
import sys
from typing import ClassVar

import numpy as np
import pytest
import torch

from studio import fast_path
from studio.engine import Engine, render
from studio.errors import StudioError
from studio.fast_path import GraphBuckets, pick_fast_path
from studio.models import load_model
from studio.models.precision import HALF_DECODE_MIN_SNR_DB, half_decoder_if_faithful, snr_db
from studio.request import Request


def test_cuda_gets_graphs_and_other_devices_eager():
    assert pick_fast_path(torch.device("cuda")) == "graphs"
    assert pick_fast_path(torch.device("cpu")) == "eager"
    assert pick_fast_path(torch.device("cpu"), "compile") == "compile"
    with pytest.raises(StudioError, match="CUDA graphs need a CUDA device"):
        pick_fast_path(torch.device("cpu"), "graphs")
    with pytest.raises(StudioError, match="unknown fast path 'turbo'"):
        pick_fast_path(torch.device("cpu"), "turbo")


def test_compiled_engine_gives_the_eager_takes(tiny_model_dir):
    request = Request("a snare", seconds=0.3, steps=3, seed=5, variations=2, cfg=2)
    # float32 on every CPU: in bf16 (a CPU with AMX or AVX-512 BF16) compiled kernels round
    # differently from eager ones.
    with Engine(tiny_model_dir, dtype="float32", warmup=False) as engine:
        assert engine.fast_path == "eager"
        eager = engine.generate(request).takes
    with Engine(tiny_model_dir, dtype="float32", warmup=False, fast_path="compile") as engine:
        compiled = engine.generate(request).takes
        again = engine.generate(request).takes
    for a, b, c in zip(eager, compiled, again, strict=True):
        np.testing.assert_allclose(b.audio, a.audio, atol=1e-5)
        assert np.array_equal(b.audio, c.audio)


class FakeCapture:
    """Stands in for a CUDA graph: records how often it is made and replayed."""

    made: ClassVar[list[tuple]] = []

    def __init__(self, fn, inputs):
        self.fn = fn
        FakeCapture.made.append(tuple(None if t is None else t.shape for t in inputs))

    def __call__(self, inputs):
        return self.fn(*inputs)


def test_graph_buckets_capture_once_per_shape_and_forget_the_oldest(monkeypatch):
    monkeypatch.setattr(fast_path, "CapturedRun", FakeCapture)
    FakeCapture.made = []
    buckets = GraphBuckets(limit=2)
    add = lambda a, b: a + (0 if b is None else b)  # noqa: E731
    one, two, three = torch.ones(1, 4), torch.ones(2, 4), torch.ones(3, 4)
    assert torch.equal(buckets.run("pingpong", add, (one, None)), one)
    buckets.run("pingpong", add, (one * 5, None))  # same bucket: replayed, not captured again
    buckets.run("pingpong", add, (one, one))  # an input more is another graph
    buckets.run("euler", add, (one, None))  # so are other settings
    assert FakeCapture.made == [((1, 4), None), ((1, 4), (1, 4)), ((1, 4), None)]
    buckets.run("pingpong", add, (two, None))
    buckets.run("pingpong", add, (three, None))
    assert len(buckets.runs) == 2  # the least recently used were dropped


def test_float16_decode_is_kept_only_where_it_stays_within_50_db(tiny_model_dir, fixture_dir):
    """The tiny model's decoder keeps 55 dB in float16; the parity fixture's random one only 36."""
    faithful, lossy = load_model(tiny_model_dir).vae, load_model(fixture_dir).vae
    reference = copy.deepcopy(faithful)
    assert half_decoder_if_faithful(faithful) >= HALF_DECODE_MIN_SNR_DB
    assert faithful.decoder_dtype == torch.float16
    latents = torch.randn(2, faithful.latent_dim, 16, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        decoded = faithful.decode(latents)
        assert decoded.dtype == torch.float32
        assert snr_db(decoded, reference.decode(latents)) >= HALF_DECODE_MIN_SNR_DB - 3
    assert half_decoder_if_faithful(lossy) < HALF_DECODE_MIN_SNR_DB
    assert lossy.decoder_dtype == torch.float32


FAULTS = """
import resource, sys, torch
from studio.fast_path import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "keep" else None
for _ in range(6):  # a generation's pattern: large activations made and freed, again and again
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    x = torch.ones(2**26)
    y = torch.ones(2**25) + x[: 2**25]
    del x, y
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_freed_activations_are_reused_without_fresh_page_faults():
    def faults(mode: str) -> tuple[str, int]:
        run = subprocess.run([sys.executable, "-c", FAULTS, mode], capture_output=True, text=True, check=True)
        applied, count = run.stdout.split()
        return applied, int(count)

    assert faults("default")[1] > 50_000  # 98,304 pages of 4 KiB a round, each zeroed anew
    applied, count = faults("keep")
    assert applied == "True" and count < 1_000


def test_render_takes_guidance_as_a_tensor_so_one_graph_serves_every_cfg(tiny_model_dir):
    model = load_model(tiny_model_dir)
    c = model.config
    generator = torch.Generator().manual_seed(2)
    noises = torch.randn(4, 2, c.autoencoder.latent_dim, c.latent_length, generator=generator)
    with torch.inference_mode():
        cond = model.condition(["a bell", "a bell"], [0.5, 0.5])
        uncond = torch.zeros_like(cond.context)
        takes = [
            render(
                model,
                "pingpong",
                3,
                1.0,
                0.0,
                cfg,
                *cond.fields(),
                uncond,
                noises[0],
                noises,
                None,
            )
            for cfg in (2.5, torch.tensor(2.5))
        ]
    assert torch.equal(takes[0], takes[1])
