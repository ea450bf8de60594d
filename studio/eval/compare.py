"""`studio eval compare`: one table of several models' `studio eval` reports.

Every sweep row of every report becomes a row (model, sampler, steps, the metrics and latency), so
methods and step counts line up side by side; a second table puts the voice measures (pitch, tempo,
decay, variety, DC, low band; docs/eval.md) of each model at its own defaults beside each other.
Reports are only comparable when they scored the same held-out clips with the same takes and seeds
(FAD in particular depends on the set sizes): the comparison refuses reports that differ there and
says which. Guidance is a sampling setting like the sampler (a plain flow or MAR model needs it, an
ARC model does not), so it is a column.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from studio.errors import StudioError
from studio.eval.report import number


@dataclass(frozen=True)
class ComparisonRow:
    model: str
    sampler: str
    steps: int
    cfg: float
    default: bool  # the model's own sampler and steps
    fad: float
    category_accuracy: float
    adherence: float
    ccds: float
    per_take_s: float
    rtf: float


def load_report(folder: Path) -> dict[str, Any]:
    path = folder / "eval.json"
    if not path.is_file():
        raise StudioError(
            f"no eval.json in {folder}", f"run `studio eval --model … --out {folder.parent}` first"
        )
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise StudioError(
            f"{path} is not valid JSON ({exc})", "run `studio eval` again to rewrite it"
        ) from exc


def _shared_settings(report: dict[str, Any]) -> dict[str, Any]:
    """The settings that must agree for numbers from two reports to mean the same thing."""
    settings = report["settings"]
    return {
        "corpus": (report["corpus"]["path"], report["corpus"]["clips_per_category"]),
        "takes_per_prompt": settings["takes_per_prompt"],
        "seed": settings["seed"],
        "prompts": settings["prompts"],
        # the folder alone is not enough: a contrastive model retrained in place scores differently,
        # and its held-out retrieval numbers tell two models apart
        "clap": (report["clap"]["folder"], report["clap"].get("held_out")),
    }


def check_comparable(reports: list[dict[str, Any]]) -> None:
    first = _shared_settings(reports[0])
    for report in reports[1:]:
        other = _shared_settings(report)
        differ = [key for key in first if other[key] != first[key]]
        if differ:
            raise StudioError(
                f"{report['model']} and {reports[0]['model']} were evaluated differently "
                f"({', '.join(differ)})",
                "evaluate every model with the same --corpus, --takes, --seed, --categories and --clap",
            )


def comparison_rows(reports: list[dict[str, Any]]) -> list[ComparisonRow]:
    rows = []
    for report in reports:
        default = report["settings"]["default_sampler"]
        for row in report["sweep"]:
            rows.append(
                ComparisonRow(
                    model=report["model"],
                    sampler=row["sampler"],
                    steps=row["steps"],
                    cfg=report["settings"]["cfg"],
                    default=f"{row['sampler']}-{row['steps']}" == default,
                    fad=row["fad"],
                    category_accuracy=row["category_accuracy"],
                    adherence=row["adherence"],
                    ccds=row["ccds"],
                    per_take_s=row["latency"]["per_take_s"],
                    rtf=row["latency"]["rtf"],
                )
            )
    return rows


def voice_rows(reports: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each report's voice measures at the model's defaults, as one row (reports without any left out)."""
    rows = []
    for report in reports:
        voice = report.get("voice")
        if not voice:
            continue
        clean = voice["clean"]
        rows.append(
            {
                "model": report["model"],
                "setting": voice["settings"]["sampler"],
                "cfg": voice["settings"]["cfg"],
                "pitch_share": voice["pitch"]["share"],
                "tempo_share": voice["tempo"]["share"],
                "decay_share": voice["decay"]["share"],
                "variety": voice["variety"]["mean"],
                "dc_offset_dbfs_max": clean["dc_offset_dbfs"]["max"],
                "low_band_excess_db_median": clean["low_band_excess_db"]["median"],
                "low_band_excess_db_max": clean["low_band_excess_db"]["max"],
            }
        )
    return rows


def voice_markdown(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    return [
        "## What a musician hears first, at each model's defaults",
        "",
        "| model | setting | pitch ↑ | tempo ↑ | decay ↑ | variety ↓ | worst DC dBFS ↓ | low band dB, "
        "median / worst ↓ |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
        *(
            f"| {r['model']} | {r['setting']}, cfg {r['cfg']:g} | {number(r['pitch_share'], 2)} | "
            f"{number(r['tempo_share'], 2)} | {number(r['decay_share'], 2)} | {number(r['variety'])} | "
            f"{number(r['dc_offset_dbfs_max'], 1)} | {number(r['low_band_excess_db_median'], 1, True)} / "
            f"{number(r['low_band_excess_db_max'], 1, True)} |"
            for r in rows
        ),
        "",
        "Pitch: share of note takes on the pitch class asked for; tempo: share within 3% of the BPM "
        "asked for; decay: share of one-shots 30 dB down by their second half; variety: mean "
        "|correlation| between takes of one prompt; low band: share of power below 40 Hz against "
        "held-out clips of the category.",
        "",
    ]


def markdown(reports: list[dict[str, Any]], rows: list[ComparisonRow], image: str) -> str:
    settings = reports[0]["settings"]
    ceilings = reports[0]["category_accuracy"]
    lines = [
        "# Model comparison",
        "",
        f"{len(reports)} models on `{reports[0]['corpus']['path']}` (held-out split), "
        f"{len(settings['prompts'])} category prompts, {settings['takes_per_prompt']} takes each, seed "
        f"{settings['seed']}; device {reports[0]['device']}. "
        "Metrics: docs/eval.md. `*`: the model's default sampler and steps.",
        "",
        "| model | sampler | steps | cfg | FAD ↓ | accuracy ↑ | adherence ↑ | CCDS | s/take | RTF |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r.model} | {r.sampler} | {r.steps}{' *' if r.default else ''} | {r.cfg:g} | {r.fad:.3f} | "
            f"{r.category_accuracy:.2f} | {r.adherence:.3f} | {r.ccds:.3f} | {r.per_take_s:.3f} | "
            f"{r.rtf:.1f} |"
        )
    lines += [
        "",
        f"Chance accuracy {ceilings['chance']:.3f}; held-out clips (leave-one-out) "
        f"{ceilings['held_out_leave_one_out']:.2f}; held-out adherence "
        f"{reports[0]['adherence']['held_out_clips']:.3f}.",
        "",
        f"![{image}]({image})",
        "",
        *voice_markdown(voice_rows(reports)),
    ]
    return "\n".join(lines)


def _plot(rows: list[ComparisonRow], path: Path) -> Path:
    from studio.eval.report import plain_log_axis, pyplot, save_figure

    fig, axes = pyplot().subplots(1, 2, figsize=(11, 4.5))
    for ax, key, title in (
        (axes[0], "category_accuracy", "prompt-category accuracy ↑"),
        (axes[1], "fad", "FAD (aisfx) ↓"),
    ):
        for index, model in enumerate(dict.fromkeys(r.model for r in rows)):
            # one line per sampler of a model (steps in order), one colour per model
            samplers = list(dict.fromkeys(r.sampler for r in rows if r.model == model))
            for sampler in samplers:
                mine = [r for r in rows if r.model == model and r.sampler == sampler]
                ax.plot(
                    [r.per_take_s for r in mine],
                    [getattr(r, key) for r in mine],
                    marker="o",
                    color=f"C{index % 10}",
                    label=model if sampler == samplers[0] else None,
                )
                for r in mine:
                    ax.annotate(f"{r.sampler}-{r.steps}", (r.per_take_s, getattr(r, key)), fontsize=6)
        ax.set(xlabel="seconds per take", title=title)
        plain_log_axis(ax.xaxis)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    return save_figure(fig, path)


def write_comparison(folders: list[Path], out: Path) -> list[Path]:
    """Read each folder's eval.json, write OUT/comparison.{md,json,png}."""
    if len(folders) < 2:
        raise StudioError(
            "a comparison needs at least two reports", "pass two or more reports/<model> folders"
        )
    reports = [load_report(folder) for folder in folders]
    check_comparable(reports)
    rows = comparison_rows(reports)
    out.mkdir(parents=True, exist_ok=True)
    image = _plot(rows, out / "comparison.png")
    table = out / "comparison.json"
    table.write_text(
        json.dumps(
            {
                "reports": [str(f) for f in folders],
                "rows": [asdict(r) for r in rows],
                "voice": voice_rows(reports),
            },
            indent=2,
        )
        + "\n"
    )
    page = out / "comparison.md"
    page.write_text(markdown(reports, rows, image.name))
    return [page, table, image]
