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

# What gm-render needs beside Python: fonts, and fluidsynth as the fallback renderer.
RENDER_PACKAGES = ("fluid-soundfont-gm", "timgm6mb-soundfont", "fluidsynth")


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
    from studio.data.build import build_corpus  # the renderers load scipy and friends: only when building

    start = time.perf_counter()
    summary = build_corpus(
        args.out,
        hours=args.hours,
        seed=args.seed,
        sources=args.sources,
        sample_rate=args.sample_rate,
        workers=args.workers,
        debian_root=args.debian_root,
        progress=sys.stderr.isatty(),
        licences=args.licences,
    )
    hours = summary["hours"]
    splits = ", ".join(f"{s} {hours['by_split'].get(s, 0):.2f} h" for s in SPLITS)
    print(f"{summary['clips']} clips, {hours['total']:.2f} h ({splits}) in {args.out}")
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
    build.add_argument("--hours", type=float, required=True, help="total duration to build, e.g. 1")
    build.add_argument("--out", required=True, help="corpus folder (new, empty, or an earlier corpus)")
    build.add_argument("--seed", type=int, default=0, help="same seed + sources + packages: same corpus")
    build.add_argument(
        "--sources",
        default="all",
        help=f"all, debian, generated, or a comma list of: {', '.join(DEBIAN_SOURCES + GENERATED_SOURCES)}",
    )
    build.add_argument("--sample-rate", type=int, default=44100, help="corpus sample rate in Hz")
    build.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="render processes (default: all cores)"
    )
    build.add_argument("--debian-root", default="/", help="where to look for the Debian packages' files")
    build.add_argument(
        "--licences",
        default="any",
        help='keep only clips under these licences: "any" (default), "permissive" (CC0, MIT, CC-BY, …) '
        "or a comma list of SPDX ids",
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
