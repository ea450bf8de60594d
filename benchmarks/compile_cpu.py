"""Eager against torch.compile on this CPU, interleaved in one process: one DiT step and one VAE
decode at batch 1 and the model's full length, each side in turn every round, plus what compiling
cost. Decides where `--fast-path compile` wins (docs/gpu.md).

    python benchmarks/compile_cpu.py [--models studio-mini ...] [--arch sao-small] [--rounds 10]

Writes reports/bench/compile-cpu-<date>.json (--out to change). Both sides are the same weights in
float32; compiled as the engine compiles (studio.fast_path.compile_model: static shapes, inductor
freezing), under inference mode as the engine generates.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import torch

from studio.eval.bench import SAO_SMALL_CONFIG, describe_machine
from studio.fast_path import compile_model, keep_freed_memory
from studio.models import AudioModel, ModelConfig, load_model
from studio.models.model import Conditioning
from studio.models.registry import model_label, resolve_model


def timed(fn: Callable[[], torch.Tensor]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def compare(build: Callable[[], AudioModel], rounds: int) -> dict[str, Any]:
    """Two builds of one model, one compiled, the DiT step and the decode, interleaved."""
    model, compiled = build(), build()
    c = model.config
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(1, c.autoencoder.latent_dim, c.latent_length, generator=generator)
    t = torch.tensor([0.7])
    context = torch.randn(1, 65, c.cond_dim, generator=generator) if c.context_cond_ids else None
    global_cond = torch.randn(1, c.dit.global_cond_dim, generator=generator) if c.global_cond_ids else None
    cond = Conditioning(context, global_cond)
    compile_model(compiled)
    sides = {"eager": model, "compiled": compiled}
    work = {
        "dit_step": {name: (lambda m=m: m.velocity(x, t, cond)) for name, m in sides.items()},
        "vae_decode": {name: (lambda m=m: m.vae.decode(x)) for name, m in sides.items()},
    }
    result: dict[str, Any] = {}
    with torch.inference_mode():
        for stage, fns in work.items():
            first = {name: timed(fn) for name, fn in fns.items()}  # the compiled side compiles here
            error = (fns["compiled"]() - fns["eager"]()).norm() / fns["eager"]().norm()
            times: dict[str, list[float]] = {name: [] for name in fns}
            for round_ in range(rounds):
                order = list(fns) if round_ % 2 == 0 else list(fns)[::-1]
                for name in order:
                    times[name].append(timed(fns[name]))
            medians = {name: statistics.median(values) for name, values in times.items()}
            result[stage] = {
                "eager_s": medians["eager"],
                "compiled_s": medians["compiled"],
                "speedup": medians["eager"] / medians["compiled"],
                "first_call_s": first,
                "relative_error": float(error),
                "rounds": times,
            }
            eager_ms, compiled_ms = medians["eager"] * 1e3, medians["compiled"] * 1e3
            print(
                f"  {stage}: eager {eager_ms:.1f} ms, compiled {compiled_ms:.1f} ms "
                f"({result[stage]['speedup']:.2f}x; compiling {first['compiled']:.0f} s)",
                flush=True,
            )
    return result


def sao_small() -> AudioModel:
    """stable-audio-open-small's architecture, the same random weights on every call."""
    torch.manual_seed(0)
    return AudioModel(ModelConfig.from_dict(SAO_SMALL_CONFIG)).eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=["studio-mini"], help="model names or folders")
    parser.add_argument("--arch", choices=["sao-small"], help="also stable-audio-open-small's architecture")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument(
        "--arch-rounds", type=int, default=3, help="rounds for sao-small (a decode takes ~10 s)"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path(f"reports/bench/compile-cpu-{date.today()}.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # as the engine runs on a CPU
    models: dict[str, Any] = {}
    for name in args.models:
        entry = resolve_model(name)
        print(model_label(entry.name), flush=True)
        models[model_label(entry.name)] = compare(
            lambda path=entry.path: load_model(path).eval(), args.rounds
        )
    if args.arch:
        print(args.arch, flush=True)
        models[args.arch] = compare(sao_small, args.arch_rounds)
    report = {
        "date": str(date.today()),
        "what": "eager vs torch.compile (studio.fast_path.compile_model), interleaved, float32, batch 1",
        "torch_threads": torch.get_num_threads(),
        "machine": describe_machine(torch.device("cpu")),
        "models": models,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(args.out)


if __name__ == "__main__":
    main()
