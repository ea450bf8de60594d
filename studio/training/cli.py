"""`studio train autoencoder | flow | arc | mar | vsd`.

`add_train_commands(subparsers)` registers the commands on the `studio` parser; this module also
runs on its own (`python -m studio.training.cli flow …`). Under torchrun the same command line
trains on every process: `torchrun --nproc-per-node 8 -m studio train flow …`.
Option defaults come from the config dataclasses, so the help and the code cannot disagree.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from studio.commands import TRAIN_HELP, run, whole_numbers
from studio.models.config import MAR_HEADS
from studio.training.arc import ArcTrainConfig, train_arc
from studio.training.autoencoder import AutoencoderTrainConfig, train_autoencoder
from studio.training.flow import FlowTrainConfig, train_flow
from studio.training.mar import MarTrainConfig, train_mar
from studio.training.vsd import VsdTrainConfig, train_vsd


def _defaults(config_class: type) -> dict[str, Any]:
    return {
        f.name: f.default for f in dataclasses.fields(config_class) if f.default is not dataclasses.MISSING
    }


def _adder(parser: argparse.ArgumentParser, defaults: dict[str, Any]) -> Callable[[str, type, str], None]:
    """add(flag, type, help): an option whose help ends with its config default."""

    def add(flag: str, kind: type, help_text: str) -> None:
        name = flag.lstrip("-").replace("-", "_")
        parser.add_argument(flag, type=kind, help=f"{help_text} (default: {defaults[name]})")

    return add


def _common(parser: argparse.ArgumentParser, defaults: dict[str, Any]) -> None:
    add = _adder(parser, defaults)
    parser.add_argument("--corpus", type=Path, required=True, help="corpus folder holding manifest.jsonl")
    parser.add_argument(
        "--out",
        type=Path,
        required=True,
        help="run folder: state.pt, log.jsonl, model/ (resumes if state.pt exists)",
    )
    add("--steps", int, "total optimiser steps to reach")
    add("--batch-size", int, "clips per step and process")
    add("--lr", float, "learning rate")
    add("--ema-decay", float, "EMA decay of the exported weights")
    add("--export-every", int, "steps between exports of model/ and state.pt")
    add("--log-every", int, "steps between lines in log.jsonl")
    add("--val-every", int, "steps between validation losses on the 'valid' split (0: never)")
    add("--grad-clip", float, "gradient norm clip (0: off)")
    add("--seed", int, "seed of the initial weights, data order and noise")
    add("--workers", int, "data-loading processes")
    add(
        "--balance",
        float,
        "category balancing, 0 to 1: 0 draws clips in the corpus's proportions, 1 draws every "
        "category about equally often (rare categories' clips repeat), 0.5 is square-root sampling",
    )
    add(
        "--focus",
        str,
        "comma list of categories (or other) drawn more often, each optionally =weight (default 4), "
        "on top of --balance: drum-loop=3 triples every drum loop's turns an epoch",
    )
    add(
        "--minutes",
        float,
        "wall-clock budget: stop (exporting and saving state) at the first logged step after this "
        "many minutes, 0 for none; rerunning the command resumes",
    )
    parser.add_argument(
        "--device", help="cuda, mps or cpu (default: the best available; torchrun: one GPU per process)"
    )


def _config(config_class: type, args: argparse.Namespace) -> Any:
    names = {f.name for f in dataclasses.fields(config_class)}
    return config_class(**{k: v for k, v in vars(args).items() if k in names and v is not None})


def _report(model_folder: Path) -> None:
    """Print the exported model folder once, not once per torchrun process."""
    if os.environ.get("RANK", "0") == "0":
        print(model_folder)


def cmd_train_autoencoder(args: argparse.Namespace) -> int:
    _report(train_autoencoder(_config(AutoencoderTrainConfig, args)))
    return 0


def cmd_train_flow(args: argparse.Namespace) -> int:
    _report(train_flow(_config(FlowTrainConfig, args)))
    return 0


def cmd_train_arc(args: argparse.Namespace) -> int:
    _report(train_arc(_config(ArcTrainConfig, args)))
    return 0


def cmd_train_mar(args: argparse.Namespace) -> int:
    _report(train_mar(_config(MarTrainConfig, args)))
    return 0


def cmd_train_vsd(args: argparse.Namespace) -> int:
    _report(train_vsd(_config(VsdTrainConfig, args)))
    return 0


def add_train_commands(subparsers: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """Register `train autoencoder|flow|arc|mar|vsd` on a parser's subcommands; returns the `train`
    group."""
    train = subparsers.add_parser("train", help=TRAIN_HELP)
    kinds = train.add_subparsers(
        dest="train_command", required=True, metavar="{autoencoder,flow,arc,mar,vsd,clap}"
    )

    defaults = _defaults(AutoencoderTrainConfig)
    ae = kinds.add_parser(
        "autoencoder", help="train the VAE, Oobleck or STFT (spectral, phase, adversarial and KL losses)"
    )
    _common(ae, defaults)
    ae.add_argument(
        "--config",
        type=Path,
        help="model_config.json of a new model (with --init: starting from --init's weights where they fit)",
    )
    ae.add_argument("--init", type=Path, help="model folder whose VAE to train further")
    ae.add_argument("--chunk", type=int, help=f"audio frames per example (default: {defaults['chunk']})")
    ae.add_argument(
        "--disc-lr", type=float, help=f"discriminator learning rate (default: {defaults['disc_lr']})"
    )
    ae.add_argument(
        "--disc-filters", type=int, help=f"discriminator width (default: {defaults['disc_filters']})"
    )
    ae.add_argument(
        "--disc-n-ffts",
        type=whole_numbers,
        help=f"discriminator FFT sizes (default: {','.join(map(str, defaults['disc_n_ffts']))})",
    )
    ae.add_argument(
        "--disc-periods",
        type=whole_numbers,
        help="add HiFi-GAN period discriminators with these periods in samples, e.g. 2,3,5,7,11 "
        "(default: none)",
    )
    ae.add_argument(
        "--disc-start",
        type=int,
        help=f"steps before the adversarial losses join (default: {defaults['disc_start']})",
    )
    ae.add_argument(
        "--fft-sizes",
        type=whole_numbers,
        help="FFT sizes of the multi-resolution STFT loss "
        f"(default: {','.join(map(str, defaults['fft_sizes']))})",
    )
    ae.add_argument("--kl-weight", type=float, help=f"(default: {defaults['kl_weight']})")
    ae.add_argument(
        "--mel-weight",
        type=float,
        help=f"weight of the multi-scale log-mel L1 loss (default: {defaults['mel_weight']}, off; DAC: 15)",
    )
    ae.add_argument(
        "--low-band-weight",
        type=float,
        help="weight of an L1 loss on log energies in 5 Hz bands below 40 Hz, where a decoder's "
        f"frame-to-frame steps end up (default: {defaults['low_band_weight']}, off)",
    )
    ae.add_argument(
        "--phase-weight",
        type=float,
        help="weight of a loss on phase: for an STFT decoder, its phasors against the original's in "
        "the same frames (it learns where it can be sure of a phase); otherwise the output's phase, "
        "instantaneous frequency and group delay in 2048-point frames; both weighted by loudness "
        f"(default: {defaults['phase_weight']}, off)",
    )
    ae.add_argument(
        "--magnitude-weight",
        type=float,
        help="STFT decoders: weight of a loss on the log magnitudes they write against the "
        "original's in the same frames, which reaches partials written far too quietly for the "
        f"output's losses to move (default: {defaults['magnitude_weight']}, off)",
    )
    ae.add_argument(
        "--partial-weight",
        type=float,
        help="STFT decoders with a partial head (partial_bands in the config): weight of a loss on "
        "where and how loud it writes each band's loudest partial against the original's "
        f"(default: {defaults['partial_weight']}, off)",
    )
    ae.add_argument(
        "--partial-lr-scale",
        type=float,
        help="learning rate of a partial head as a multiple of --lr: added to a trained decoder it "
        f"starts from nothing (default: {defaults['partial_lr_scale']})",
    )
    ae.add_argument(
        "--tone-share",
        type=float,
        help="share of training examples that are synthetic notes (sines and harmonic tones at "
        "pitches drawn from 30 Hz to 8 kHz) instead of corpus clips, so the autoencoder meets every "
        f"pitch (default: {defaults['tone_share']}, none)",
    )
    ae.add_argument("--adversarial-weight", type=float, help=f"(default: {defaults['adversarial_weight']})")
    ae.add_argument("--feature-weight", type=float, help=f"(default: {defaults['feature_weight']})")
    ae.add_argument(
        "--freeze-encoder",
        action="store_true",
        default=None,
        help="train only the decoder, so the latents (and a DiT trained on them) stay valid",
    )
    ae.set_defaults(func=cmd_train_autoencoder)

    defaults = _defaults(FlowTrainConfig)
    flow = kinds.add_parser("flow", help="rectified-flow pretraining of the DiT over a trained VAE")
    _common(flow, defaults)
    flow.add_argument(
        "--init", type=Path, help="model folder with the trained VAE (e.g. an autoencoder run's model/)"
    )
    flow.add_argument("--config", type=Path, help="model_config.json for a new DiT over --init's VAE")
    flow.add_argument(
        "--warm-start",
        type=Path,
        help="trained diffusion model folder whose conditioners and DiT blocks start a new run "
        "(the layers that touch latents start fresh when its VAE differs)",
    )
    flow.add_argument("--cache", type=Path, help="latent cache folder (default: CORPUS/.cache/latents)")
    flow.add_argument(
        "--cond-dropout",
        type=float,
        help=f"share of rows trained unconditioned, for CFG (default: {defaults['cond_dropout']})",
    )
    flow.add_argument(
        "--padded-seconds-share",
        type=float,
        help="share of the time a clip shorter than the window is conditioned on a longer length, so "
        "a hit asked for at any length decays into silence (default: "
        f"{defaults['padded_seconds_share']})",
    )
    flow.add_argument(
        "--fact-dropout",
        type=float,
        help="share of the captions naming a note or tempo trained without it, so a prompt that names "
        f"neither still gets its sound (default: {defaults['fact_dropout']})",
    )
    flow.add_argument(
        "--beat-grid-lr-scale",
        type=float,
        help="learning rate of the beat grid's projection as a multiple of --lr: it learns only from "
        "the few rows that state a tempo, so at the common rate it stays too faint for the blocks "
        f"to use (default: {defaults['beat_grid_lr_scale']})",
    )
    flow.set_defaults(func=cmd_train_flow)

    defaults = _defaults(ArcTrainConfig)
    arc = kinds.add_parser("arc", help="ARC post-training of a flow model into a few-step model")
    _common(arc, defaults)
    arc.add_argument("--init", type=Path, help="the pretrained flow model folder (a flow run's model/)")
    arc.add_argument("--cache", type=Path, help="latent cache folder (default: CORPUS/.cache/latents)")
    arc.add_argument(
        "--disc-lr", type=float, help=f"discriminator learning rate (default: {defaults['disc_lr']})"
    )
    arc.add_argument(
        "--depth-fraction",
        type=float,
        help=f"share of DiT blocks the discriminator copies (default: {defaults['depth_fraction']})",
    )
    arc.add_argument(
        "--contrastive-weight",
        type=float,
        help=f"weight λ of the contrastive loss (default: {defaults['contrastive_weight']})",
    )
    arc.set_defaults(func=cmd_train_arc)

    defaults = _defaults(MarTrainConfig)
    mar = kinds.add_parser(
        "mar", help="masked autoregressive model with a diffusion or one-step energy head (docs/mar.md)"
    )
    _common(mar, defaults)
    mar.add_argument(
        "--init",
        type=Path,
        help="model folder whose VAE and conditioners to reuse (e.g. a flow run's model/); a MAR model "
        "folder without --config continues that model",
    )
    mar.add_argument("--config", type=Path, help="mar_cond model_config.json for a new backbone and head")
    mar.add_argument("--cache", type=Path, help="latent cache folder (default: CORPUS/.cache/latents)")
    mar.add_argument(
        "--head",
        choices=MAR_HEADS,
        help="the sampling head to train (default: the config's; energy with --teacher)",
    )
    mar.add_argument(
        "--teacher",
        type=Path,
        help="a trained diffusion-head MAR model folder: the student starts from its backbone and "
        "distils its representations (needs --distill-weight)",
    )
    mar.add_argument(
        "--distill-weight",
        type=float,
        help=f"weight λ of the representation MSE to the teacher (default: {defaults['distill_weight']})",
    )
    mar.add_argument(
        "--cond-dropout",
        type=float,
        help=f"share of rows trained without the prompt, for CFG (default: {defaults['cond_dropout']})",
    )
    mar.set_defaults(func=cmd_train_mar)

    defaults = _defaults(VsdTrainConfig)
    vsd = kinds.add_parser(
        "vsd",
        help="distil a diffusion model into a one-step generator from captions alone (variational "
        "score distillation, docs/swift.md)",
    )
    _common(vsd, defaults)
    add = _adder(vsd, defaults)
    vsd.add_argument("--teacher", type=Path, help="the trained diffusion model folder to distil")
    add("--fake-lr", float, "learning rate of the fake score")
    add("--fake-updates", int, "fake-score updates per student update")
    vsd.add_argument("--cfg", type=float, help="the teacher's guidance (default: its own default_cfg)")
    add("--smoothness", float, "weight of the temporal smoothness term (0: off)")
    add("--designed-share", float, "share of prompts designed afresh by the corpus builder, not read")
    add("--time-min", float, "lowest noise time of the student's loss")
    add("--time-max", float, "highest noise time of the student's loss")
    vsd.set_defaults(func=cmd_train_vsd)
    return kinds


def main(argv: list[str] | None = None) -> int:
    """`python -m studio.training.cli autoencoder|flow|arc|mar|clap …`: `studio train …` by another
    name, for torchrun and machines without the `studio` script."""
    from studio.eval.cli import add_clap_train_command

    parser = argparse.ArgumentParser(prog="python -m studio.training.cli")
    add_clap_train_command(add_train_commands(parser.add_subparsers(dest="command")))
    return run(lambda: parser.parse_args(["train", *(argv if argv is not None else sys.argv[1:])]))


if __name__ == "__main__":
    sys.exit(main())
