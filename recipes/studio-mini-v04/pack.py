"""Pack a run's export as an embedded model folder: weights in float16, the sampling defaults of
this recipe's `model_config.json` (or `--defaults`), the folder's model card left as it is.

    python recipes/studio-mini-v04/pack.py RUN/model models/studio-mini
    python recipes/studio-mini-v04/pack.py SWIFT_RUN/model models/studio-mini-swift \
        --defaults SWIFT_RUN/model/model_config.json

A run's export keeps the config its run started from, so defaults chosen later (guidance, sampler,
steps) come from this recipe here. Prints how far a seeded take of the packed folder is from the
same take with the export's float32 weights: float16 weights must not change what a user hears.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch

from studio.engine import Engine
from studio.models import ModelConfig, load_model, save_model
from studio.models.precision import snr_db
from studio.models.registry import CONFIG_FILE
from studio.request import Request

HERE = Path(__file__).resolve().parent
SAMPLING_DEFAULTS = ("default_cfg", "guidance_interval", "grid_guidance", "default_sampler", "default_steps")


def pack(run_model: Path, out: Path, defaults: Path = HERE / CONFIG_FILE) -> Path:
    model = load_model(run_model)
    raw = json.loads(json.dumps(model.config.raw))
    chosen = json.loads(defaults.read_text())
    raw.update({key: chosen[key] for key in SAMPLING_DEFAULTS if key in chosen})
    model.config = ModelConfig.from_dict(raw, source=str(defaults))
    save_model(model, out, torch.float16)
    reloaded = load_model(out)
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(reloaded.state_dict()[name], tensor.half().float())
    return out


def half_precision_snr_db(run_model: Path, folder: Path, prompt: str = "synth pad", seed: int = 7) -> float:
    """SNR of the packed folder's seeded take against the same take from the run's float32 weights."""
    with tempfile.TemporaryDirectory() as full:
        model = load_model(run_model)
        model.config = ModelConfig.from_file(folder / CONFIG_FILE)
        save_model(model, full)
        takes = []
        for candidate in (full, folder):
            # float32 compute on any machine, so the SNR is the weights' rounding alone (a bf16 DiT
            # would add its own, and differently for each set of weights)
            with Engine(str(candidate), dtype="float32") as engine:
                takes.append(engine.generate(Request(prompt=prompt, seed=seed)).takes[0].audio)
    reference, packed = (torch.from_numpy(t) for t in takes)
    return snr_db(packed, reference)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_model", type=Path, help="a flow run's export (RUN/model)")
    parser.add_argument("out", type=Path, help="the model folder to write (its README.md is kept)")
    parser.add_argument(
        "--defaults",
        type=Path,
        default=HERE / CONFIG_FILE,
        help="the model_config.json whose sampling defaults the folder gets (default: this recipe's; "
        "a run's own model_config.json keeps its own, as a distilled student's should)",
    )
    args = parser.parse_args()
    print(pack(args.run_model, args.out, args.defaults))
    snr = half_precision_snr_db(args.run_model, args.out)
    print(f"a seeded take, float16 against float32 weights: {snr:.1f} dB SNR")


if __name__ == "__main__":
    main()
