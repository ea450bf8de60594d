"""How a resident model runs fast: as written, compiled, or captured in CUDA graphs.

- "eager": PyTorch as the modules are written.
- "compile": torch.compile of the denoiser (DiT, or MAR backbone and head) and of the VAE decoder,
  with static shapes: each batch size and length compiles once, on its first take.
- "graphs" (CUDA): compiled, and each generation from the conditioning on (every sampling step,
  guidance, the decode) captured as one CUDA graph per bucket (sampler, steps, start time and the
  shapes of its inputs) over static buffers. A replay copies the new inputs into those buffers and
  launches the whole take with one call, so the host never waits between kernels.

The engine takes "graphs" on CUDA and "eager" on other devices: on the 2-core CPU compiling wins
1.07-1.31x a call but costs 20-60 s per batch size at start
(reports/bench/compile-cpu-2026-12-06.json), which a session of a few hundred takes does not earn
back; `--fast-path compile` asks for it.
"""

from __future__ import annotations

import ctypes
import logging
import sys
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence

import torch
from torch import nn

from studio.commands import FAST_PATHS
from studio.errors import StudioError
from studio.models.precision import denoiser_parts

MAX_GRAPHS = 8  # captured buckets kept; each holds its static buffers and its own memory pool
RECOMPILE_LIMIT = 64  # compiled shapes per module: batch rows 1-16, doubled under guidance, two modules

log = logging.getLogger("studio.fast_path")

Inputs = Sequence[torch.Tensor | None]


def pick_fast_path(device: torch.device, requested: str | None = None) -> str:
    if requested is None:
        return "graphs" if device.type == "cuda" else "eager"
    if requested not in FAST_PATHS:
        raise StudioError(f"unknown fast path '{requested}'", f"use one of {', '.join(FAST_PATHS)}")
    if requested == "graphs" and device.type != "cuda":
        raise StudioError(
            f"CUDA graphs need a CUDA device, not {device.type}", "use --fast-path compile or eager"
        )
    return requested


def keep_freed_memory() -> bool:
    """Have glibc keep the memory a generation frees for the next one, rather than give it back.

    A CPU decode allocates activations of hundreds of megabytes; by default glibc maps each one
    fresh and unmaps it when freed, so the kernel zeroes new pages every time: 6.4 million page
    faults and 40% of a stable-audio-open-small decode's time. Kept in the heap, that decode ran
    1.7x faster on this project's CPU. The cost: the process keeps its peak memory until it ends.
    Returns whether it applied (glibc only)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    m_trim_threshold, m_top_pad, m_mmap_max = -1, -2, -4
    return all(
        mallopt(option, value) == 1
        for option, value in ((m_mmap_max, 0), (m_trim_threshold, 2**31 - 1), (m_top_pad, 2**30))
    )


def compile_model(model: nn.Module) -> None:
    """Compile the modules a take runs most: the denoiser, every step, and the VAE decoder.

    With inductor's freezing the weights are constants of the compiled code, so what is computed
    from them alone (the Oobleck decoder's weight norm) is computed once; a resident model's
    weights never change."""
    import torch._dynamo.config
    import torch._inductor.config

    torch._inductor.config.freezing = True
    # Every batch size is its own static shape; past dynamo's default of 8 it would fall back to
    # eager with only a warning.
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, RECOMPILE_LIMIT)
    for module in (*denoiser_parts(model), model.vae.decoder):
        module.compile(dynamic=False)


class CapturedRun:
    """`fn(*inputs)` recorded once as a CUDA graph over copies of `inputs`; calling it again
    with tensors of the same shapes replays the graph. Its output tensor is overwritten by the
    next replay: copy out what is to be kept."""

    def __init__(self, fn: Callable[..., torch.Tensor], inputs: Inputs, warmup: int = 2):
        self.inputs = [None if t is None else t.clone() for t in inputs]
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # compiles, autotunes and allocates workspaces off the graph
            for _ in range(warmup):
                fn(*self.inputs)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        # thread_local: CUDA calls from the app's other threads (a status read) cannot spoil the capture
        with torch.cuda.graph(self.graph, capture_error_mode="thread_local"):
            self.output = fn(*self.inputs)

    def __call__(self, inputs: Inputs) -> torch.Tensor:
        for static, value in zip(self.inputs, inputs, strict=True):
            if static is not None:
                static.copy_(value, non_blocking=True)
        self.graph.replay()
        return self.output


class GraphBuckets:
    """One CapturedRun per bucket, the least recently used dropped past MAX_GRAPHS."""

    def __init__(self, limit: int = MAX_GRAPHS):
        self.limit = limit
        self.runs: OrderedDict[Hashable, CapturedRun] = OrderedDict()

    def run(self, bucket: Hashable, fn: Callable[..., torch.Tensor], inputs: Inputs) -> torch.Tensor:
        key = (bucket, *(None if t is None else (tuple(t.shape), t.dtype) for t in inputs))
        if key not in self.runs:
            log.info("capturing a CUDA graph for %s", key)
            self.runs[key] = CapturedRun(fn, inputs)
            while len(self.runs) > self.limit:
                self.runs.popitem(last=False)
        self.runs.move_to_end(key)
        return self.runs[key](inputs)
