"""What `studio eval` scores: the held-out clips of each category, embedded once (`Reference`), and
takes generated for the category prompts at a sampler setting (`Generator`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from studio.data.manifest import Clip
from studio.engine import Engine
from studio.eval.embeddings import AisfxEmbedder
from studio.request import Request


@dataclass(frozen=True)
class SamplerSetting:
    sampler: str
    steps: int

    @property
    def label(self) -> str:
        return f"{self.sampler}-{self.steps}"


# Each model is swept over the settings of the samplers it runs: ping-pong and Euler for diffusion
# models, decoding iterations for MAR models.
SWEEP = (
    SamplerSetting("pingpong", 1),
    SamplerSetting("pingpong", 2),
    SamplerSetting("pingpong", 4),
    SamplerSetting("pingpong", 8),
    SamplerSetting("euler", 8),
    SamplerSetting("euler", 50),
    SamplerSetting("mar", 1),
    SamplerSetting("mar", 4),
    SamplerSetting("mar", 8),
    SamplerSetting("mar", 16),
)
# Every sampler, the fewest and the default steps: enough to run every code path.
QUICK_SWEEP = (
    SamplerSetting("pingpong", 1),
    SamplerSetting("pingpong", 8),
    SamplerSetting("euler", 8),
    SamplerSetting("mar", 1),
    SamplerSetting("mar", 8),
)


def default_setting(engine: Engine) -> SamplerSetting:
    """The model's own sampler at its own steps (its config's defaults, else the sampler's)."""
    return SamplerSetting(engine.default_sampler, engine.default_steps(engine.default_sampler))


@dataclass
class Reference:
    """The held-out clips of the evaluated categories, embedded once."""

    clips: list[Clip]  # category order then manifest order
    aisfx: np.ndarray  # [clips, 512]
    labels: list[str]

    @classmethod
    def build(cls, clips: dict[str, list[Clip]], embedder: AisfxEmbedder) -> Reference:
        ordered = [clip for group in clips.values() for clip in group]
        return cls(ordered, embedder.embed_files([c.file for c in ordered]), [c.category for c in ordered])

    def of(self, category: str) -> np.ndarray:
        return self.aisfx[np.array(self.labels) == category]


@dataclass
class Takes:
    audio: list[np.ndarray]  # [channels, frames] per take
    rate: int
    elapsed_s: float  # the batch that made them
    seconds: float


class Generator:
    """Takes for every category prompt, one batch per prompt, with fixed per-prompt seeds so every
    sampler setting and diversity starts from the same noise."""

    def __init__(
        self,
        engine: Engine,
        prompts: dict[str, str],
        seconds: dict[str, float],
        takes: int,
        seed: int,
        cfg: float,
    ):
        self.engine, self.prompts, self.seconds, self.takes = engine, prompts, seconds, takes
        self.seed, self.cfg = seed, cfg

    def run(self, setting: SamplerSetting, diversity: float) -> dict[str, Takes]:
        out = {}
        for index, (category, prompt) in enumerate(self.prompts.items()):
            result = self.engine.generate(
                Request(
                    prompt,
                    seconds=self.seconds[category],
                    steps=setting.steps,
                    cfg=self.cfg,
                    sampler=setting.sampler,
                    seed=self.seed + 1000 * index,
                    variations=self.takes,
                    diversity=diversity,
                )
            )
            out[category] = Takes(
                [t.audio for t in result.takes],
                result.takes[0].sample_rate,
                result.elapsed_s,
                self.seconds[category],
            )
        return out


def flatten(takes: dict[str, Takes]) -> tuple[list[tuple[np.ndarray, int]], list[str]]:
    clips = [(audio, t.rate) for t in takes.values() for audio in t.audio]
    labels = [category for category, t in takes.items() for _ in t.audio]
    return clips, labels
