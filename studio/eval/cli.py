"""`studio eval [adherence|vae|voice|compare]`, `studio bench` and `studio train clap`.

`add_eval_commands(subparsers)` registers `eval` and `bench` on the main parser's subcommands;
`add_clap_train_command(train_subparsers)` registers `clap` under `studio train`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from studio.commands import add_dtype_option, add_fast_path_option, whole_numbers
from studio.errors import StudioError
from studio.eval.corpus import default_corpus_dir

if TYPE_CHECKING:
    from studio.eval.run import EvalResult


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _categories(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    if not names:
        raise argparse.ArgumentTypeError("expected a comma-separated list of categories")
    return names


def _prompt(text: str) -> tuple[str, str]:
    category, sep, prompt = text.partition("=")
    if not sep or not category.strip() or not prompt.strip():
        raise argparse.ArgumentTypeError(f"expected CATEGORY=PROMPT, e.g. kick='punchy kick', got {text!r}")
    return category.strip(), prompt.strip()


def cmd_eval(args: argparse.Namespace) -> int:
    from studio.eval.run import EvalConfig, run_adherence, run_eval, run_vae, run_voice

    if args.mode == "compare":
        return _compare(args)
    if args.reports:
        raise StudioError("--reports is for `studio eval compare`", "drop it, or run `studio eval compare`")
    config = EvalConfig(
        model=args.model,
        corpus=Path(args.corpus),
        out=Path(args.out),
        clap=Path(args.clap) if args.clap else None,
        quick=args.quick,
        device=args.device,
        dtype=args.dtype,
        seed=args.seed,
        cfg=args.cfg,
        takes=args.takes,
        categories=args.categories,
        prompts=dict(args.prompt or ()),
    )
    if args.mode == "vae":
        return _vae(run_vae(config, _say))
    if args.mode == "voice":
        return _voice(run_voice(config, _say))
    result = run_adherence(config, _say) if args.mode == "adherence" else run_eval(config, _say)
    report = result.report
    accuracy = report["category_accuracy"]
    print(f"prompt-category accuracy {accuracy['top1']:.3f} (chance {accuracy['chance']:.3f})")
    if "fad" in report:
        print(
            f"FAD {report['fad']['overall']:.3f}, adherence {report['adherence']['mean']:.3f}, "
            f"CCDS {report['ccds']['mean']:.3f}"
        )
        if not report["diversity"]["rises"]:
            _say("warning: CCDS does not rise with the diversity knob")
    for path in result.files:
        print(path)
    return 0


def _vae(result: EvalResult) -> int:
    report = result.report
    tones, dc, one = report["tone_pitch"], report["dc_offset_dbfs"], report["decode"]["batches"]["1"]
    print(
        f"VAE round trips: category accuracy {report['round_trip_leave_one_out']:.3f} "
        f"(the real clips {report['held_out_leave_one_out']:.3f}); comb score "
        f"{report['comb_score']['round_trips']:.3f} (the originals {report['comb_score']['originals']:.3f}); "
        f"{tones['within_tolerance']} of {tones['count']} pure tones within {tones['tolerance_cents']:g} "
        f"cents; worst DC {dc['round_trips']['max']:.1f} dBFS; share below 40 Hz "
        f"{report['low_band_excess_db']['median']:+.1f} dB; SI-SDR {report['si_sdr_db']['median']:.1f} dB "
        f"(medians); decode {one['median_s'] * 1000:.0f} ms a take"
    )
    for path in result.files:
        print(path)
    return 0


def _voice(result: EvalResult) -> int:
    report = result.report
    variety, pitch, tempo = report["variety"], report["pitch"], report["tempo"]
    decay, dc = report["decay"], report["clean"]["dc_offset_dbfs"]
    print(
        f"variety {variety['mean']:.2f} (mean |correlation| between takes; target "
        f"≤ {variety['target_max']:g}); "
        f"pitch {pitch['share']:.2f} of takes on the note (target ≥ {pitch['target_share']:g}); "
        f"tempo {tempo['share']:.2f} of takes on the BPM (target ≥ {tempo['target_share']:g}); "
        f"decay {decay['share']:.2f} of one-shots ≥ {decay['target_db']:g} dB; "
        f"worst DC {dc['max']:.1f} dBFS (target below {dc['target_max']:g})"
    )
    for path in result.files:
        print(path)
    return 0


def _compare(args: argparse.Namespace) -> int:
    from studio.eval.compare import write_comparison

    if not args.reports:
        raise StudioError(
            "`studio eval compare` needs the reports to compare",
            "pass --reports reports/MODEL_A reports/MODEL_B … (folders with an eval.json)",
        )
    for path in write_comparison([Path(f) for f in args.reports], Path(args.out)):
        print(path)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from studio.eval.bench import BenchConfig, run_bench

    if args.model and args.arch:
        raise StudioError("--model and --arch name two different things to time", "pass one of them")
    result = run_bench(
        BenchConfig(
            model=args.model,
            arch=args.arch,
            device=args.device,
            dtype=args.dtype,
            batch_sizes=args.batch,
            steps=args.steps,
            sampler=args.sampler,
            cfg=args.cfg,
            seconds=args.seconds,
            runs=args.runs,
            warmup=args.warmup,
            out=Path(args.out),
            fast_path=args.fast_path,
        ),
        _say,
    )
    entry = result.entry
    print(
        f"{result.name} on {entry['device']} ({entry['dtype']}), {entry['steps']} {entry['sampler']} steps "
        f"at cfg {entry['cfg']:g}, "
        f"{entry['audio_seconds']:.2f} s of audio per take; medians in seconds:"
    )
    print(f"batch  text    step    decode  total   per take  RTF     take ({entry['fast_path']})  floor")
    for batch, b in entry["batches"].items():
        step = sum(s["median"] for s in b["step_s"]) / len(b["step_s"])
        text, decode, total = (b[k]["median"] for k in ("text_encoding_s", "vae_decode_s", "end_to_end_s"))
        print(
            f"{batch:>5}  {text:.3f}  {step:.3f}  {decode:.3f}  {total:.3f}  {b['per_take_s']:.3f}  "
            f"   {b['rtf']:<6.2f}  {b['take_s']['median']:.4f}         {b['floor']['total_s']:.4f}"
        )
    print(result.path)
    return 0


def cmd_train_clap(args: argparse.Namespace) -> int:
    from studio.eval.clap import ClapTrainConfig, train_clap
    from studio.eval.run import default_clap_dir

    corpus = Path(args.corpus)
    config = ClapTrainConfig(
        corpus=corpus,
        out=Path(args.out) if args.out else default_clap_dir(corpus),
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        log_every=args.log_every,
        device=args.device,
    )
    result = train_clap(config, lambda step, loss: _say(f"step {step}/{config.steps}: loss {loss:.4f}"))
    print(result)
    return 0


def add_eval_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register `eval` and `bench` on the main parser's subcommands."""
    ev = subparsers.add_parser(
        "eval",
        help="score a model: FAD, prompt-category accuracy, adherence, diversity, sampler sweep",
        description="Generate takes for category prompts and score them against the corpus's held-out "
        "clips; writes OUT/<model>/eval.json, eval.md and PNG plots (see docs/eval.md). "
        "`studio eval adherence` runs only prompt-category accuracy (OUT/<model>/adherence.json); "
        "`studio eval vae` only scores the model's VAE round trips (OUT/<model>/vae.json); "
        "`studio eval voice` only what a musician hears first: variety between takes, the note and "
        "tempo a prompt names, one-shot decay, DC and rumble (OUT/<model>/voice.json). "
        "`studio eval compare --reports DIR… --out DIR` tabulates several models' reports.",
    )
    ev.add_argument(
        "mode",
        nargs="?",
        choices=["full", "adherence", "vae", "voice", "compare"],
        default="full",
        help="default: full",
    )
    ev.add_argument("--model", help="model name (see `studio models`) or folder; default studio-mini")
    ev.add_argument(
        "--corpus",
        default=str(default_corpus_dir()),
        help="corpus folder with manifest.jsonl (default: $STUDIO_CORPUS_DIR or ./corpus)",
    )
    ev.add_argument(
        "--quick",
        action="store_true",
        help="2 takes, 3 sampler settings, 3 diversity values; voice: 1 note per instrument, 1 tempo",
    )
    ev.add_argument(
        "--out",
        default="reports",
        help="reports folder (default: reports); for compare, the folder of comparison.{md,json,png}",
    )
    ev.add_argument("--reports", nargs="+", help="compare: reports/<model> folders, each with an eval.json")
    ev.add_argument(
        "--clap", help="contrastive model folder (default: CORPUS/clap, from `studio train clap`)"
    )
    ev.add_argument("--device", help="cuda, mps or cpu (default: the best available)")
    add_dtype_option(ev)
    ev.add_argument("--seed", type=int, default=0, help="anchor seed of the first prompt (default 0)")
    ev.add_argument(
        "--cfg",
        type=float,
        help="classifier-free guidance of every take (default: the model's own, 1 for ARC models)",
    )
    ev.add_argument("--takes", type=int, help="takes per prompt (default 4; --quick 2)")
    ev.add_argument(
        "--categories",
        type=_categories,
        help="comma list (default: the 12 core categories; --quick: those with held-out clips)",
    )
    ev.add_argument(
        "--prompt",
        type=_prompt,
        action="append",
        metavar="CATEGORY=PROMPT",
        help="another phrasing of a category's prompt (repeatable), e.g. --prompt kick='punchy kick'",
    )
    ev.set_defaults(func=cmd_eval)

    bench = subparsers.add_parser(
        "bench",
        help="time text encoding, each sampling step, VAE decode and the whole generation",
        description="Latency per stage and end to end (median/min/max after warm-up), peak RAM/VRAM and "
        "real-time factor; writes OUT/<device>-<date>.json.",
    )
    bench.add_argument("--model", help="model name or folder (default studio-mini)")
    bench.add_argument(
        "--arch",
        choices=["sao-small"],
        help="stable-audio-open-small's full-size architecture; random weights if its checkpoint is absent",
    )
    bench.add_argument("--device", help="cuda or cpu (default: the best available)")
    add_dtype_option(bench)
    bench.add_argument("--batch", type=whole_numbers, default=(1, 8), help="batch sizes (default 1,8)")
    bench.add_argument("--steps", type=int, default=8, help="sampling steps (default 8)")
    bench.add_argument("--sampler", choices=["pingpong", "euler", "onestep"], default="pingpong")
    bench.add_argument(
        "--cfg", type=float, help="guidance (default: the model's own; above 1 each step runs two branches)"
    )
    bench.add_argument("--seconds", type=float, help="take length (default: the model's full length)")
    bench.add_argument("--runs", type=int, default=5, help="timed runs per batch size (default 5)")
    bench.add_argument("--warmup", type=int, default=1, help="untimed runs first (default 1)")
    bench.add_argument("--out", default="reports/bench", help="folder for the JSON (default reports/bench)")
    add_fast_path_option(
        bench,
        "how whole takes run: default graphs on CUDA (compiled, one CUDA graph a take), eager elsewhere",
    )
    bench.set_defaults(func=cmd_bench)


def add_clap_train_command(train_subparsers: argparse._SubParsersAction) -> None:
    """Register `clap` under `studio train`."""
    from studio.eval.clap import ClapTrainConfig

    defaults = ClapTrainConfig(corpus=Path(), out=Path())
    clap = train_subparsers.add_parser(
        "clap",
        help="train the small audio-text contrastive model that `studio eval` scores adherence with",
        description="Train on the corpus's train split, report retrieval on its held-out split, save "
        "clap.safetensors + clap.json.",
    )
    clap.add_argument(
        "--corpus",
        default=str(default_corpus_dir()),
        help="corpus folder with manifest.jsonl (default: $STUDIO_CORPUS_DIR or ./corpus)",
    )
    clap.add_argument("--out", help="model folder (default: CORPUS/clap, where `studio eval` looks)")
    clap.add_argument("--steps", type=int, default=defaults.steps, help=f"default {defaults.steps}")
    clap.add_argument(
        "--batch-size", type=int, default=defaults.batch_size, help=f"default {defaults.batch_size}"
    )
    clap.add_argument("--lr", type=float, default=defaults.lr, help=f"default {defaults.lr}")
    clap.add_argument("--seed", type=int, default=defaults.seed, help=f"default {defaults.seed}")
    clap.add_argument(
        "--log-every", type=int, default=defaults.log_every, help=f"default {defaults.log_every}"
    )
    clap.add_argument("--device", help="cuda, mps or cpu (default: the best available)")
    clap.set_defaults(func=cmd_train_clap)
