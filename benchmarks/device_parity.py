"""The parity fixtures on a device, as the engine runs there: measured errors against the recorded
outputs of stable-audio-tools 0.0.19, each beside its tolerance, written as JSON.

    python benchmarks/device_parity.py --device cuda --out OUT.json

Folders: $STUDIO_SAO_FIXTURES (default ../shared/fixtures/sao-parity) and $STUDIO_T5_FIXTURES
(default ../shared/fixtures/sao-t5). For each, in float32 (TF32 off) at the fixtures' tolerance of
1e-4, and in the engine's own precision policy (bf16 DiT on CUDA) at the tolerances the CPU
emulation tests state (tests/test_precision.py): DiT velocity at cfg 1 and 3, the VAE, the recorded
ping-pong runs; the T5 states (T5 in fp16 on CUDA, as the reference); and the two seeded
generations through the Engine on its default fast path (compiled, one CUDA graph a take).
Every case is run and recorded; the exit status is 1 if any misses its tolerance.

On a CPU (a rehearsal) the engine runs eagerly and T5's fp16 runs with oneDNN off, as the
reference's CPU did (tests/test_sao_t5_parity.py says why).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import torch
from safetensors.torch import load_file

from studio import sampling
from studio.engine import Engine, pick_device
from studio.models import load_model
from studio.models.precision import pick_dtype, place_model
from studio.request import Request

ROOT = Path(__file__).resolve().parents[1]
EXACT = 1e-4  # the fixtures' own tolerance, for float32
# The CPU emulation's stated tolerances for the bf16/fp16 policy (tests/test_precision.py); cfg 3
# scales the branches' difference, and its rounding, by 3 (bf16 on a CPU: 6.5e-3 at cfg 1, 1.6e-2
# at cfg 3); a generation compounds eight steps and the decode, so it gets the velocity's.
HALF = {"velocity": 1.5e-2, "velocity_cfg3": 4e-2, "pingpong": 5e-3, "generation": 1.5e-2}


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    actual, expected = actual.detach().double().cpu(), expected.double().cpu()
    return float((actual - expected).norm() / expected.norm())


class Report:
    """Every case's result, written to `path` as each one ends (a run cut short keeps what it had)."""

    def __init__(self, path: Path, header: dict) -> None:
        self.path, self.header = path, header
        self.cases: list[dict] = []

    @property
    def failed(self) -> list[str]:
        return [c["case"] for c in self.cases if not c["ok"]]

    def write(self) -> None:
        result = {**self.header, "cases": self.cases, "failed": self.failed}
        self.path.write_text(json.dumps(result, indent=2) + "\n")

    def check(self, name: str, measure: Callable[[], float], tolerance: float) -> None:
        started = time.perf_counter()
        try:
            error = measure()
            case = {"case": name, "relative_error": error, "tolerance": tolerance, "ok": error <= tolerance}
        except Exception as exc:  # every case is recorded, a failing one too
            case = {"case": name, "error": f"{type(exc).__name__}: {exc}".splitlines()[0], "ok": False}
        case["seconds"] = round(time.perf_counter() - started, 3)
        self.cases.append(case)
        shown = (
            f"{case['relative_error']:.2e} (<= {tolerance:g})" if "relative_error" in case else case["error"]
        )
        print(f"{'ok  ' if case['ok'] else 'FAIL'} {name}: {shown}", flush=True)
        self.write()


def sao_cases(report: Report, folder: Path, device: torch.device, dtype: torch.dtype, tag: str) -> None:
    cases = {k: v.to(device) for k, v in load_file(str(folder / "cases.safetensors")).items()}
    described = json.loads((folder / "cases.json").read_text()).get("sampling", {})
    model = load_model(folder)
    place_model(model, device, dtype)
    config = model.config
    cond = model.assemble(
        {
            config.prompt_conditioner.id: cases["prompt_embeds"],
            config.seconds_conditioner.id: cases["seconds_embed"][:, None],
        }
    )
    exact = dtype == torch.float32
    with torch.no_grad():
        velocity = model.velocity(cases["dit_x"], cases["dit_t"], cond)
        report.check(
            f"sao/{tag}/velocity_cfg1",
            lambda: relative_error(velocity, cases["dit_v"]),
            EXACT if exact else HALF["velocity"],
        )
        guided = sampling.guided(lambda x, t: model.velocities(x, t, (cond, cond.unconditional())), 3.0)
        report.check(
            f"sao/{tag}/velocity_cfg3",
            lambda: relative_error(guided(cases["dit_x"], cases["dit_t"]), cases["dit_v_cfg3"]),
            EXACT if exact else HALF["velocity_cfg3"],
        )
        decoded = model.vae.decode(cases["vae_z"])
        report.check(
            f"sao/{tag}/vae_decode ({str(model.vae.decoder_dtype).removeprefix('torch.')})",
            lambda: relative_error(decoded, cases["vae_decoded"]),
            EXACT if model.vae.decoder_dtype == torch.float32 else 10 ** (-50 / 20),
        )
        report.check(
            f"sao/{tag}/vae_encode",
            lambda: relative_error(model.vae.encode(cases["vae_audio"]), cases["vae_latent_mean"]),
            EXACT,
        )
        runs = sorted(k.removesuffix("_out") for k in cases if f"{k.removesuffix('_out')}_noises" in cases)
        for run in runs:
            noises, recorded = cases[f"{run}_noises"], cases[f"{run}_schedule"].cpu()
            sigma_max = described.get(run, {}).get("init_noise_level", float(recorded[0]))
            schedule = sampling.logsnr_schedule(len(recorded) - 1, sigma_max)
            x = noises[0]
            if f"{run}_init" in cases:
                x = sampling.noised_init(cases[f"{run}_init"], noises[0], sigma_max)
            out = sampling.sample_pingpong(
                lambda x, t: model.velocity(x, t, cond), x, schedule, noises.__getitem__
            )
            report.check(
                f"sao/{tag}/pingpong_{run}",
                lambda out=out, run=run: relative_error(out, cases[f"{run}_out"]),
                EXACT if exact else HALF["pingpong"],
            )


def t5_cases(report: Report, folder: Path, device: torch.device, dtype: torch.dtype, tag: str) -> None:
    import huggingface_hub.constants

    huggingface_hub.constants.HF_HUB_CACHE = str(folder / "hf-home" / "hub")
    cases = load_file(str(folder / "cases.safetensors"))
    meta = json.loads((folder / "cases.json").read_text())
    reference_kernels = (
        torch.backends.mkldnn.flags(enabled=False, allow_tf32=None) if device.type == "cpu" else nullcontext()
    )
    exact = dtype == torch.float32
    engine = Engine(
        folder / "model", device=str(device), dtype=str(dtype).removeprefix("torch."), warmup=False
    )
    encoder = engine.model.prompt_encoder
    tokenizer, t5 = encoder._load_backbone(device)
    encoder._backbone = (tokenizer, t5.half())  # already fp16 on CUDA, as the reference everywhere
    with reference_kernels, torch.no_grad():
        if exact:
            states, _ = encoder(meta["prompts"])
            report.check(
                f"t5/{tag}/t5_states_fp16", lambda: relative_error(states, cases["t5_emb_fp16"]), EXACT
            )
            conditioning = meta["cases"]["conditioning"]
            cond = engine.model.condition(conditioning["prompts"], cases["cond_seconds_total"].tolist())
            report.check(
                f"t5/{tag}/cross_attention_context",
                lambda: relative_error(cond.context, cases["cond_cross_attn"]),
                EXACT,
            )
            for cfg in (1, 3):
                guided = sampling.guided(
                    lambda x, t: engine.model.velocities(x, t, (cond, cond.unconditional())), cfg
                )
                velocity = guided(cases["dit_x"].to(device), cases["dit_t"].to(device))
                report.check(
                    f"t5/{tag}/velocity_cfg{cfg}",
                    lambda v=velocity, cfg=cfg: relative_error(v, cases[f"dit_v_cfg{cfg}"]),
                    EXACT,
                )
        for run in meta["cases"]["generate"]["runs"]:
            request = Request(
                run["prompt"], seconds=run["seconds_total"], steps=run["steps"], cfg=1, seed=run["seed"]
            )
            for attempt in ("first", "again"):  # the graphs path captures on the first, replays after
                take = engine.generate(request).takes[0]
                expected = cases[f"{run['name']}_audio"][0, :, : take.audio.shape[1]]
                report.check(
                    f"t5/{tag}/{run['name']}_engine_{engine.fast_path}_{attempt}",
                    lambda take=take, expected=expected: relative_error(
                        torch.from_numpy(take.audio), expected
                    ),
                    EXACT if exact else HALF["generation"],
                )
    engine.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", required=True, help="the JSON to write")
    parser.add_argument(
        "--dtype", help="the policy's pass (default: the device's; bfloat16 rehearses it on a CPU)"
    )
    args = parser.parse_args()
    device = pick_device(args.device)
    sao = Path(os.environ.get("STUDIO_SAO_FIXTURES", ROOT.parent / "shared" / "fixtures" / "sao-parity"))
    t5 = Path(os.environ.get("STUDIO_T5_FIXTURES", ROOT.parent / "shared" / "fixtures" / "sao-t5"))
    header = {
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "torch": torch.__version__,
        "fixtures": {"sao": str(sao), "t5": str(t5)},
    }
    report = Report(Path(args.out), header)
    for dtype in dict.fromkeys((torch.float32, pick_dtype(device, args.dtype))):
        tag = str(dtype).removeprefix("torch.")
        sao_cases(report, sao, device, dtype, tag)
        t5_cases(report, t5, device, dtype, tag)
    failed = report.failed
    print(f"{len(report.cases) - len(failed)} of {len(report.cases)} cases within tolerance; {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
