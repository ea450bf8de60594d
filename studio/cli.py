"""The `studio` command line."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from studio.errors import StudioError
from studio.names import take_stem

EXIT_USAGE = 2


def _free_path(folder: Path, stem: str, suffix: str) -> Path:
    path, n = folder / f"{stem}{suffix}", 2
    while path.exists() or path.with_suffix(".json").exists():
        path, n = folder / f"{stem}-{n}{suffix}", n + 1
    return path


def cmd_generate(args: argparse.Namespace) -> int:
    from studio.audio import write_audio
    from studio.engine import Engine, Request

    if args.params:
        try:
            params = json.loads(Path(args.params).read_text())
        except (OSError, ValueError) as exc:
            raise StudioError(f"cannot read take parameters from {args.params}: {exc}") from exc
        request = Request.from_params(params)
        model = args.model or params.get("model")
    else:
        if args.prompt is None:
            raise StudioError(
                "a prompt is needed", 'studio generate "punchy 808 kick" (or --params take.json)'
            )
        request = Request(
            prompt=args.prompt,
            negative_prompt=args.negative,
            seconds=args.seconds,
            steps=args.steps,
            cfg=args.cfg,
            seed=args.seed,
            variations=args.variations,
            diversity=args.diversity,
            init_audio=args.init,
            strength=args.strength,
            sampler=args.sampler,
        )
        model = args.model
    out = Path(args.out)
    with Engine(model, device=args.device, dtype=args.dtype, warmup=False) as engine:
        result = engine.generate(request)
    if result.init_report is not None:
        print(f"init audio: {result.init_report.describe()}", file=sys.stderr)
    for take in result.takes:
        p = take.params
        path = _free_path(out, take_stem(p.prompt, p.seed, p.take_index), ".wav")
        write_audio(path, take.audio, take.sample_rate, args.bit_depth)
        try:
            path.with_suffix(".json").write_text(json.dumps(p.to_dict(), indent=2) + "\n")
        except OSError as exc:
            raise StudioError(f"cannot write {path.with_suffix('.json')}: {exc.strerror or exc}") from exc
        print(path)
    print(f"{len(result.takes)} take(s) in {result.elapsed_s:.2f} s on {result.device}", file=sys.stderr)
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from studio.models.registry import DEFAULT_MODEL, HUB_MODELS, list_models, user_models_dir

    entries = list_models()
    for entry in entries:
        marker = " (default)" if entry.name == DEFAULT_MODEL else ""
        print(f"{entry.name:32} {entry.source:9} {entry.path}{marker}")
    for name in HUB_MODELS:
        if name not in {e.name for e in entries}:
            print(f"{name:32} {'hub':9} not downloaded: `studio generate --model {name} …` fetches it")
    print(f"user models folder: {user_models_dir()}", file=sys.stderr)
    return 0


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def _auth(value: str | None, host: str) -> tuple[str, str] | None:
    if value is None:
        if host not in LOOPBACK_HOSTS:
            raise StudioError(
                f"refusing to serve on {host} without a password: anyone on the network could use it",
                "add --auth user:password (or bind to 127.0.0.1)",
            )
        return None
    user, sep, password = value.partition(":")
    if not sep or not user or not password:
        raise StudioError("--auth wants user:password", "e.g. --auth ana:correct-horse")
    return user, password


def cmd_serve(args: argparse.Namespace) -> int:
    from studio.app import launch

    auth = _auth(args.auth, args.host)
    if not 0 < args.port < 65536:
        raise StudioError(f"port {args.port} is not a TCP port", "use 1-65535, e.g. --port 7860")
    try:
        launch(args.model, args.host, args.port, args.device, auth)
    except OSError as exc:
        raise StudioError(
            f"cannot serve on {args.host}:{args.port}: {exc.strerror or exc}",
            "another program uses it? try --port 7861",
        ) from exc
    return 0


def cmd_desktop(args: argparse.Namespace) -> int:
    try:
        import webview
    except ImportError:
        raise StudioError("the desktop window needs pywebview", 'pip install "studio[desktop]"') from None
    from studio.app import launch

    _, studio, url = launch(args.model, "127.0.0.1", args.port, args.device, None, block=False)
    webview.create_window("Studio", url, width=1280, height=860)
    try:
        webview.start()
    finally:
        studio.host.engine.close()
    return 0


def add_serve_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback only)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--model", help="model name (see `studio models`) or folder; default studio-mini")
    parser.add_argument("--device", help="cuda, mps or cpu (default: the best available)")
    parser.add_argument("--auth", help="user:password, required when binding beyond loopback")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="studio", description="Studio: a fast text-to-audio instrument.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what the engine does")
    sub = parser.add_subparsers(dest="command")
    add_serve_options(parser)  # plain `studio` serves the app
    parser.set_defaults(func=cmd_serve)

    serve = sub.add_parser("serve", help="start the studio in the browser (the default command)")
    add_serve_options(serve)
    serve.set_defaults(func=cmd_serve)

    desktop = sub.add_parser("desktop", help="the studio in a desktop window (needs pywebview)")
    desktop.add_argument("--port", type=int, default=7860)
    desktop.add_argument("--model")
    desktop.add_argument("--device")
    desktop.set_defaults(func=cmd_desktop)

    gen = sub.add_parser("generate", help="generate takes from a prompt and write WAV + JSON files")
    gen.add_argument("prompt", nargs="?", help='what to hear, e.g. "punchy 808 kick, long tail"')
    gen.add_argument("--model", help="model name (see `studio models`) or folder; default studio-mini")
    gen.add_argument("--negative", default="", help="negative prompt (used when cfg is not 1)")
    gen.add_argument("--seconds", type=float, help="length of each take (default: the model's full length)")
    gen.add_argument("--variations", type=int, default=1, help="takes to generate in one batch (1-16)")
    gen.add_argument("--diversity", type=float, default=1.0, help="0: identical takes … 1: independent takes")
    gen.add_argument("--seed", type=int, help="anchor seed; -1 or omitted: random")
    gen.add_argument("--steps", type=int, help="sampling steps (default 8 for ping-pong, 50 for Euler)")
    gen.add_argument("--cfg", type=float, help="classifier-free guidance scale (default 1: off)")
    gen.add_argument("--sampler", choices=["pingpong", "euler"], help="default: what the model was made for")
    gen.add_argument("--init", help="recording to restyle (audio-to-audio)")
    gen.add_argument(
        "--strength", type=float, default=0.6, help="with --init: 0 keeps the recording, 1 ignores it"
    )
    gen.add_argument("--params", help="a take's JSON sidecar: regenerate exactly that take")
    gen.add_argument("--out", default="out", help="folder for the WAV files and their JSON sidecars")
    gen.add_argument("--bit-depth", type=int, choices=[16, 24, 32], default=24, help="WAV sample format")
    gen.add_argument("--device", help="cuda, mps or cpu (default: the best available)")
    gen.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], help="default: bf16/fp16 on GPU")
    gen.set_defaults(func=cmd_generate)

    models = sub.add_parser("models", help="list the models Studio can find")
    models.set_defaults(func=cmd_models)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(name)s: %(message)s"
    )
    # The hub client logs every retry of an unreachable host; our own error says what to do.
    logging.getLogger("huggingface_hub").setLevel(logging.INFO if args.verbose else logging.ERROR)
    try:
        return args.func(args)
    except StudioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
