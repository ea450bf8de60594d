"""What every `studio` command line shares, without importing torch: argument types, and how a
command ends (logging set up, a StudioError printed as a message with exit status 2)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Callable

from studio.errors import StudioError

FAST_PATHS = ("eager", "compile", "graphs")  # studio/fast_path.py runs them; here --help needs no torch
DTYPES = ("float32", "bfloat16", "float16")  # studio/models/precision.py's, named without torch

EXIT_USAGE = 2
# Modules of the optional extras (pyproject.toml), by the extra that installs them
EXTRA_OF_MODULE = {"tqdm": "train", "matplotlib": "eval"}
TRAIN_HELP = (
    "train the VAE, pretrain the flow DiT, ARC post-train it, distil it into one step (VSD), train a "
    "MAR model or the CLAP scorer"
)


def whole_numbers(text: str) -> tuple[int, ...]:
    """argparse type of options such as `--batch 1,8`."""
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers, got '{text}'") from None


class Terminated(KeyboardInterrupt):
    """SIGTERM, as a service manager stops a program: handled as Ctrl+C is, so everything closes."""


def stop_on_signals() -> None:
    """Ctrl+C and SIGTERM both stop a long-running command cleanly (what is queued finishes, the
    library closes), also when a shell started it in the background with SIGINT ignored."""

    def terminate(signum: int, frame: object) -> None:
        raise Terminated

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, terminate)


def run(parse: Callable[[], argparse.Namespace]) -> int:
    """Parse a command line and run its command (`args.func`). A StudioError, or a module of an
    extra that is not installed, ends it with a message saying what to do, not a traceback."""
    try:
        args = parse()
        verbose = getattr(args, "verbose", False)
        logging.basicConfig(
            level=logging.INFO if verbose else logging.WARNING, format="%(name)s: %(message)s"
        )
        # The hub client logs every retry of an unreachable host; our own error says what to do.
        logging.getLogger("huggingface_hub").setLevel(logging.INFO if verbose else logging.ERROR)
        return args.func(args)
    except StudioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ModuleNotFoundError as exc:
        extra = EXTRA_OF_MODULE.get((exc.name or "").split(".")[0])
        if extra is None:
            raise
        print(
            f"error: {exc.name} is not installed\n  how to fix: pip install 'studio[{extra}]'",
            file=sys.stderr,
        )
        return EXIT_USAGE
    except Terminated:
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        return 128 + signal.SIGINT


def add_fast_path_option(parser: argparse.ArgumentParser, help: str) -> None:
    parser.add_argument("--fast-path", choices=FAST_PATHS, help=help)


def add_dtype_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dtype",
        choices=DTYPES,
        help="the denoiser's precision; default: bfloat16 on a GPU with bf16 tensor cores or a CPU with "
        "AMX or AVX-512 BF16, float16 on older GPUs, else float32 (an STFT decoder's trunk follows it "
        "in bfloat16; the rest of the VAE stays float32, docs/gpu.md)",
    )
