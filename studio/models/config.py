"""Typed view of a model_config.json: a stable-audio-tools `diffusion_cond` model, or our own
`mar_cond` (masked autoregressive, docs/mar.md) over the same VAE and conditioners.

Only the options that the models we run actually use are accepted; anything else is refused with
the file and the field named, so a config we would silently mis-run never loads.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from studio.errors import ModelConfigError
from studio.request import DEFAULT_STEPS, MAX_CFG, check_parameter

MODEL_TYPES = ("diffusion_cond", "mar_cond")
SUPPORTED_OBJECTIVES = ("rf_denoiser", "rectified_flow")
PROMPT_ENCODERS = ("t5", "minilm")
# Numbers read from the prompt's words (studio/prompt_facts.py): one cross-attention token each.
PROMPT_FACTS = ("note", "bpm")
MAR_HEADS = ("diffusion", "energy")


# The conditioning entry the beat grid travels under beside the conditioners' own (model.py).
BEAT_GRID_ID = "beats"


@dataclass(frozen=True)
class OobleckConfig:
    """One side (encoder or decoder) of the Oobleck autoencoder."""

    audio_channels: int
    channels: int
    c_mults: tuple[int, ...]
    strides: tuple[int, ...]
    latent_dim: int
    nearest_upsample: bool = False  # decoder only: repeat-then-convolve instead of transposed convs


@dataclass(frozen=True)
class StftConfig:
    """One side of Studio's STFT autoencoder (studio/models/spectral.py): a ConvNeXt trunk over
    STFT frames, one frame per latent frame."""

    audio_channels: int
    n_fft: int
    hop_length: int
    width: int
    depth: int
    latent_dim: int
    kernel_size: int = 7  # of each block's depthwise convolution over frames
    sureness_power: float = 2.0  # decoder only: how far below length 1 a phasor's phase turns random
    # decoder only: a second, band-by-band layer over the trunk's output (spectral.BandHead), in
    # this many bands of the spectrum (0: the linear output alone) with this many features each
    head_bands: int = 0
    head_band_width: int = 128
    # decoder only: a head that writes the loudest partial of each of this many bands of the
    # spectrum at a position between bins (spectral.PartialHead; 0: none), through this many
    # features
    partial_bands: int = 0
    partial_width: int = 512


AUTOENCODER_SIDES = ("oobleck", "stft")


@dataclass(frozen=True)
class AutoencoderConfig:
    encoder: OobleckConfig | StftConfig  # latent_dim here is 2x the decoder's: mean and scale
    decoder: OobleckConfig | StftConfig
    latent_dim: int
    downsampling_ratio: int
    scale: float = 1.0


@dataclass(frozen=True)
class ConditionerConfig:
    id: str
    type: str  # "t5" | "minilm" | "number" | "note" | "bpm"
    options: dict[str, Any]


@dataclass(frozen=True)
class DiTConfig:
    io_channels: int
    embed_dim: int
    depth: int
    num_heads: int
    cond_token_dim: int
    global_cond_dim: int
    qk_norm: bool
    patch_size: int = 1  # latent frames per token
    beat_grid: bool = False  # the DiT reads the beat phase of a tempo the prompt states (dit.py)

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads


@dataclass(frozen=True)
class MarHeadConfig:
    """The per-frame sampling head of a MAR model."""

    type: str  # "diffusion": flow MLP sampled with Euler over `steps` · "energy": one pass
    width: int
    depth: int  # residual AdaLN blocks
    steps: int  # Euler steps of a diffusion head at sampling (1: the one-step flow baseline)
    temperature: float  # scale of the head's input noise: lower is tamer, higher more varied


@dataclass(frozen=True)
class MarConfig:
    """The backbone of a MAR model: a bidirectional transformer over latent frames."""

    io_channels: int
    embed_dim: int
    depth: int
    num_heads: int
    mask_ratio_min: float  # training masks ceil(r · frames) frames, r uniform in [mask_ratio_min, 1]
    head: MarHeadConfig


@dataclass(frozen=True)
class ModelConfig:
    sample_rate: int
    sample_size: int
    audio_channels: int
    autoencoder: AutoencoderConfig
    conditioners: tuple[ConditionerConfig, ...]
    cond_dim: int
    # Conditioners whose tokens form Conditioning.context (what CFG's unconditional branch zeroes)
    # and Conditioning.global_cond (what it keeps).
    context_cond_ids: tuple[str, ...]
    global_cond_ids: tuple[str, ...]
    objective: str | None  # the diffusion objective; None for MAR models, whose head says how they sample
    dit: DiTConfig | None  # diffusion_cond models
    raw: dict[str, Any]
    mar: MarConfig | None = None  # mar_cond models
    # Guidance a request gets when it names none: the model knows whether it was made to run
    # unguided (ARC: 1) or needs guidance (plain flow, MAR). Studio's own key; other tools ignore it.
    default_cfg: float = 1.0
    # How a request that names no sampler or steps is sampled, where the objective's usual way
    # (ping-pong 8 for rf_denoiser, Euler 50 for rectified_flow) is not this model's best.
    default_sampler: str | None = None
    default_steps: int | None = None
    # The noise levels t (1 = pure noise) at which guidance applies; the other steps run the
    # conditional branch alone, at half the cost. Guiding the noisiest steps can push a take past
    # its data (studio-mini v0.4's kicks go silent) or make takes alike (Kynkäänniemi et al. 2024).
    guidance_interval: tuple[float, float] = (0.0, 1.0)
    # For a DiT with a beat grid: how strongly guided steps push toward the grid of a tempo the
    # prompt states, apart from cfg (sampling.guided); 0 leaves the grid to cfg alone. A prompt that
    # states a tempo costs a third branch at those steps. Studio's own key.
    grid_guidance: float = 0.0

    def guidance(self, cfg: float | None) -> float:
        """The guidance scale asked for, or this model's default where none was named; refused
        outside 0 to MAX_CFG, wherever it is asked for (a request, the benchmark, an evaluation)."""
        return self.default_cfg if cfg is None else check_parameter("cfg", cfg)

    @property
    def sampler(self) -> str:
        """How a request that names no sampler is sampled: default_sampler, else the usual way of
        the objective (ping-pong for rf_denoiser, Euler for rectified_flow; MAR models decode)."""
        if self.default_sampler is not None:
            return self.default_sampler
        if self.mar is not None:
            return "mar"
        return "pingpong" if self.objective == "rf_denoiser" else "euler"

    def steps(self, sampler: str) -> int:
        """Steps of a request that names none: default_steps for the default sampler, else the
        sampler's usual count."""
        if sampler == self.sampler and self.default_steps is not None:
            return self.default_steps
        return DEFAULT_STEPS[sampler]

    @property
    def model_type(self) -> str:
        return "mar_cond" if self.mar is not None else "diffusion_cond"

    @property
    def latent_length(self) -> int:
        return self.sample_size // self.autoencoder.downsampling_ratio

    @property
    def frame_seconds(self) -> float:
        """Seconds of audio per latent frame."""
        return self.autoencoder.downsampling_ratio / self.sample_rate

    @property
    def beat_grid(self) -> bool:
        return self.dit is not None and self.dit.beat_grid

    @property
    def max_seconds(self) -> float:
        return self.sample_size / self.sample_rate

    @property
    def prompt_conditioner(self) -> ConditionerConfig | None:
        return next((c for c in self.conditioners if c.type in PROMPT_ENCODERS), None)

    @property
    def seconds_conditioner(self) -> ConditionerConfig | None:
        return next((c for c in self.conditioners if c.type == "number"), None)

    @classmethod
    def from_file(cls, path: str | Path) -> ModelConfig:
        path = Path(path)
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            raise ModelConfigError(
                f"{path}: no such file", "a model folder needs model_config.json"
            ) from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ModelConfigError(f"{path}: not valid JSON ({exc})") from None
        return cls.from_dict(raw, source=str(path))

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "model config") -> ModelConfig:
        return _Parser(raw, source).model()


class _Parser:
    """Reads fields with errors that say which file and which field were wrong."""

    def __init__(self, raw: Any, source: str):
        self.raw = raw
        self.source = source

    def fail(self, field: str, problem: str) -> ModelConfigError:
        return ModelConfigError(f"{self.source}: field '{field}' {problem}")

    def get(self, obj: Any, dotted: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
        node = obj
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                if default is not ...:
                    return default
                raise self.fail(dotted, "is missing")
            node = node[part]
        if kind is float and isinstance(node, int) and not isinstance(node, bool):
            node = float(node)
        if not isinstance(node, kind) or (isinstance(node, bool) and kind is not bool):
            raise self.fail(dotted, f"should be {getattr(kind, '__name__', kind)}, got {node!r}")
        return node

    def model(self) -> ModelConfig:
        raw = self.raw
        if not isinstance(raw, dict):
            raise ModelConfigError(f"{self.source}: top level should be a JSON object")
        model_type = self.get(raw, "model_type", str)
        if model_type not in MODEL_TYPES:
            runs = " and ".join(f"'{t}'" for t in MODEL_TYPES)
            raise self.fail("model_type", f"is '{model_type}'; Studio runs {runs} models")
        model = self.get(raw, "model", dict)
        conditioning = self.get(model, "conditioning", dict)
        cond_dim = self.get(conditioning, "cond_dim", int)
        conditioners = tuple(
            self.conditioner(i, c) for i, c in enumerate(self.get(conditioning, "configs", list))
        )
        autoencoder = self.autoencoder(self.get(model, "pretransform", dict))
        if model_type == "diffusion_cond":
            parts = self.diffusion(self.get(model, "diffusion", dict), conditioners, autoencoder.latent_dim)
        else:
            parts = self.mar(self.get(model, "mar", dict), conditioners, autoencoder.latent_dim)
        config = ModelConfig(
            sample_rate=self.get(raw, "sample_rate", int),
            sample_size=self.get(raw, "sample_size", int),
            audio_channels=self.get(raw, "audio_channels", int),
            autoencoder=autoencoder,
            conditioners=conditioners,
            cond_dim=cond_dim,
            raw=raw,
            default_cfg=self.get(raw, "default_cfg", float, 1.0),
            default_sampler=self.get(raw, "default_sampler", str, None),
            default_steps=self.get(raw, "default_steps", int, None),
            guidance_interval=self.interval(raw),
            grid_guidance=self.get(raw, "grid_guidance", float, 0.0),
            **parts,
        )
        if not 0 <= config.default_cfg <= MAX_CFG:
            raise self.fail("default_cfg", f"must be between 0 and {MAX_CFG:g}, got {config.default_cfg}")
        if not 0 <= config.grid_guidance <= MAX_CFG:
            raise self.fail("grid_guidance", f"must be between 0 and {MAX_CFG:g}, got {config.grid_guidance}")
        if config.grid_guidance and not (config.dit and config.dit.beat_grid):
            raise self.fail(
                "grid_guidance", "guides by a beat grid, and this model's DiT has none (beat_grid)"
            )
        if config.default_steps is not None and not 1 <= config.default_steps <= 500:
            raise self.fail("default_steps", f"must be from 1 to 500, got {config.default_steps}")
        if config.sample_size % config.autoencoder.downsampling_ratio:
            raise self.fail("sample_size", "must be a multiple of the autoencoder's downsampling_ratio")
        return config

    def interval(self, raw: dict) -> tuple[float, float]:
        interval = self.get(raw, "guidance_interval", list, [0.0, 1.0])
        if not (
            len(interval) == 2
            and all(isinstance(t, int | float) for t in interval)
            and 0 <= interval[0] < interval[1] <= 1
        ):
            raise self.fail(
                "guidance_interval", f"must be [low, high] with 0 <= low < high <= 1, got {interval}"
            )
        return float(interval[0]), float(interval[1])

    def cond_ids(
        self,
        section: dict,
        where: str,
        field: str,
        conditioners: tuple[ConditionerConfig, ...],
        default: list,
    ) -> tuple[str, ...]:
        """The conditioner ids a section lists under `field`, each checked to exist."""
        wanted = tuple(self.get(section, field, list, default))
        unknown = [i for i in wanted if i not in {c.id for c in conditioners}]
        if unknown:
            raise self.fail(f"{where}.{field}", f"names unknown conditioners {unknown}")
        return wanted

    def diffusion(
        self, diffusion: dict, conditioners: tuple[ConditionerConfig, ...], latent_dim: int
    ) -> dict[str, Any]:
        where = "model.diffusion"
        if self.get(diffusion, "type", str) != "dit":
            raise self.fail(f"{where}.type", "must be 'dit'")
        objective = self.get(diffusion, "diffusion_objective", str, "v")
        if objective not in SUPPORTED_OBJECTIVES:
            raise self.fail(
                f"{where}.diffusion_objective", f"is '{objective}'; supported: {SUPPORTED_OBJECTIVES}"
            )
        dit = self.dit(self.get(diffusion, "config", dict))
        if dit.io_channels != latent_dim:
            raise self.fail(f"{where}.config.io_channels", "must equal the autoencoder latent_dim")
        taken = [i for i, c in enumerate(conditioners) if c.id == BEAT_GRID_ID]
        if dit.beat_grid and taken:
            raise self.fail(
                f"model.conditioning.configs[{taken[0]}].id",
                f"is '{BEAT_GRID_ID}', the name the beat grid travels under; rename the conditioner",
            )
        return {
            "context_cond_ids": self.cond_ids(diffusion, where, "cross_attention_cond_ids", conditioners, []),
            "global_cond_ids": self.cond_ids(diffusion, where, "global_cond_ids", conditioners, []),
            "objective": objective,
            "dit": dit,
        }

    def conditioner(self, index: int, raw: Any) -> ConditionerConfig:
        where = f"model.conditioning.configs[{index}]"
        if not isinstance(raw, dict):
            raise self.fail(where, "should be an object")
        kind = self.get(raw, "type", str)
        if kind not in (*PROMPT_ENCODERS, "number", *PROMPT_FACTS):
            raise self.fail(f"{where}.type", f"is '{kind}'; supported: t5, minilm, number, note, bpm")
        return ConditionerConfig(id=self.get(raw, "id", str), type=kind, options=dict(raw.get("config", {})))

    def autoencoder(self, pretransform: dict) -> AutoencoderConfig:
        if self.get(pretransform, "type", str) != "autoencoder":
            raise self.fail("model.pretransform.type", "must be 'autoencoder'")
        cfg = self.get(pretransform, "config", dict)
        bottleneck = self.get(cfg, "bottleneck.type", str)
        if bottleneck != "vae":
            raise self.fail("model.pretransform.config.bottleneck.type", f"is '{bottleneck}'; only 'vae'")
        downsampling_ratio = self.get(cfg, "downsampling_ratio", int)
        sides = {
            side: self.autoencoder_side(cfg, side, io_key, downsampling_ratio)
            for side, io_key in (("encoder", "in_channels"), ("decoder", "out_channels"))
        }
        latent_dim = self.get(cfg, "latent_dim", int)
        if sides["encoder"].latent_dim != 2 * latent_dim or sides["decoder"].latent_dim != latent_dim:
            raise self.fail("model.pretransform.config.latent_dim", "VAE encoder must output 2x latent_dim")
        return AutoencoderConfig(
            encoder=sides["encoder"],
            decoder=sides["decoder"],
            latent_dim=latent_dim,
            downsampling_ratio=downsampling_ratio,
            scale=self.get(pretransform, "scale", float, 1.0),
        )

    def autoencoder_side(
        self, cfg: dict, side: str, io_key: str, downsampling_ratio: int
    ) -> OobleckConfig | StftConfig:
        where = f"model.pretransform.config.{side}"
        kind = self.get(cfg, f"{side}.type", str)
        if kind not in AUTOENCODER_SIDES:
            raise self.fail(f"{where}.type", f"is '{kind}'; supported: {', '.join(AUTOENCODER_SIDES)}")
        c = self.get(cfg, f"{side}.config", dict)
        if kind == "stft":
            return self.stft_side(c, f"{where}.config", io_key, downsampling_ratio)
        return self.oobleck_side(c, f"{where}.config", side, io_key, downsampling_ratio)

    def oobleck_side(
        self, c: dict, where: str, side: str, io_key: str, downsampling_ratio: int
    ) -> OobleckConfig:
        if c.get("use_snake", False) is not True or c.get("final_tanh", False):
            raise self.fail(where, "needs use_snake on, no final_tanh")
        nearest_upsample = self.get(c, "use_nearest_upsample", bool, False)
        if nearest_upsample and side == "encoder":
            raise self.fail(f"{where}.use_nearest_upsample", "is a decoder option")
        c_mults = tuple(self.get(c, "c_mults", list))
        strides = tuple(self.get(c, "strides", list))
        if len(c_mults) != len(strides):
            raise self.fail(where, "c_mults and strides differ in length")
        # The engine sizes latents by downsampling_ratio; the strides are what the VAE really does.
        if math.prod(strides) != downsampling_ratio:
            raise self.fail(
                "model.pretransform.config.downsampling_ratio",
                f"is {downsampling_ratio} but the {side} strides {list(strides)} multiply to "
                f"{math.prod(strides)}; they must agree",
            )
        return OobleckConfig(
            audio_channels=self.get(c, io_key, int),
            channels=self.get(c, "channels", int),
            c_mults=c_mults,
            strides=strides,
            latent_dim=self.get(c, "latent_dim", int),
            nearest_upsample=nearest_upsample,
        )

    def stft_side(self, c: dict, where: str, io_key: str, downsampling_ratio: int) -> StftConfig:
        hop = self.positive(c, where, "hop_length", int)
        if hop != downsampling_ratio:
            raise self.fail(
                f"{where}.hop_length",
                f"is {hop} but downsampling_ratio is {downsampling_ratio}; one latent frame is one "
                "STFT hop, so they must agree",
            )
        n_fft = self.positive(c, where, "n_fft", int)
        if n_fft < 2 * hop or n_fft % hop or (n_fft - hop) % 2:
            raise self.fail(
                f"{where}.n_fft",
                f"is {n_fft}; it must be a whole multiple of hop_length ({hop}), at least twice it so "
                "frames overlap, and differ from it by an even number (4 × hop_length is usual)",
            )
        kernel_size = self.positive(c, where, "kernel_size", int, 7)
        if kernel_size % 2 == 0:
            raise self.fail(f"{where}.kernel_size", f"is {kernel_size}; it must be odd")
        for option in ("sureness_power", "head_bands", "head_band_width", "partial_bands", "partial_width"):
            if io_key == "in_channels" and option in c:
                raise self.fail(f"{where}.{option}", "is a decoder option")

        def bands(name: str, head: str, example: int) -> int:
            count = self.get(c, name, int, 0)
            if count < 0 or (count and (n_fft // 2) % count):
                raise self.fail(
                    f"{where}.{name}",
                    f"is {count}; it must be 0 (no {head}) or split the {n_fft // 2} bins above 0 Hz "
                    f"into equal bands (e.g. {example})",
                )
            return count

        head_bands = bands("head_bands", "band head", 16)
        partial_bands = bands("partial_bands", "partial head", 64)
        return StftConfig(
            audio_channels=self.positive(c, where, io_key, int),
            n_fft=n_fft,
            hop_length=hop,
            width=self.positive(c, where, "width", int),
            depth=self.positive(c, where, "depth", int),
            latent_dim=self.positive(c, where, "latent_dim", int),
            kernel_size=kernel_size,
            sureness_power=self.positive(c, where, "sureness_power", float, 2.0),
            head_bands=head_bands,
            head_band_width=self.positive(c, where, "head_band_width", int, 128),
            partial_bands=partial_bands,
            partial_width=self.positive(c, where, "partial_width", int, 512),
        )

    def dit(self, cfg: dict) -> DiTConfig:
        where = "model.diffusion.config"
        if cfg.get("transformer_type", "continuous_transformer") != "continuous_transformer":
            raise self.fail(f"{where}.transformer_type", "must be 'continuous_transformer'")
        if cfg.get("global_cond_type", "prepend") != "prepend":
            raise self.fail(f"{where}.global_cond_type", "must be 'prepend'")
        patch_size = self.get(cfg, "patch_size", int, 1)
        if patch_size < 1:
            raise self.fail(f"{where}.patch_size", f"is {patch_size}; it must be 1 or more")
        qk_norm = cfg.get("attn_kwargs", {}).get("qk_norm", "none")
        if qk_norm not in ("ln", "none", None):
            raise self.fail(f"{where}.attn_kwargs.qk_norm", f"is '{qk_norm}'; supported: 'ln' or none")
        embed_dim, num_heads = self.attention_heads(cfg, where)
        return DiTConfig(
            io_channels=self.get(cfg, "io_channels", int),
            embed_dim=embed_dim,
            depth=self.get(cfg, "depth", int),
            num_heads=num_heads,
            cond_token_dim=self.get(cfg, "cond_token_dim", int, 0),
            global_cond_dim=self.get(cfg, "global_cond_dim", int, 0),
            qk_norm=qk_norm == "ln",
            patch_size=patch_size,
            beat_grid=self.get(cfg, "beat_grid", bool, False),
        )

    def attention_heads(self, cfg: dict, where: str) -> tuple[int, int]:
        """embed_dim and num_heads of a transformer that uses our rotary attention."""
        embed_dim = self.get(cfg, "embed_dim", int)
        num_heads = self.get(cfg, "num_heads", int)
        if embed_dim % num_heads:
            raise self.fail(f"{where}.num_heads", "must divide embed_dim")
        if embed_dim // num_heads < 32:
            # Rotary embeddings cover max(head_dim / 2, 32) features of each head.
            raise self.fail(
                f"{where}.num_heads", "leaves heads narrower than 32 features (embed_dim / num_heads)"
            )
        return embed_dim, num_heads

    def mar(self, cfg: dict, conditioners: tuple[ConditionerConfig, ...], latent_dim: int) -> dict[str, Any]:
        where = "model.mar"
        # By default the prompt is the guided context and every number (seconds) a kept global token.
        context_ids = self.cond_ids(
            cfg, where, "context_cond_ids", conditioners, [c.id for c in conditioners if c.type != "number"]
        )
        global_ids = self.cond_ids(
            cfg, where, "global_cond_ids", conditioners, [c.id for c in conditioners if c.type == "number"]
        )
        if any(c.type != "number" for c in conditioners if c.id in global_ids):
            raise self.fail(f"{where}.global_cond_ids", "may only name number conditioners (one token each)")
        embed_dim, num_heads = self.attention_heads(cfg, where)
        io_channels = self.get(cfg, "io_channels", int)
        if io_channels != latent_dim:
            raise self.fail(f"{where}.io_channels", "must equal the autoencoder latent_dim")
        mask_ratio_min = self.get(cfg, "mask_ratio_min", float, 0.7)
        if not 0 < mask_ratio_min <= 1:
            raise self.fail(f"{where}.mask_ratio_min", f"must be in (0, 1], got {mask_ratio_min}")
        mar = MarConfig(
            io_channels=io_channels,
            embed_dim=embed_dim,
            depth=self.positive(cfg, where, "depth", int),
            num_heads=num_heads,
            mask_ratio_min=mask_ratio_min,
            head=self.mar_head(self.get(cfg, "head", dict)),
        )
        return {
            "context_cond_ids": context_ids,
            "global_cond_ids": global_ids,
            "objective": None,
            "dit": None,
            "mar": mar,
        }

    def mar_head(self, cfg: dict) -> MarHeadConfig:
        where = "model.mar.head"
        kind = self.get(cfg, "type", str)
        if kind not in MAR_HEADS:
            raise self.fail(f"{where}.type", f"is '{kind}'; supported: {', '.join(MAR_HEADS)}")
        return MarHeadConfig(
            type=kind,
            width=self.positive(cfg, where, "width", int),
            depth=self.positive(cfg, where, "depth", int),
            steps=self.positive(cfg, where, "steps", int, 25),
            temperature=self.positive(cfg, where, "temperature", float, 1.0),
        )

    def positive(self, cfg: dict, where: str, field: str, kind: type, default: Any = ...) -> Any:
        value = self.get(cfg, field, kind, default)
        if value <= 0:
            raise self.fail(f"{where}.{field}", f"must be more than 0, got {value}")
        return value
