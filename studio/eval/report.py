"""The files `studio eval` writes: eval.json, eval.md and the PNG plots, and the plotting helpers
other reports share."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from studio.errors import StudioError


def write_report(report: dict[str, Any], folder: Path, voice: list[str]) -> list[Path]:
    """eval.json, eval.md and the plots; `voice`: the markdown lines of the voice measures."""
    folder.mkdir(parents=True, exist_ok=True)
    files = [folder / "eval.json", folder / "eval.md"]
    files[0].write_text(json.dumps(report, indent=2) + "\n")
    files += _plots(report, folder)
    files[1].write_text(markdown(report, [p.name for p in files[2:]], voice))
    return files


def number(value: float | None, digits: int = 3, sign: bool = False) -> str:
    """A value for a report's table: `digits` decimals (with a sign when `sign`), "–" for None or
    NaN, "∞" or "−∞" for the infinities."""
    if value is None or not math.isfinite(value):
        return "–" if value is None or math.isnan(value) else ("−∞" if value < 0 else "∞")
    # + 0.0 turns a rounded -0.0 (CCDS of identical takes, cosine round-off) into 0.0
    shown = round(value, digits) + 0.0
    return f"{shown:+.{digits}f}" if sign else f"{shown:.{digits}f}"


def markdown(report: dict[str, Any], images: list[str], voice: list[str]) -> str:
    s, fad, acc, adh = report["settings"], report["fad"], report["category_accuracy"], report["adherence"]
    clap = report["clap"]["held_out"]
    lines = [
        f"# Evaluation: {report['model']}",
        "",
        f"{report['date']} on {report['device']} ({report['dtype']}, {report['torch_threads']} torch "
        f"threads){', quick' if report['quick'] else ''}. "
        f"{s['takes_per_prompt']} takes per prompt, seed {s['seed']}, cfg {s['cfg']}; held-out clips from "
        f"`{report['corpus']['path']}` (split `{report['corpus']['split']}`). Metrics: docs/eval.md.",
        "",
        f"## Summary ({s['default_sampler']})",
        "",
        "| metric | value | for comparison |",
        "| --- | --- | --- |",
        f"| FAD, aisfx (overall) | {number(fad['overall'])} | lower is better; covariance "
        f"{fad['covariance']} |",
        f"| prompt-category accuracy (top-1) | {number(acc['top1'])} | chance {number(acc['chance'])}; "
        f"held-out clips, leave-one-out {number(acc['held_out_leave_one_out'])}; their VAE round trips "
        f"{number(acc['vae_round_trip_leave_one_out'])} |",
        f"| prompt adherence (CLAP cosine) | {number(adh['mean'])} | held-out clips "
        f"{number(adh['held_out_clips'])} |",
        f"| CCDS at diversity 1 | {number(report['ccds']['mean'])} | 0 = identical takes |",
        f"| CLAP held-out text→audio R@1 / R@5 | {number(clap['text_to_audio_r1'], 2)} / "
        f"{number(clap['text_to_audio_r5'], 2)} | chance {number(clap['chance_r1'])} / "
        f"{number(clap['chance_r5'])} |",
        f"| CLAP held-out zero-shot category accuracy | {number(clap['zero_shot_category_accuracy'], 2)} | "
        f"chance {number(clap['chance_category'])} ({int(clap['categories'])} categories) |",
        "",
        "## Per category",
        "",
        "| category | prompt | seconds | held-out clips | FAD | accuracy | adherence | CCDS |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for c, prompt in s["prompts"].items():
        lines.append(
            f"| {c} | {prompt} | {s['seconds'][c]:.2f} | {report['corpus']['clips_per_category'][c]} | "
            f"{number(fad['per_category'][c])} | {number(acc['per_category'][c], 2)} | "
            f"{number(adh['per_category'][c])} | {number(report['ccds']['per_category'][c])} |"
        )
    lines += [
        "",
        "## Sampler sweep",
        "",
        "| sampler | steps | FAD | accuracy | adherence | CCDS | batch s, median (min–max) | s/take | RTF |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in report["sweep"]:
        batch = row["latency"]["batch_s"]
        lines.append(
            f"| {row['sampler']} | {row['steps']} | {number(row['fad'])} | "
            f"{number(row['category_accuracy'], 2)} | {number(row['adherence'])} | {number(row['ccds'])} | "
            f"{batch['median']:.3f} "
            f"({batch['min']:.3f}–{batch['max']:.3f}) | {row['latency']['per_take_s']:.3f} | "
            f"{row['latency']['rtf']:.1f} |"
        )
    d = report["diversity"]
    lines += [
        "",
        f"## Diversity knob ({d['setting']})",
        "",
        "| diversity | CCDS |",
        "| --- | --- |",
        *(f"| {k} | {number(v)} |" for k, v in zip(d["knob"], d["ccds"], strict=True)),
        "",
        f"CCDS {'rises' if d['rises'] else 'does NOT rise'} with the knob.",
        "",
        f"## What a musician hears first ({report['voice']['settings']['seconds']:.2f} s takes)",
        "",
        *voice,
        *(f"![{name}]({name})" for name in images),
        "",
    ]
    return "\n".join(lines)


def pyplot() -> Any:
    """matplotlib.pyplot drawing to files only, or an error saying how to install it."""
    try:
        import matplotlib
    except ImportError as exc:
        raise StudioError("the evaluation plots need matplotlib", "pip install matplotlib") from exc
    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def _plots(report: dict[str, Any], folder: Path) -> list[Path]:
    plt = pyplot()
    paths = []
    d = report["diversity"]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(d["knob"], d["ccds"], marker="o")
    ax.set(xlabel="diversity knob", ylabel="CCDS (CLAP audio space)", title=f"Diversity ({d['setting']})")
    ax.grid(alpha=0.3)
    paths.append(save_figure(fig, folder / "diversity.png"))

    sweep = report["sweep"]
    fig, axes = plt.subplots(2, 2, figsize=(9, 6.5))
    metrics = [
        ("fad", "FAD (lower is better)"),
        ("category_accuracy", "prompt-category accuracy"),
        ("adherence", "prompt adherence"),
        ("ccds", "CCDS at diversity 1"),
    ]
    for ax, (key, title) in zip(axes.flat, metrics, strict=True):
        x = [row["latency"]["per_take_s"] for row in sweep]
        ax.scatter(x, [row[key] for row in sweep])
        for row, xi in zip(sweep, x, strict=True):
            ax.annotate(f"{row['sampler']}-{row['steps']}", (xi, row[key]), fontsize=7)
        ax.set(xlabel="seconds per take", title=title)
        plain_log_axis(ax.xaxis)
        ax.grid(alpha=0.3)
    fig.suptitle("Sampler sweep")
    paths.append(save_figure(fig, folder / "sweep.png"))

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for sampler in dict.fromkeys(row["sampler"] for row in sweep):
        rows = [row for row in sweep if row["sampler"] == sampler]
        seconds = [r["latency"]["per_take_s"] for r in rows]
        ax.plot([r["steps"] for r in rows], seconds, marker="o", label=sampler)
    ax.set(xlabel="steps (MAR: decoding iterations)", ylabel="seconds per take")
    plain_log_axis(ax.xaxis, sorted({row["steps"] for row in sweep}))
    ax.set_title("Latency")
    ax.set_ylim(bottom=0)
    ax.legend()
    ax.grid(alpha=0.3)
    paths.append(save_figure(fig, folder / "latency.png"))

    categories = list(report["settings"]["prompts"])
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(max(6, 0.6 * len(categories)), 6), sharex=True)
    top.bar(categories, [report["fad"]["per_category"][c] or 0 for c in categories])
    top.set(ylabel="FAD", title=f"Per category ({report['settings']['default_sampler']})")
    bottom.bar(categories, [report["category_accuracy"]["per_category"][c] for c in categories])
    bottom.axhline(report["category_accuracy"]["chance"], color="grey", linestyle="--", label="chance")
    bottom.set(ylabel="accuracy", ylim=(0, 1))
    bottom.legend()
    bottom.tick_params(axis="x", rotation=45)
    paths.append(save_figure(fig, folder / "categories.png"))
    return paths


def plain_log_axis(axis: Any, ticks: list[float] | None = None) -> None:
    """A log axis labelled 0.5, 1, 2 rather than 5×10⁻¹ (sweeps span a decade or two); `ticks`:
    label exactly these values and nothing else."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    axis.axes.set(**{f"{axis.axis_name}scale": "log"})
    label = FuncFormatter(lambda value, _: f"{value:g}")
    axis.set_major_formatter(label)
    if ticks:
        axis.set_ticks(ticks)
        axis.set_minor_formatter(NullFormatter())
    else:
        axis.set_minor_formatter(label)
        axis.set_tick_params(which="minor", labelsize=7)


def save_figure(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    pyplot().close(fig)
    return path
