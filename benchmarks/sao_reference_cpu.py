"""Studio's stable-audio-open-small against the reference implementation, stable-audio-tools 0.0.19,
on the same random weights, on this CPU, in one process.

    python benchmarks/sao_reference_cpu.py --reference-path /work/sat-bench/site \
        [--threads 2] [--rounds 10] [--decode-rounds 4] [--out reports/bench/sao-reference-cpu-DATE.json]

Two measurements, each ours against theirs:

  dit     one DiT forward (one sampling step, cfg 1, so no doubled batch): latents [1, 64, 256],
          t [1], cross-attention tokens [1, 65, 768] (64 T5 tokens + the seconds token), global
          condition [1, 768], as stable-audio-open-small samples. Ours: `AudioModel.velocity`;
          theirs: `DiTWrapper.forward` as the reference sampler calls it (cfg_scale 1, batch_cfg).
  decode  one Oobleck VAE decode of latents [1, 64, 256] to stereo audio [1, 2, 524288]. Ours:
          `model.vae.decode`; theirs: `AutoencoderPretransform.decode`.

Both in float32. Where Studio's engine computes the DiT in another dtype on this CPU (bfloat16 on
a CPU with AMX or AVX-512 BF16, studio/models/precision.py), two more DiT measurements follow: ours
as the engine places it against the reference in float32 (how each runs here by default), and like for like,
against the reference with its weights and inputs cast to the same dtype. Their outputs are checked
at --half-tolerance instead of --tolerance.

The reference modules are built from `SAO_SMALL_CONFIG` (studio/eval/bench.py) with
stable-audio-tools' own constructors, and every parameter is drawn at random from a fixed seed (the
reference zero-initialises its output projections, which would make the comparison trivial); that
state dict, under the reference checkpoint names, is loaded into Studio's model through
`studio.models.checkpoint.key_table`, exactly as a released checkpoint would be. Before timing, both
outputs are compared (relative L2 error, must stay under --tolerance); that first call of each side
is also its first warm-up. Rounds alternate which side runs first, so drift falls on both alike.

The machine may be shared (a training job, someone's tests): around every call the script reads how
many CPU seconds other processes ran meanwhile (/proc/stat), and a round is quiet when, for both
sides, that stayed under --quiet-share of a core. Rounds go on until --rounds (DiT, default 10) and
--decode-rounds (default 4; a decode takes ~15 s on 2 cores) quiet ones were timed, or their budget
(--budget 75 s, --decode-budget 180 s) is spent, which keeps a run near 5 minutes. The headline
medians and speedup come from the quiet rounds; `all_rounds` and the per-call `rounds` list keep
everything. Each call's minor page faults are recorded too: the decode's activations are hundreds
of MB, which glibc maps fresh (and the kernel zero-fills) on every call. Both
sides run in eval mode under the same grad mode (`--grad-mode`, default inference_mode, what
Studio's engine generates under); the reference keeps its defaults (activation checkpointing in
its transformer's forward, per-call weight norm in its decoder, no torch.compile).

Setting up the reference without touching this environment (its dependencies pin other torch
versions and would pull CUDA wheels, so it is never pip-installed here):

    mkdir -p /work/sat-bench && cd /work/sat-bench
    pip download stable-audio-tools==0.0.19 --no-deps -d wheels
    python -m zipfile -e wheels/stable_audio_tools-0.0.19-py3-none-any.whl site
    pip install --no-deps --target site einops einops-exts   # pure Python, only if not installed

and pass `--reference-path /work/sat-bench/site`: that folder goes on sys.path inside this process
only. The reference's other imports that the DiT and Oobleck paths never run (torchaudio,
alias_free_torch, k_diffusion) are replaced, only where they are not installed, by empty stub
modules (see `STUBS`); flash_attn is optional in the reference and stays absent (its SDPA path runs).
No T5 is built: the timed modules take the conditioning tensors directly.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import resource
import statistics
import sys
import time
import types
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import torch

from studio.eval.bench import SAO_SMALL_CONFIG, describe_machine
from studio.fast_path import keep_freed_memory
from studio.models import AudioModel, ModelConfig
from studio.models.checkpoint import key_table
from studio.models.model import Conditioning
from studio.models.precision import pick_dtype, place_model

SAT_VERSION = "0.0.19"
PROMPT_TOKENS = 64  # stable-audio-open-small's T5 max_length; the seconds token makes 65
Call = dict[str, float | None]  # one timed call's measurements (see call_stats)


class _Unavailable:
    """Stands in for a class the benchmark never constructs; constructing it is a bug."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        raise RuntimeError("stubbed out by benchmarks/sao_reference_cpu.py: this path is not benchmarked")


# module -> attributes the reference reads at import time. Only the DiT and Oobleck paths run, and
# they touch none of these: torchaudio's Resample is for input resampling, alias_free_torch's
# Activation1d for anti-aliased activations (off in this config), k_diffusion for v-objective samplers.
STUBS: dict[str, dict[str, object]] = {
    "torchaudio": {},
    "torchaudio.transforms": {"Resample": _Unavailable},
    "alias_free_torch": {"Activation1d": _Unavailable},
    "k_diffusion": {},
}


def install_stubs() -> list[str]:
    """Put an empty module in sys.modules for each of STUBS that is not installed; returns their names."""
    stubbed = []
    for name, attributes in STUBS.items():
        root = name.split(".")[0]
        if root not in stubbed and (root in sys.modules or importlib.util.find_spec(root) is not None):
            continue  # installed: the real module is used
        module = types.ModuleType(name)
        for attribute, value in attributes.items():
            setattr(module, attribute, value)
        sys.modules[name] = module
        if "." in name:
            setattr(sys.modules[name.rsplit(".", 1)[0]], name.rsplit(".", 1)[1], module)
        stubbed.append(name)
    return stubbed


def import_reference(path: Path | None) -> tuple[type, Callable[..., Any], list[str]]:
    """(DiTWrapper, create_pretransform_from_config, stubbed modules) from stable-audio-tools."""
    if path is not None:
        sys.path.insert(0, str(path.resolve()))
    os.environ.setdefault("ENABLE_TORCH_COMPILE", "0")  # the reference's default: no torch.compile
    stubbed = install_stubs()
    try:
        with contextlib.redirect_stdout(sys.stderr):  # it prints that flash_attn is not installed
            from stable_audio_tools.models.diffusion import DiTWrapper
            from stable_audio_tools.models.factory import create_pretransform_from_config
    except ImportError as exc:
        raise SystemExit(
            f"cannot import stable-audio-tools ({exc}); see this script's docstring for the setup, "
            "then pass --reference-path"
        ) from exc
    import stable_audio_tools

    where = Path(stable_audio_tools.__file__).resolve().parent.parent
    version = next((p.name for p in where.glob("stable_audio_tools-*.dist-info")), "unknown version")
    if SAT_VERSION not in version:
        print(f"warning: expected stable-audio-tools {SAT_VERSION}, found {version}", file=sys.stderr)
    return DiTWrapper, create_pretransform_from_config, stubbed


@torch.no_grad()
def randomise(module: torch.nn.Module, generator: torch.Generator) -> None:
    """Draw every parameter at random, so that no branch is the reference's zero init.

    Matrices and kernels get std 0.5 / sqrt(fan_in); norm gains 1 ± 0.2; biases ± 0.05; weight-norm
    gains uniform in [0.2, 0.6]; Snake's log-scale alpha and beta ± 0.2.
    """
    for name, p in module.named_parameters():
        leaf = name.rsplit(".", 1)[-1]
        if leaf == "weight_g":
            p.copy_(torch.rand(p.shape, generator=generator) * 0.4 + 0.2)
        elif p.dim() >= 2:
            p.copy_(torch.randn(p.shape, generator=generator) * (0.5 / p[0].numel() ** 0.5))
        elif leaf == "bias":
            p.copy_(torch.randn(p.shape, generator=generator) * 0.05)
        elif leaf in ("alpha", "beta"):
            p.copy_(torch.randn(p.shape, generator=generator) * 0.2)
        elif leaf in ("gamma", "weight"):
            p.copy_(1 + torch.randn(p.shape, generator=generator) * 0.2)
        else:
            raise RuntimeError(f"no rule to randomise reference parameter '{name}'")


def build_pair(
    reference_path: Path | None, seed: int
) -> tuple[AudioModel, torch.nn.Module, torch.nn.Module, dict[str, Any]]:
    """Studio's model and the reference DiT wrapper and pretransform, on the same random weights."""
    dit_wrapper, create_pretransform, stubbed = import_reference(reference_path)
    model_config = SAO_SMALL_CONFIG["model"]
    diffusion = model_config["diffusion"]
    torch.manual_seed(seed)
    with contextlib.redirect_stdout(sys.stderr):
        ref_dit = dit_wrapper(diffusion_objective=diffusion["diffusion_objective"], **diffusion["config"])
        ref_vae = create_pretransform(model_config["pretransform"], SAO_SMALL_CONFIG["sample_rate"])
    generator = torch.Generator().manual_seed(seed)
    randomise(ref_dit, generator)
    randomise(ref_vae, generator)
    ref_dit.eval()
    ref_vae.eval()

    # The reference checkpoint names: the DiT wrapper sits at model.model, the pretransform at pretransform.
    state = {f"model.{k}": v for k, v in ref_dit.state_dict().items()}
    state |= {f"pretransform.{k}": v for k, v in ref_vae.state_dict().items()}
    ours = AudioModel(ModelConfig.from_dict(SAO_SMALL_CONFIG))
    table = key_table(ours)
    timed = {k for k, v in table.items() if v.startswith(("dit.", "vae."))}
    missing = sorted(timed - set(state))
    unexpected = sorted(set(state) - set(table))
    if missing or unexpected:
        raise SystemExit(f"key mismatch: missing {missing[:5]}, unexpected {unexpected[:5]}")
    # Copies, as studio's load_weights makes: neither side shares the other's storage.
    result = ours.load_state_dict({table[k]: v.clone() for k, v in state.items()}, strict=False)
    not_loaded = [k for k in result.missing_keys if not k.startswith("conditioners.")]
    if not_loaded or result.unexpected_keys:
        raise SystemExit(f"not loaded: {not_loaded[:5]}, unexpected: {result.unexpected_keys[:5]}")
    ours.eval()
    info = {
        "stubbed_modules": stubbed,
        "tensors_loaded": len(state),
        "parameters": {
            "dit": sum(p.numel() for p in ref_dit.parameters()),
            "vae": sum(p.numel() for p in ref_vae.parameters()),
        },
    }
    return ours, ref_dit, ref_vae, info


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return float((actual.double() - expected.double()).norm() / expected.double().norm())


def summary(values: list[float]) -> dict[str, float]:
    return {"median_s": statistics.median(values), "min_s": min(values), "max_s": max(values)}


def machine_busy_s() -> float | None:
    """CPU seconds every process on the machine has run since boot (Linux /proc/stat), or None."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def call_stats(fn: Callable[[], torch.Tensor]) -> Call:
    """One call: wall seconds, this process's CPU seconds, other processes' CPU seconds meanwhile
    (what competed with it; None off Linux) and this process's minor page faults."""
    usage, busy, start = resource.getrusage(resource.RUSAGE_SELF), machine_busy_s(), time.perf_counter()
    fn()
    wall = time.perf_counter() - start
    after, busy_after = resource.getrusage(resource.RUSAGE_SELF), machine_busy_s()
    own = (after.ru_utime + after.ru_stime) - (usage.ru_utime + usage.ru_stime)
    others = None if busy is None or busy_after is None else max(0.0, busy_after - busy - own)
    return {
        "wall_s": wall,
        "cpu_s": own,
        "others_cpu_s": others,
        "minor_faults": after.ru_minflt - usage.ru_minflt,
    }


def is_quiet(call: Call, share: float) -> bool:
    """Whether other processes ran less than `share` of a core alongside the call (unknown: yes)."""
    others, wall = call["others_cpu_s"], float(call["wall_s"] or 0.0)
    return others is None or others <= share * wall


def time_pair(
    ours: Callable[[], torch.Tensor],
    theirs: Callable[[], torch.Tensor],
    rounds: int,
    warmup: int,
    budget_s: float,
    quiet_share: float,
) -> list[dict[str, Any]]:
    """Interleaved rounds, alternating which side goes first, until `rounds` of them were quiet for
    both sides (see `is_quiet`) or, after at least `rounds` timed rounds, `budget_s` ran out.
    Returns each timed round: {"ours": Call, "theirs": Call, "quiet": bool}."""
    timed: list[dict[str, Any]] = []
    sides = [("ours", ours), ("theirs", theirs)]
    start = time.perf_counter()
    index = 0
    while True:
        entry: dict[str, Any] = {
            name: call_stats(fn) for name, fn in (sides if index % 2 == 0 else sides[::-1])
        }
        if index >= warmup:
            entry["quiet"] = is_quiet(entry["ours"], quiet_share) and is_quiet(entry["theirs"], quiet_share)
            timed.append(entry)
        index += 1
        quiet = sum(e["quiet"] for e in timed)
        if quiet >= rounds or (len(timed) >= rounds and time.perf_counter() - start > budget_s):
            return timed


def side_summary(calls: list[Call]) -> dict[str, Any]:
    walls = [float(c["wall_s"] or 0.0) for c in calls]
    return summary(walls) | {
        "cpu_s_median": statistics.median(float(c["cpu_s"] or 0.0) for c in calls),
        "minor_page_faults_median": statistics.median(float(c["minor_faults"] or 0) for c in calls),
    }


@contextlib.contextmanager
def grad_mode(name: str) -> Iterator[None]:
    with torch.inference_mode() if name == "inference_mode" else torch.no_grad():
        yield


def measure(
    name: str,
    ours: Callable[[], torch.Tensor],
    theirs: Callable[[], torch.Tensor],
    rounds: int,
    warmup: int,
    budget_s: float,
    tolerance: float,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Check that both sides agree, then time them interleaved.

    The headline numbers (ours, theirs, speedup) come from the quiet rounds, where nothing else ran
    on the machine; `all_rounds` has them over every timed round, and `rounds` every call.
    """
    ours_out, theirs_out = ours(), theirs()
    error = relative_error(ours_out, theirs_out)
    print(f"{name}: output {tuple(ours_out.shape)}, relative error {error:.2e}", file=sys.stderr)
    if not (error < tolerance and torch.isfinite(theirs_out).all() and theirs_out.abs().max() > 0):
        raise SystemExit(f"{name}: outputs disagree (relative error {error:.3e}, tolerance {tolerance})")
    timed = time_pair(ours, theirs, rounds, warmup, budget_s, args.quiet_share)
    quiet = [e for e in timed if e["quiet"]]
    headline = quiet or timed

    def sides(entries: list[dict[str, Any]]) -> dict[str, Any]:
        out = {side: side_summary([e[side] for e in entries]) for side in ("ours", "theirs")}
        out["speedup"] = out["theirs"]["median_s"] / out["ours"]["median_s"]
        return out

    result: dict[str, Any] = {
        "output_shape": list(ours_out.shape),
        "output_rms": float(theirs_out.pow(2).mean().sqrt()),
        "relative_error": error,
        "tolerance": tolerance,
        "max_abs_error": float((ours_out - theirs_out).abs().max()),
        "warmup_rounds": warmup,
        "timed_rounds": len(timed),
        "quiet_rounds": len(quiet),
        "headline_from": "quiet rounds" if quiet else "all rounds (none was quiet)",
    }
    result |= sides(headline)
    result["all_rounds"] = sides(timed)
    result["rounds"] = [
        {
            "quiet": e["quiet"],
            **{
                side: {k: round(float(v), 3) if isinstance(v, float) else v for k, v in e[side].items()}
                for side in ("ours", "theirs")
            },
        }
        for e in timed
    ]
    print(
        f"{name}: ours {result['ours']['median_s'] * 1000:.1f} ms, theirs "
        f"{result['theirs']['median_s'] * 1000:.1f} ms (medians of {len(headline)} "
        f"{'quiet' if quiet else 'NOT quiet'} rounds of {len(timed)}), speedup {result['speedup']:.3f}x",
        file=sys.stderr,
    )
    return result


def half_precision_steps(
    ours: AudioModel,
    ref_dit: torch.nn.Module,
    dtype: torch.dtype,
    x: torch.Tensor,
    t: torch.Tensor,
    cond: Conditioning,
    reference_call: Callable[[torch.dtype], torch.Tensor],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """The DiT step as Studio's engine runs it on this CPU (its denoiser in `dtype`, the precision
    policy's float32 islands kept) against the reference as it runs here by default (float32), and,
    like for like, against the reference with every weight and input cast to `dtype`. Both change
    the models in place, so they run last."""
    place_model(ours, torch.device("cpu"), dtype)
    measurements = {
        "dit_step_engine_dtype": measure(
            "dit_step_engine_dtype",
            lambda: ours.velocity(x, t, cond),
            lambda: reference_call(torch.float32),
            args.rounds,
            args.warmup,
            args.budget,
            args.half_tolerance,
            args,
        )
    }
    ref_dit.to(dtype)
    measurements["dit_step_both_half"] = measure(
        "dit_step_both_half",
        lambda: ours.velocity(x, t, cond),
        lambda: reference_call(dtype),
        args.rounds,
        args.warmup,
        args.budget,
        args.half_tolerance,
        args,
    )
    for entry in measurements.values():
        entry["ours_dtype"] = str(dtype).removeprefix("torch.")
    measurements["dit_step_engine_dtype"]["theirs_dtype"] = "float32"
    measurements["dit_step_both_half"]["theirs_dtype"] = str(dtype).removeprefix("torch.")
    return measurements


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference-path", type=Path, default=None, help="the unpacked stable-audio-tools")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=10, help="quiet DiT rounds to time")
    parser.add_argument(
        "--decode-rounds", type=int, default=4, help="quiet decode rounds to time (~15 s a call)"
    )
    parser.add_argument("--warmup", type=int, default=1, help="untimed DiT rounds after the check")
    parser.add_argument("--decode-warmup", type=int, default=0, help="untimed decode rounds after the check")
    parser.add_argument(
        "--budget", type=float, default=75, help="seconds of DiT rounds to wait for quiet ones"
    )
    parser.add_argument(
        "--decode-budget", type=float, default=180, help="seconds of decode rounds to wait for quiet ones"
    )
    parser.add_argument(
        "--quiet-share",
        type=float,
        default=0.05,
        help="a round is quiet when other processes ran under this share of a core meanwhile",
    )
    parser.add_argument("--frames", type=int, default=256, help="latent frames (256: the model's 11.9 s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tolerance", type=float, default=1e-4, help="relative error, float32 vs float32")
    parser.add_argument(
        "--half-tolerance",
        type=float,
        default=3e-2,
        help="relative error where a side computes in half precision (bf16 keeps 8 bits of mantissa)",
    )
    parser.add_argument("--grad-mode", choices=("inference_mode", "no_grad"), default="inference_mode")
    parser.add_argument("--only", choices=("dit", "decode"), default=None, help="run one measurement")
    parser.add_argument(
        "--out", type=Path, default=Path(f"reports/bench/sao-reference-cpu-{date.today()}.json")
    )
    parser.add_argument(
        "--keep-freed-memory",
        action="store_true",
        help="glibc keeps freed memory, as Studio's CPU engine sets it (both sides gain; the default "
        "compares the implementations under the allocator's defaults)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.keep_freed_memory:
        keep_freed_memory()
    started = time.perf_counter()
    load_at_start = list(os.getloadavg())

    ours, ref_dit, ref_vae, info = build_pair(args.reference_path, args.seed)

    config = ours.config
    generator = torch.Generator().manual_seed(args.seed + 1)
    x = torch.randn(1, config.autoencoder.latent_dim, args.frames, generator=generator)
    t = torch.tensor([0.7])
    global_cond = torch.randn(1, config.dit.global_cond_dim, generator=generator)
    prompt = torch.randn(1, PROMPT_TOKENS, config.dit.cond_token_dim, generator=generator)
    context = torch.cat((prompt, global_cond[:, None]), dim=1)  # the seconds token is also the global cond
    context_mask = torch.ones(1, context.shape[1], dtype=torch.bool)
    cond = Conditioning(context, global_cond)
    latents = torch.randn(1, config.autoencoder.latent_dim, args.frames, generator=generator)

    def reference_call(dtype: torch.dtype) -> torch.Tensor:
        """The reference DiT as its sampler calls it, inputs in its weights' dtype; float32 out."""
        return ref_dit(
            x.to(dtype),
            t.to(dtype),
            cross_attn_cond=context.to(dtype),
            cross_attn_mask=context_mask,
            global_cond=global_cond.to(dtype),
            cfg_scale=1.0,
            batch_cfg=True,
        ).float()

    engine_dtype = pick_dtype(torch.device("cpu"))
    measurements: dict[str, Any] = {}
    with grad_mode(args.grad_mode):
        if args.only in (None, "dit"):
            measurements["dit_step"] = measure(
                "dit_step",
                lambda: ours.velocity(x, t, cond),
                lambda: reference_call(torch.float32),
                args.rounds,
                args.warmup,
                args.budget,
                args.tolerance,
                args,
            )
            measurements["dit_step"]["inputs"] = {
                "x": list(x.shape),
                "t": list(t.shape),
                "cross_attn_cond": list(context.shape),
                "global_cond": list(global_cond.shape),
                "cfg": 1.0,
            }
        if args.only in (None, "decode"):
            measurements["vae_decode"] = measure(
                "vae_decode",
                lambda: ours.vae.decode(latents),
                lambda: ref_vae.decode(latents),
                args.decode_rounds,
                args.decode_warmup,
                args.decode_budget,
                args.tolerance,
                args,
            )
            measurements["vae_decode"]["inputs"] = {"latents": list(latents.shape)}
        if args.only in (None, "dit") and engine_dtype != torch.float32:
            steps = half_precision_steps(ours, ref_dit, engine_dtype, x, t, cond, reference_call, args)
            measurements |= steps

    report = {
        "date": str(date.today()),
        "what": (
            "Studio's stable-audio-open-small against stable-audio-tools (the reference) on the same "
            "random weights, one process, interleaved rounds alternating which side goes first; "
            "speedup = theirs median / ours median"
        ),
        "reference": {
            "package": f"stable-audio-tools {SAT_VERSION} (PyPI wheel, unpacked, not installed)",
            "flash_attn": importlib.util.find_spec("flash_attn") is not None,
            "torch_compile": os.environ.get("ENABLE_TORCH_COMPILE", "0") == "1",
        }
        | info,
        "config": "SAO_SMALL_CONFIG (studio/eval/bench.py)",
        "weights": f"random, seed {args.seed}, every parameter drawn (see randomise())",
        "dtype": "float32, and where the engine's CPU dtype is not (AMX or AVX-512 BF16): the dit_step_* "
        "measurements below",
        "engine_dtype": str(engine_dtype).removeprefix("torch."),
        "grad_mode": args.grad_mode,
        "keep_freed_memory": args.keep_freed_memory,
        "quiet_share": args.quiet_share,
        "torch_threads": torch.get_num_threads(),
        "latent_frames": args.frames,
        "machine": describe_machine(torch.device("cpu")) | {"loadavg_at_start": load_at_start},
        "measurements": measurements,
        "wall_s": time.perf_counter() - started,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(args.out)


if __name__ == "__main__":
    main()
