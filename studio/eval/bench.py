"""`studio bench`: latency per stage of generation, end to end, memory and real-time factor.

Stages are timed on the model's own pieces, the way the engine runs them: text conditioning, one
DiT velocity call per sampling step, VAE decode. Every stage boundary synchronises the GPU, so a
stage's time is its own. Then whole takes are timed as the engine makes them, through its fast path
(`--fast-path`: eager, compiled, or one CUDA graph per take), with no synchronisation between
stages; and the floor is computed: the time the take's arithmetic would need at this device's
measured matmul rate (and its DiT weights' reading at its measured copy rate, where that is
longer). Each batch size runs `warmup` untimed times first, then `runs` timed times; results are
the median, min and max. `--arch sao-small` builds stable-audio-open-small's
full-size architecture (random weights unless its checkpoint is on this machine), so speed can be
measured anywhere. Results go to `<out>/<device>-<date>.json`, one entry per model, merged with
what that file already holds.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from functools import partial
from pathlib import Path
from typing import Any

import torch

from studio import sampling
from studio.engine import NoiseSource, diffuse, draw_noises, pick_device, to_host
from studio.errors import ModelNotFoundError, StudioError
from studio.fast_path import GraphBuckets, compile_model, keep_freed_memory, pick_fast_path
from studio.models import AudioModel, MarModel, ModelConfig, load_model
from studio.models.conditioners import T5_WIDTHS
from studio.models.precision import pick_dtype, place_model
from studio.models.registry import model_label, resolve_model

SAO_SMALL = "sao-small"
PROMPT = "punchy 808 kick drum with a long tail"
# stable-audio-open-small's model_config.json (../shared/docs/sao-small-format.md).
SAO_SMALL_CONFIG: dict[str, Any] = {
    "model_type": "diffusion_cond",
    "sample_size": 524288,
    "sample_rate": 44100,
    "audio_channels": 2,
    "model": {
        "pretransform": {
            "type": "autoencoder",
            "iterate_batch": True,
            "config": {
                "encoder": {
                    "type": "oobleck",
                    "config": {
                        "in_channels": 2,
                        "channels": 128,
                        "c_mults": [1, 2, 4, 8, 16],
                        "strides": [2, 4, 4, 8, 8],
                        "latent_dim": 128,
                        "use_snake": True,
                    },
                },
                "decoder": {
                    "type": "oobleck",
                    "config": {
                        "out_channels": 2,
                        "channels": 128,
                        "c_mults": [1, 2, 4, 8, 16],
                        "strides": [2, 4, 4, 8, 8],
                        "latent_dim": 64,
                        "use_snake": True,
                        "final_tanh": False,
                    },
                },
                "bottleneck": {"type": "vae"},
                "latent_dim": 64,
                "downsampling_ratio": 2048,
                "io_channels": 2,
            },
        },
        "conditioning": {
            "configs": [
                {"id": "prompt", "type": "t5", "config": {"t5_model_name": "t5-base", "max_length": 64}},
                {"id": "seconds_total", "type": "number", "config": {"min_val": 0, "max_val": 256}},
            ],
            "cond_dim": 768,
        },
        "diffusion": {
            "cross_attention_cond_ids": ["prompt", "seconds_total"],
            "global_cond_ids": ["seconds_total"],
            "diffusion_objective": "rf_denoiser",
            "type": "dit",
            "config": {
                "io_channels": 64,
                "embed_dim": 1024,
                "depth": 16,
                "num_heads": 8,
                "cond_token_dim": 768,
                "global_cond_dim": 768,
                "transformer_type": "continuous_transformer",
                "attn_kwargs": {"qk_norm": "ln"},
            },
        },
        "io_channels": 64,
    },
}


@dataclass(frozen=True)
class BenchConfig:
    model: str | None = None
    arch: str | None = None  # "sao-small": the full-size architecture, random weights if need be
    device: str | None = None
    dtype: str | None = None
    batch_sizes: tuple[int, ...] = (1, 8)
    steps: int = 8
    sampler: str = "pingpong"
    cfg: float | None = None  # default: the model's default_cfg; above 1 each step runs two branches
    seconds: float | None = None  # default: the model's full length
    runs: int = 5
    warmup: int = 1
    out: Path = Path("reports/bench")
    fast_path: str | None = None  # default: the engine's for the device


@dataclass
class BenchResult:
    path: Path
    name: str
    entry: dict[str, Any]


def _t5_cached(name: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    def cached(filename: str) -> bool:
        return isinstance(try_to_load_from_cache(name, filename), str)

    return cached("config.json") and (cached("model.safetensors") or cached("pytorch_model.bin"))


# t5-base's shape (its Hugging Face config): a stand-in of it times text encoding as the real one.
T5_BASE_SHAPE = {
    "d_model": 768,
    "d_kv": 64,
    "d_ff": 3072,
    "num_layers": 12,
    "num_heads": 12,
    "vocab_size": 32128,
}


def _word_tokens(prompts: list[str], max_length: int, **_: object) -> Any:
    """A T5 tokenizer's output for the stand-in: one id per word (from its CRC), then </s>."""
    from transformers import BatchEncoding

    ids = torch.zeros(len(prompts), max_length, dtype=torch.long)
    for row, prompt in enumerate(prompts):
        words = [3 + zlib.crc32(w.encode()) % 32000 for w in prompt.split()][: max_length - 1]
        ids[row, : len(words) + 1] = torch.tensor([*words, 1])
    return BatchEncoding({"input_ids": ids, "attention_mask": (ids != 0).long()})


def _text_encoder(model: AudioModel, device: torch.device) -> str:
    """Which prompt encoder runs. A t5-base that is not cached here is replaced by a random one of
    its shape (12 layers, fp16 on CUDA as the real one), and said so."""
    cond = model.config.prompt_conditioner
    if cond is None:
        return "none"
    if cond.type != "t5":
        return cond.type
    name = cond.options.get("t5_model_name", "t5-base")
    if _t5_cached(name):
        return f"t5 ({name})"
    if T5_WIDTHS.get(name) != T5_BASE_SHAPE["d_model"]:
        raise StudioError(
            f"the T5 text encoder '{name}' is not in the Hugging Face cache", "run once online to cache it"
        )
    from transformers import T5Config, T5EncoderModel

    t5 = T5EncoderModel(T5Config(**T5_BASE_SHAPE, feed_forward_proj="relu")).eval().to(device)
    model.prompt_encoder._backbone = (_word_tokens, t5.half() if device.type == "cuda" else t5)
    return (
        f"stand-in for {name}, not in the Hugging Face cache: a random T5 encoder of its shape "
        "(text-encoding times as the real one's; the takes' conditioning is random)"
    )


def build_model(config: BenchConfig, device: torch.device, dtype: torch.dtype) -> tuple[AudioModel, dict]:
    """The model to time and what it is: a model folder/name, or the sao-small architecture."""
    if config.arch is not None and config.arch != SAO_SMALL:
        raise StudioError(f"unknown architecture '{config.arch}'", f"use --arch {SAO_SMALL}")
    if config.arch == SAO_SMALL:
        try:
            entry = resolve_model("stable-audio-open-small", download=False)
        except ModelNotFoundError:
            entry = None
        if entry is None:
            torch.manual_seed(0)
            with torch.device(device):  # built in place: no 2 GB copy from the CPU
                model = AudioModel(ModelConfig.from_dict(SAO_SMALL_CONFIG))
            placement = place_model(model.eval(), device, dtype)
            info = {"name": SAO_SMALL, "weights": "random (checkpoint not on this machine)"}
        else:
            model = load_model(entry.path)
            placement = place_model(model, device, dtype)
            info = {"name": SAO_SMALL, "weights": str(entry.path)}
    else:
        entry = resolve_model(config.model)
        model = load_model(entry.path)
        if isinstance(model, MarModel):
            raise StudioError(
                f"{entry.name} is a masked autoregressive (MAR) model; studio bench times the stages of "
                "diffusion (DiT) models",
                "`studio eval` measures a MAR model's latency per decoding setting (its sampler sweep)",
            )
        placement = place_model(model, device, dtype)
        info = {"name": model_label(entry.name), "weights": str(entry.path)}
    info["text_encoder"] = _text_encoder(model, device)
    info["decoder_dtype"] = str(placement.decoder_dtype).removeprefix("torch.")
    info["decoder_fp16_snr_db"] = placement.decoder_snr_db
    info["parameters"] = {
        "dit": sum(p.numel() for p in model.dit.parameters()),
        "vae": sum(p.numel() for p in model.vae.parameters()),
    }
    return model, info


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.inference_mode()
def time_generation(
    model: AudioModel,
    batch: int,
    seconds: float,
    steps: int,
    sampler: str,
    device: torch.device,
    cfg: float = 1.0,
) -> dict[str, Any]:
    """One generation of `batch` takes, timed per stage (seconds); with cfg above 1, each step
    within the model's guidance interval runs the conditional and unconditional branches, as the
    engine does."""
    c = model.config
    _sync(device)
    start = time.perf_counter()
    cond = model.condition([PROMPT] * batch, [seconds] * batch)
    _sync(device)
    text = time.perf_counter() - start
    step_times: list[float] = []
    conditional: sampling.VelocityFn = partial(model.velocity, cond=cond)
    guided = conditional
    if cfg != 1 and cond.context is not None:
        uncond = cond.unconditional(None)
        guided = sampling.guided(partial(model.velocities, conds=(cond, uncond)), cfg)

    def timed(velocity: sampling.VelocityFn) -> sampling.VelocityFn:
        def run(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            _sync(device)
            begin = time.perf_counter()
            v = velocity(x, t)
            _sync(device)
            step_times.append(time.perf_counter() - begin)
            return v

        return run

    x = torch.randn(batch, c.autoencoder.latent_dim, c.latent_length, device=device)
    schedule = sampling.schedule_for(sampler, steps)
    fresh_noise = lambda _: torch.randn_like(x)  # noqa: E731
    x = sampling.sample(
        sampler, x, schedule, timed(guided), timed(conditional), c.guidance_interval, fresh_noise
    )
    _sync(device)
    sampled = time.perf_counter()
    model.vae.decode(x.float())
    _sync(device)
    end = time.perf_counter()
    return {
        "text_encoding": text,
        "steps": step_times,
        "sampling": sampled - start - text,
        "vae_decode": end - sampled,
        "end_to_end": end - start,
    }


def _stats(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def _peak_rss_mb() -> float | None:
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


@torch.inference_mode()
def time_take(
    model: AudioModel,
    batch: int,
    seconds: float,
    steps: int,
    sampler: str,
    device: torch.device,
    cfg: float,
    graphs: GraphBuckets | None,
) -> float:
    """One generation of `batch` takes as the engine makes it, in seconds: conditioning, every noise
    drawn on the CPU and copied once, sampling and decoding (one graph replay on the graphs path),
    the audio back on the host."""
    c = model.config
    _sync(device)
    start = time.perf_counter()
    cond = model.condition([PROMPT] * batch, [seconds] * batch)
    noise = NoiseSource([(i, i, 1.0) for i in range(batch)], (c.autoencoder.latent_dim, c.latent_length))
    noises, phase_noise = draw_noises(noise, model.vae, sampler, steps, device)
    guided = cfg != 1 and cond.context is not None
    uncond_context = torch.zeros_like(cond.context) if guided else None
    settings = (sampler, steps, 1.0, 0.0)  # PROMPT states no tempo: no grid guidance
    to_host(diffuse(model, graphs, settings, cfg, cond, uncond_context, noises[0], noises, phase_noise))
    return time.perf_counter() - start


def measure_peaks(device: torch.device, dtypes: set[torch.dtype]) -> dict[str, float]:
    """This device's matmul rate (FLOP/s) in each dtype and its copy rate (bytes/s), measured."""
    size = 8192 if device.type == "cuda" else 1024
    peaks = {}
    for dtype in dtypes:
        a = torch.randn(size, size, device=device).to(dtype)
        seconds = _best_of(lambda a=a: a @ a, device)
        peaks[f"matmul_{str(dtype).removeprefix('torch.')}"] = 2 * size**3 / seconds
    block = torch.empty(2**28 if device.type == "cuda" else 2**25, dtype=torch.uint8, device=device)
    copy = torch.empty_like(block)
    peaks["copy_bytes"] = 2 * block.numel() / _best_of(lambda: copy.copy_(block), device)
    return peaks


def _best_of(work: Callable[[], object], device: torch.device, repeats: int = 5) -> float:
    work()
    best = float("inf")
    for _ in range(repeats):
        _sync(device)
        begin = time.perf_counter()
        work()
        _sync(device)
        best = min(best, time.perf_counter() - begin)
    return best


@torch.inference_mode()
def flops_per_take(model: AudioModel, cfg: float, device: torch.device) -> tuple[int, int]:
    """One take's FLOPs in a sampling step (both branches under guidance) and in its decode; a
    batch costs as many times these."""
    from torch.utils.flop_counter import FlopCounterMode

    c = model.config
    rows = 2 if cfg != 1 and c.context_cond_ids else 1
    x = torch.randn(rows, c.autoencoder.latent_dim, c.latent_length, device=device)
    cond = model.condition([PROMPT] * rows, [c.max_seconds] * rows)
    # Counted eagerly: compiled code runs past the dispatcher that FlopCounterMode listens at.
    with torch.compiler.set_stance("force_eager"):
        with FlopCounterMode(display=False) as step_counter:
            model.velocity(x, torch.full((rows,), 0.5, device=device), cond)
        with FlopCounterMode(display=False) as decode_counter:
            model.vae.decode(x[:1])
    return step_counter.get_total_flops(), decode_counter.get_total_flops()


def computed_floor(
    model: AudioModel, batch: int, steps: int, flops: tuple[int, int], peaks: dict[str, float]
) -> dict[str, float]:
    """The least time a batch's sampling and decode could take here: each step's FLOPs at the
    measured matmul rate in the DiT's dtype, or its weights read once at the copy rate, whichever
    is longer, plus the decode's FLOPs at the rate of the decoder's dtype. Convolutions, attention
    and norms rarely reach the matmul rate, so real times stay above it."""
    step_flops, decode_flops = batch * flops[0], batch * flops[1]
    dit_dtype = str(model.dit.proj_in.weight.dtype).removeprefix("torch.")
    decoder_dtype = str(model.vae.decoder_dtype).removeprefix("torch.")
    dit_bytes = sum(p.numel() * p.element_size() for p in model.dit.parameters())
    step = max(step_flops / peaks[f"matmul_{dit_dtype}"], dit_bytes / peaks["copy_bytes"])
    decode = decode_flops / peaks[f"matmul_{decoder_dtype}"]
    return {
        "step_gflop": step_flops / 1e9,
        "decode_gflop": decode_flops / 1e9,
        "sampling_s": steps * step,
        "vae_decode_s": decode,
        "total_s": steps * step + decode,
    }


def bench_batch(
    model: AudioModel,
    config: BenchConfig,
    batch: int,
    seconds: float,
    device: torch.device,
    cfg: float,
    graphs: GraphBuckets | None = None,
) -> dict[str, Any]:
    """Warm-up runs, then timed runs of one batch size: stage statistics, whole takes through the
    fast path, memory and RTF."""
    for _ in range(config.warmup):
        time_generation(model, batch, seconds, config.steps, config.sampler, device, cfg)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    runs = [
        time_generation(model, batch, seconds, config.steps, config.sampler, device, cfg)
        for _ in range(config.runs)
    ]
    take = partial(time_take, model, batch, seconds, config.steps, config.sampler, device, cfg, graphs)
    for _ in range(config.warmup + (graphs is not None)):  # the graphs path captures on its first
        take()
    takes = _stats([take() for _ in range(config.runs)])
    end_to_end = _stats([r["end_to_end"] for r in runs])
    return {
        "batch_size": batch,
        "warmup_runs": config.warmup,
        "runs": config.runs,
        "text_encoding_s": _stats([r["text_encoding"] for r in runs]),
        "step_s": [_stats([r["steps"][i] for r in runs]) for i in range(config.steps)],
        "sampling_s": _stats([r["sampling"] for r in runs]),
        "vae_decode_s": _stats([r["vae_decode"] for r in runs]),
        "end_to_end_s": end_to_end,
        "per_take_s": end_to_end["median"] / batch,
        "take_s": takes,  # whole generations through the fast path, no synchronisation between stages
        "take_per_take_s": takes["median"] / batch,
        # Audio made per wall-clock second: batch x take length over the median end-to-end time.
        "rtf": batch * seconds / end_to_end["median"],
        "peak_vram_mb": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
        "peak_rss_mb": _peak_rss_mb(),
    }


def describe_machine(device: torch.device) -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass  # not Linux: platform.processor() is what there is
    machine: dict[str, Any] = {
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "ram_gb": _ram_gb(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        machine["gpu"] = {
            "name": props.name,
            "memory_gb": round(props.total_memory / 2**30, 1),
            "capability": f"{props.major}.{props.minor}",
            "cuda": torch.version.cuda,
        }
    return machine


def _ram_gb() -> float | None:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return None  # sysconf names are POSIX-only


def run_bench(config: BenchConfig, say: Callable[[str], None] = lambda _: None) -> BenchResult:
    if config.sampler not in sampling.SAMPLERS:
        raise StudioError(f"unknown sampler '{config.sampler}'", f"use one of {', '.join(sampling.SAMPLERS)}")
    if config.runs < 1 or config.steps < 1 or not config.batch_sizes or min(config.batch_sizes) < 1:
        raise StudioError("runs, steps and batch sizes must be at least 1")
    device = pick_device(config.device)
    dtype = pick_dtype(device, config.dtype)
    fast_path = pick_fast_path(device, config.fast_path)
    if device.type == "cpu":
        keep_freed_memory()  # as the engine does
    say(f"building {config.arch or config.model or 'the default model'} on {device} ({dtype}, {fast_path})")
    model, info = build_model(config, device, dtype)
    if fast_path != "eager":
        compile_model(model)
    graphs = GraphBuckets() if fast_path == "graphs" else None
    seconds = config.seconds or model.config.max_seconds
    cfg = model.config.guidance(config.cfg)
    peaks = measure_peaks(device, {dtype, model.vae.decoder_dtype})
    flops = flops_per_take(model, cfg, device)
    batches: dict[str, Any] = {}
    entry = {
        **info,
        "device": str(device),
        "dtype": str(dtype).removeprefix("torch."),
        "fast_path": fast_path,
        "measured_peaks": peaks,
        "sampler": config.sampler,
        "steps": config.steps,
        "cfg": cfg,
        "audio_seconds": seconds,
        "prompt": PROMPT,
        "batches": batches,
        "notes": "peak_rss_mb is the process's high-water mark so far (it includes model loading); "
        "stage times include a GPU synchronisation at each boundary",
    }
    path = config.out / f"{device.type}-{date.today().isoformat()}.json"
    for batch in config.batch_sizes:
        say(f"batch {batch}: {config.warmup} warm-up + {config.runs} timed runs of {config.steps} steps")
        batches[str(batch)] = bench_batch(model, config, batch, seconds, device, cfg, graphs)
        batches[str(batch)]["floor"] = computed_floor(model, batch, config.steps, flops, peaks)
        write_entry(path, device, info["name"], entry)  # each batch size as it ends: a later one may not
    return BenchResult(path, info["name"], entry)


def write_entry(path: Path, device: torch.device, name: str, entry: dict[str, Any]) -> None:
    """Add one model's entry to the day's file for this device. An earlier entry for the same model
    and settings keeps the batch sizes this run did not measure, so batch 1 and batch 8 can be
    measured by separate runs (the slow CPU case); any other earlier entry is replaced."""
    report = json.loads(path.read_text()) if path.is_file() else {}
    report["device"] = device.type
    report["date"] = date.today().isoformat()
    report["machine"] = describe_machine(device)
    benchmarks = report.setdefault("benchmarks", {})
    earlier = benchmarks.get(name)
    if earlier is not None and all(earlier.get(k) == entry[k] for k in _SAME_SETTINGS):
        entry = {**entry, "batches": {**earlier["batches"], **entry["batches"]}}
    benchmarks[name] = entry
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")


_SAME_SETTINGS = (
    "weights",
    "text_encoder",
    "device",
    "dtype",
    "fast_path",
    "sampler",
    "steps",
    "cfg",
    "audio_seconds",
)
