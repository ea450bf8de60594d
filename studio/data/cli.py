"""`studio data build` and `studio data setup`: wired into the main parser by `add_data_commands`."""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import time

from studio.data.manifest import DEBIAN_SOURCES, GENERATED_SOURCES, SPLITS, CorpusError

# What the GM generators need beside Python: fonts, and fluidsynth (the fallback renderer, and the one
# that plays MuseScore General right).
RENDER_PACKAGES = (
    "fluid-soundfont-gm",
    "timgm6mb-soundfont",
    "musescore-general-soundfont-lossless",
    "fluidsynth",
)


def setup_commands(as_root: bool, python: str = sys.executable) -> list[list[str]]:
    """The commands `studio data setup` runs. tinysoundfont is installed without its dependencies:
    it names pyaudio, which only live playback needs and which does not build without PortAudio."""
    sudo = [] if as_root else ["sudo"]
    return [
        [*sudo, "apt-get", "update"],
        [*sudo, "apt-get", "install", "-y", "--no-install-recommends", *DEBIAN_SOURCES, *RENDER_PACKAGES],
        [python, "-m", "pip", "install", "--no-deps", "tinysoundfont"],
    ]


def cmd_data_setup(args: argparse.Namespace) -> int:
    as_root = not hasattr(os, "geteuid") or os.geteuid() == 0
    commands = setup_commands(as_root)
    if args.dry_run:
        for cmd in commands:
            print(shlex.join(cmd))
        return 0
    if shutil.which("apt-get") is None:
        raise CorpusError(
            "apt-get not found: the sound packages come from Debian or Ubuntu",
            "on another system build from generated sources only: studio data build --sources generated",
        )
    if not as_root and shutil.which("sudo") is None:
        raise CorpusError("installing Debian packages needs root", "run studio data setup as root")
    for cmd in commands:
        print(f"$ {shlex.join(cmd)}", file=sys.stderr)
        if subprocess.run(cmd, check=False).returncode != 0:
            raise CorpusError(f"setup step failed: {shlex.join(cmd)}", "see its output above, fix, and rerun")
    return 0


def cmd_data_build(args: argparse.Namespace) -> int:
    # the renderers load scipy and friends: only when building
    from studio.data.build import build_corpus, extend_corpus

    start = time.perf_counter()
    common = {
        "hours": args.hours,
        "seed": args.seed,
        "sources": args.sources,
        "workers": args.workers,
        "debian_root": args.debian_root,
        "progress": sys.stderr.isatty(),
        "licences": args.licences,
        "focus": args.focus,
        "sample_rate": args.sample_rate,
    }
    given = {k: v for k, v in common.items() if v is not None}  # the rest: the builder's defaults
    if args.extend:
        if "sample_rate" in given:
            raise CorpusError("--sample-rate cannot change an existing corpus", "leave it out with --extend")
        summary = extend_corpus(args.extend, **given)
    else:
        summary = build_corpus(args.out, **given)
    hours = summary["hours"]
    splits = ", ".join(f"{s} {hours['by_split'].get(s, 0):.2f} h" for s in SPLITS)
    print(f"{summary['clips']} clips, {hours['total']:.2f} h ({splits}) in {args.extend or args.out}")
    if args.extend:
        added = summary["extensions"][-1]
        print(f"  added {added['clips_added']} clips, {added['hours_added']:.2f} h")
    for source, h in hours["by_source"].items():
        print(f"  {source:28} {h:.3f} h")
    if summary["core_categories_missing"]:
        missing = ", ".join(f"{c}/{s}" for c, s in summary["core_categories_missing"])
        print(f"warning: no clips for core categories in these splits: {missing}", file=sys.stderr)
    print(f"built in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    return 0


def add_data_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register `data build` and `data setup` on the main parser's subcommands."""
    data = subparsers.add_parser("data", help="build the captioned training corpus")
    sub = data.add_subparsers(dest="data_command", required=True)

    build = sub.add_parser(
        "build",
        help="assemble a corpus: Debian recordings, General MIDI renders and procedural sounds",
        description="Assemble a captioned corpus (manifest.jsonl, corpus.json, audio/). Run "
        "`studio data setup` first for the Debian sources and the GM renderer.",
    )
    build.add_argument(
        "--hours", type=float, required=True, help="total duration to build (or grow to), e.g. 1"
    )
    where = build.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", help="corpus folder to build (new, empty, or an earlier corpus, replaced)")
    where.add_argument(
        "--extend", metavar="DIR", help="grow this corpus to --hours, keeping every clip it holds as it is"
    )
    build.add_argument(
        "--seed",
        type=int,
        default=None,
        help="same seed + sources + packages: same corpus (default 0, or the extended corpus's)",
    )
    build.add_argument(
        "--sources",
        default="all",
        help=f"all, debian, generated, or a comma list of: {', '.join(DEBIAN_SOURCES + GENERATED_SOURCES)}",
    )
    build.add_argument(
        "--sample-rate", type=int, default=None, help="corpus sample rate in Hz (default 44100)"
    )
    build.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="render processes (default: all cores)"
    )
    build.add_argument("--debian-root", default="/", help="where to look for the Debian packages' files")
    build.add_argument(
        "--licences",
        default=None,
        help='keep only clips under these licences: "any" (default; with --extend, the corpus\'s own '
        'filter), "permissive" (CC0, MIT, CC-BY, BSD, Apache) or a comma list of SPDX ids',
    )
    build.add_argument(
        "--focus",
        default="",
        help="comma list of categories (or other) to grow more than the rest, each optionally =weight "
        "(docs/data.md), e.g. piano,rain,drum-loop=8",
    )
    build.set_defaults(func=cmd_data_build)

    setup = sub.add_parser(
        "setup",
        help="install the Debian sound packages and the soundfont renderer",
        description="apt-get install the sound packages ("
        + ", ".join(DEBIAN_SOURCES)
        + ") and GM soundfonts, then pip install tinysoundfont --no-deps. Needs root or sudo.",
    )
    setup.add_argument("--dry-run", action="store_true", help="print the commands instead of running them")
    setup.set_defaults(func=cmd_data_setup)
