"""The `studio` command line."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from studio.commands import TRAIN_HELP, add_dtype_option, add_fast_path_option, run, stop_on_signals
from studio.errors import StudioError
from studio.names import free_path, take_stem
from studio.request import DEFAULT_DIVERSITY, DEFAULT_STRENGTH

if TYPE_CHECKING:
    from studio.bridges.remote import BridgeOptions, Bridges
    from studio.service import Studio


def cmd_generate(args: argparse.Namespace) -> int:
    from studio.audio import write_audio
    from studio.request import Request, check_request

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
        if args.strength is not None and args.init is None:
            raise StudioError(
                "--strength sets how much of a recording to keep, and no recording was given",
                "add --init RECORDING.wav to restyle it, or leave --strength out",
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
            strength=DEFAULT_STRENGTH if args.strength is None else args.strength,
            sampler=args.sampler,
        )
        model = args.model
    check_request(request)  # before torch and the model load: a typo fails at once
    from studio.engine import Engine

    out = Path(args.out)
    with Engine(
        model, device=args.device, dtype=args.dtype, warmup=False, fast_path=args.fast_path
    ) as engine:
        result = engine.generate(request)
    if result.init_report is not None:
        print(f"init audio: {result.init_report.describe()}", file=sys.stderr)
    for take in result.takes:
        p = take.params
        path = free_path(out, take_stem(p.prompt, p.seed, p.take_index), ".wav", (".json",))
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
    """user:password from --auth, else $STUDIO_AUTH; either may be `@FILE`, a file that holds it,
    so the password need not show in `ps` or the shell's history."""
    value = value if value is not None else os.environ.get("STUDIO_AUTH")
    if value is None:
        if host not in LOOPBACK_HOSTS:
            raise StudioError(
                f"refusing to serve on {host} without a password: anyone on the network could use it",
                "set STUDIO_AUTH=user:password or --auth @FILE (a file holding user:password), "
                "or bind to 127.0.0.1",
            )
        return None
    if value.startswith("@"):
        try:
            value = Path(value[1:]).expanduser().read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise StudioError(
                f"cannot read the credentials file {value[1:]}: {exc.strerror or exc}",
                "give a file that holds one line, user:password",
            ) from exc
    user, sep, password = value.partition(":")
    if not sep or not user or not password:
        raise StudioError(
            "the credentials want user:password",
            "e.g. STUDIO_AUTH=ana:correct-horse or --auth @~/.studio-auth",
        )
    return user, password


def _bridge_options(args: argparse.Namespace, osc_port: int | None) -> BridgeOptions:
    from studio.bridges.remote import BridgeOptions

    for name, port in (("--osc-port", osc_port), ("--osc-reply-port", args.osc_reply_port)):
        if port is not None and not 0 < port < 65536:
            raise StudioError(f"{name} {port} is not a UDP port", "use 1-65535, e.g. 9000")
    return BridgeOptions(
        osc_port=osc_port,
        osc_host=args.osc_host,
        osc_reply_port=args.osc_reply_port,
        allow_dirs=[Path(d) for d in args.allow_dir],
        midi=args.midi,
        midi_in=args.midi_in,
        midi_out=args.midi_out,
        midi_channel=args.midi_channel,
        midi_cc=args.midi_cc,
        play=args.play,
        audio_device=args.audio_device,
        audio_latency=args.audio_latency,
    )


def _start_bridges(studio: Studio, options: BridgeOptions) -> Bridges | None:
    if not options.wanted:
        return None
    from studio.bridges.remote import Bridges

    bridges = Bridges(studio, options)
    for note in bridges.notes:
        print(note, flush=True)
    return bridges


def cmd_serve(args: argparse.Namespace) -> int:
    from studio.app import check_port, serve
    from studio.service import open_studio

    auth = _auth(args.auth, args.host)
    if not 0 < args.port < 65536:
        raise StudioError(f"port {args.port} is not a TCP port", "use 1-65535, e.g. --port 7860")
    check_port(args.host, args.port)
    stop_on_signals()
    options = _bridge_options(args, args.osc_port)
    studio = open_studio(args.model, args.device, args.library, args.export_dir, args.fast_path, args.dtype)
    bridges = None
    try:
        bridges = _start_bridges(studio, options)
        serve(studio, args.host, args.port, auth)
    except OSError as exc:
        raise StudioError(
            f"cannot serve on {args.host}:{args.port}: {exc.strerror or exc}",
            "another program uses it? try --port 7861",
        ) from exc
    finally:
        if bridges is not None:
            bridges.close()
        studio.close()
    return 0


def cmd_osc(args: argparse.Namespace) -> int:
    """The DAW bridge without the browser: OSC (and MIDI, playback) on the one engine."""
    import threading

    from studio.service import open_studio

    options = _bridge_options(args, args.port)
    stop_on_signals()
    studio = open_studio(args.model, args.device, args.library, args.export_dir, args.fast_path, args.dtype)
    try:
        bridges = _start_bridges(studio, options)
        model = studio.model
        print(f"Studio OSC bridge ready ({model.name} on {model.device}); Ctrl+C stops it", flush=True)
        try:
            threading.Event().wait()
        finally:
            if bridges is not None:
                bridges.close()
    finally:
        studio.close()
    return 0


def cmd_devices(args: argparse.Namespace) -> int:
    """What playback and MIDI could use here, or why they cannot run."""
    from studio.bridges.midi import MidiUnavailable, port_names
    from studio.bridges.playback import PlaybackError, output_devices

    try:
        outputs = output_devices()
        print("audio outputs:" if outputs else "audio outputs: none found")
        for name in outputs:
            print(f"  {name}")
    except PlaybackError as exc:
        print(f"audio outputs: {exc}")
    try:
        ins, outs = port_names()
        print(f"MIDI inputs: {', '.join(ins) or 'none'}")
        print(f"MIDI outputs: {', '.join(outs) or 'none'}")
    except MidiUnavailable as exc:
        print(f"MIDI: {exc}")
    return 0


def add_library_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--library", help="library folder (default: $STUDIO_LIBRARY_DIR or the user data folder)"
    )
    parser.add_argument(
        "--export-dir", help="folder DAWs watch for takes and exports (default: LIBRARY/exports)"
    )


def add_bridge_options(parser: argparse.ArgumentParser, osc_port_flag: str | None) -> None:
    group = parser.add_argument_group("DAW bridge (see docs/osc.md and docs/midi.md)")
    if osc_port_flag:
        group.add_argument(
            osc_port_flag, type=int, dest="osc_port", help="start the OSC server on this UDP port"
        )
    group.add_argument("--osc-host", default="127.0.0.1", help="OSC address to bind (default loopback only)")
    group.add_argument(
        "--osc-reply-port",
        type=int,
        help="send replies only to this port (default: the sender's port and the OSC port + 1)",
    )
    group.add_argument(
        "--allow-dir",
        action="append",
        default=[],
        help="a folder OSC may read recordings from (repeatable; the library and export folders always)",
    )
    group.add_argument("--midi", action="store_true", help='open virtual MIDI ports "Studio In"/"Studio Out"')
    group.add_argument("--midi-in", help="an existing MIDI input port to listen to instead (e.g. loopMIDI)")
    group.add_argument("--midi-out", help="an existing MIDI output port to send to instead")
    group.add_argument("--midi-channel", type=int, help="listen on one channel, 1-16 (default: all)")
    group.add_argument("--midi-cc", help='CC map, e.g. "diversity=1,strength=71,seconds=74" (the default)')
    group.add_argument("--play", action="store_true", help="play takes on this machine (on with --midi)")
    group.add_argument("--audio-device", help="output device name or number (see `studio devices`)")
    group.add_argument("--audio-latency", default="low", help="low, high or seconds (default low)")


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
        studio.close()
    return 0


FAST_PATH_HELP = (
    "eager, compile (torch.compile) or graphs (compiled, each take one CUDA graph); "
    "default: graphs on CUDA, eager elsewhere"
)


def add_serve_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback only)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--model", help="model name (see `studio models`) or folder; default studio-mini")
    parser.add_argument("--device", help="cuda, mps or cpu (default: the best available)")
    add_dtype_option(parser)
    add_fast_path_option(parser, FAST_PATH_HELP)
    parser.add_argument(
        "--auth",
        help="user:password, or @FILE holding it (default: $STUDIO_AUTH); required beyond loopback",
    )
    add_library_options(parser)
    add_bridge_options(parser, "--osc-port")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The `studio` parser; given the command word that will run, only that command's options need
    to be complete (None: every command's are)."""
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

    osc = sub.add_parser("osc", help="the DAW bridge alone: OSC server (+ MIDI, playback), no browser")
    osc.add_argument("--port", type=int, default=9000, help="UDP port to listen on (default 9000)")
    osc.add_argument("--model", help="model name (see `studio models`) or folder; default studio-mini")
    osc.add_argument("--device", help="cuda, mps or cpu (default: the best available)")
    add_dtype_option(osc)
    add_fast_path_option(osc, FAST_PATH_HELP)
    add_library_options(osc)
    add_bridge_options(osc, None)
    osc.set_defaults(func=cmd_osc)

    devices = sub.add_parser("devices", help="list audio outputs and MIDI ports, or why there are none")
    devices.set_defaults(func=cmd_devices)

    gen = sub.add_parser("generate", help="generate takes from a prompt and write WAV + JSON files")
    gen.add_argument("prompt", nargs="?", help='what to hear, e.g. "punchy 808 kick, long tail"')
    gen.add_argument("--model", help="model name (see `studio models`) or folder; default studio-mini")
    gen.add_argument("--negative", default="", help="negative prompt (used when cfg is not 1)")
    gen.add_argument("--seconds", type=float, help="length of each take (default: the model's full length)")
    gen.add_argument("--variations", type=int, default=1, help="takes to generate in one batch (1-16)")
    gen.add_argument(
        "--diversity", type=float, default=DEFAULT_DIVERSITY, help="0: identical takes … 1: independent takes"
    )
    gen.add_argument("--seed", type=int, help="anchor seed; -1 or omitted: random")
    gen.add_argument(
        "--steps",
        type=int,
        help="sampling steps (default 8 for ping-pong, 50 for Euler; MAR: decoding iterations, default 8)",
    )
    gen.add_argument(
        "--cfg", type=float, help="classifier-free guidance scale (default: the model's own; 1 is off)"
    )
    gen.add_argument(
        "--sampler",
        choices=["pingpong", "euler", "onestep", "mar"],
        help="default: what the model was made for",
    )
    gen.add_argument("--init", help="recording to restyle (audio-to-audio)")
    gen.add_argument(
        "--strength",
        type=float,
        help=f"with --init: 0 keeps the recording, 1 ignores it (default {DEFAULT_STRENGTH})",
    )
    gen.add_argument("--params", help="a take's JSON sidecar: regenerate exactly that take")
    gen.add_argument(
        "--out", default="out", help="folder for the WAV files and their JSON sidecars (default: ./out)"
    )
    gen.add_argument("--bit-depth", type=int, choices=[16, 24, 32], default=24, help="WAV sample format")
    gen.add_argument("--device", help="cuda, mps or cpu (default: the best available)")
    add_dtype_option(gen)
    add_fast_path_option(
        gen, "eager (default; compiling would cost one command more than it saves), compile, graphs"
    )
    gen.set_defaults(fast_path="eager")
    gen.set_defaults(func=cmd_generate)

    models = sub.add_parser("models", help="list the models Studio can find")
    models.set_defaults(func=cmd_models)

    from studio.data.cli import add_data_commands
    from studio.eval.cli import add_clap_train_command, add_eval_commands

    add_data_commands(sub)
    add_eval_commands(sub)
    if command in (None, "train"):
        from studio.training.cli import add_train_commands

        add_clap_train_command(add_train_commands(sub))
    else:
        # The trainers' options come from their modules, which import torch: seconds that only
        # `studio train …` should pay, not `studio --help`, `studio models` or a typo.
        sub.add_parser("train", help=TRAIN_HELP)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = next((word for word in argv if not word.startswith("-")), "")
    return run(lambda: build_parser(command).parse_args(argv))
