"""A small audio–text contrastive model (CLAP-style), trained on the corpus, for prompt adherence
and CCDS diversity.

Audio: 16 kHz mono, the first `clip_seconds` (corpus clips start at their onset: the builder trims
leading silence), log-mel -> a small 1-D conv net over time with the mel bands as channels (a 2-D
net of similar width costs 30 times more on a CPU) -> mean and max over time -> MLP. Text: the frozen
all-MiniLM-L6-v2 that Studio's prompt encoder also uses, mean-pooled over tokens (as
sentence-transformers pools it) -> a trained MLP. Both land on the unit sphere of `embed_dim`; the
loss is symmetric InfoNCE with a learned temperature. Corpus captions are rendered from templates,
so a batch often holds the same caption twice: those pairs count as positives, not negatives.

Files: `clap.safetensors` (weights and the log-mel normalisation) and `clap.json` (config,
training record, held-out retrieval).
"""

from __future__ import annotations

import itertools
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from studio.audio import read_audio, resample
from studio.data.manifest import Clip, read_manifest
from studio.engine import pick_device
from studio.errors import StudioError
from studio.eval.corpus import CATEGORY_PROMPTS, HELD_OUT
from studio.eval.metrics import cosine_similarity, recall_at_k
from studio.models.conditioners import MINILM_WIDTH, _load_minilm

WEIGHTS_FILE = "clap.safetensors"
CONFIG_FILE = "clap.json"


class ClapModelError(StudioError):
    """The contrastive model is missing or does not load."""


@dataclass(frozen=True)
class ClapConfig:
    sample_rate: int = 16000
    n_fft: int = 1024
    hop: int = 512
    n_mels: int = 64
    f_min: float = 20.0
    f_max: float = 8000.0
    clip_seconds: float = 4.0
    channels: tuple[int, ...] = (96, 128, 128, 128)
    kernel: int = 5
    embed_dim: int = 256
    text_max_length: int = 32

    @property
    def clip_samples(self) -> int:
        return round(self.clip_seconds * self.sample_rate)

    @classmethod
    def from_dict(cls, raw: dict) -> ClapConfig:
        return cls(**{**raw, "channels": tuple(raw["channels"])})


@dataclass(frozen=True)
class ClapTrainConfig:
    corpus: Path
    out: Path
    steps: int = 1500
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.01
    warmup_steps: int = 100
    seed: int = 0
    log_every: int = 100
    device: str | None = None
    model: ClapConfig = field(default_factory=ClapConfig)


@dataclass
class ClapTrainResult:
    folder: Path
    steps: int
    losses: list[float]  # one per step
    held_out: dict[str, float]
    seconds: float

    def __str__(self) -> str:
        h = self.held_out
        return (
            f"CLAP saved to {self.folder} after {self.steps} steps in {self.seconds:.0f} s; "
            f"loss {self.losses[0]:.3f} -> {self.losses[-1]:.3f}; held-out: "
            f"text->audio R@1 {h['text_to_audio_r1']:.2f} (chance {h['chance_r1']:.3f}), "
            f"zero-shot category accuracy {h['zero_shot_category_accuracy']:.2f} "
            f"(chance {h['chance_category']:.3f})"
        )


def _conv_block(c_in: int, c_out: int, kernel: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv1d(c_in, c_out, kernel, padding=kernel // 2, bias=False),
        nn.GroupNorm(math.gcd(8, c_out), c_out),  # per clip, so train and eval behave alike
        nn.GELU(),
        nn.MaxPool1d(2),
    )


class ClapModel(nn.Module):
    def __init__(self, config: ClapConfig):
        super().__init__()
        self.config = config
        c = config
        channels = (c.n_mels, *c.channels)
        self.audio_encoder = nn.Sequential(
            *(_conv_block(a, b, c.kernel) for a, b in itertools.pairwise(channels))
        )
        width = 2 * c.channels[-1]
        self.audio_head = nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Linear(width, c.embed_dim))
        self.text_head = nn.Sequential(nn.Linear(MINILM_WIDTH, 512), nn.GELU(), nn.Linear(512, c.embed_dim))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        # Log-mel normalisation, measured on the training clips and saved with the weights.
        self.register_buffer("mel_mean", torch.zeros(()))
        self.register_buffer("mel_std", torch.ones(()))
        import librosa  # here, so the `studio train` commands run where librosa is not installed

        mel = librosa.filters.mel(
            sr=c.sample_rate, n_fft=c.n_fft, n_mels=c.n_mels, fmin=c.f_min, fmax=c.f_max
        )
        self.register_buffer("mel_basis", torch.from_numpy(mel), persistent=False)
        self.register_buffer("window", torch.hann_window(c.n_fft), persistent=False)
        self._text_backbone: tuple | None = None  # (tokenizer, MiniLM): frozen, not in the state dict

    @property
    def device(self) -> torch.device:
        return self.logit_scale.device

    # -- audio --------------------------------------------------------------------------------

    def waveform(self, audio: np.ndarray, rate: int) -> np.ndarray:
        """[channels, frames] or [frames] at any rate -> mono at the model's rate, first clip_seconds."""
        audio = np.asarray(audio, dtype=np.float32)
        mono = audio.mean(axis=0) if audio.ndim == 2 else audio
        mono = mono[: math.ceil(self.config.clip_seconds * rate) + 1]
        mono = resample(mono[None], int(rate), self.config.sample_rate)[0]
        out = np.zeros(self.config.clip_samples, dtype=np.float32)
        out[: min(mono.size, out.size)] = mono[: out.size]
        return out

    def log_mel(self, waveforms: torch.Tensor) -> torch.Tensor:
        """[B, samples] -> un-normalised log-mel [B, n_mels, frames]."""
        spec = torch.stft(
            waveforms, self.config.n_fft, self.config.hop, window=self.window, return_complex=True
        )
        return torch.log(self.mel_basis @ spec.abs().pow(2) + 1e-6)

    def encode_mels(self, mels: torch.Tensor) -> torch.Tensor:
        """Un-normalised log-mels [B, n_mels, frames] -> unit audio embeddings [B, embed_dim]."""
        x = self.audio_encoder((mels - self.mel_mean) / self.mel_std)  # [B, C, frames']
        pooled = torch.cat((x.mean(dim=2), x.amax(dim=2)), dim=1)
        return F.normalize(self.audio_head(pooled), dim=-1)

    @torch.inference_mode()
    def embed_audio(self, clips: Sequence[tuple[np.ndarray, int]], batch_size: int = 64) -> np.ndarray:
        """(audio, rate) per clip -> float32 [clips, embed_dim], unit norm."""
        out = []
        for i in range(0, len(clips), batch_size):
            waves = np.stack([self.waveform(a, r) for a, r in clips[i : i + batch_size]])
            out.append(self.encode_mels(self.log_mel(torch.from_numpy(waves).to(self.device))).cpu())
        return torch.cat(out).numpy() if out else np.zeros((0, self.config.embed_dim), np.float32)

    # -- text ---------------------------------------------------------------------------------

    @torch.inference_mode()
    def text_features(self, texts: Sequence[str], batch_size: int = 128) -> torch.Tensor:
        """Frozen MiniLM sentence features [n, 384]: token states mean-pooled over the real tokens."""
        if self._text_backbone is None:
            tokenizer, backbone = _load_minilm()
            self._text_backbone = (tokenizer, backbone.eval().requires_grad_(False))
        tokenizer, backbone = self._text_backbone
        backbone.to(self.device)
        out = []
        for i in range(0, len(texts), batch_size):
            # Padded to the longest in the batch, not to max_length: captions are short.
            tokens = tokenizer(
                list(texts[i : i + batch_size]),
                truncation=True,
                max_length=self.config.text_max_length,
                padding=True,
                return_tensors="pt",
            ).to(self.device)
            states = backbone(**tokens).last_hidden_state.float()
            mask = tokens["attention_mask"][..., None].float()
            out.append((states * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1))
        return torch.cat(out) if out else torch.zeros(0, MINILM_WIDTH, device=self.device)

    def encode_text_features(self, features: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.text_head(features), dim=-1)

    @torch.inference_mode()
    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        """Texts -> float32 [n, embed_dim], unit norm."""
        return self.encode_text_features(self.text_features(texts)).cpu().numpy()

    # -- files --------------------------------------------------------------------------------

    def save(self, folder: Path, record: dict) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(folder / WEIGHTS_FILE))
        (folder / CONFIG_FILE).write_text(json.dumps({"config": asdict(self.config), **record}, indent=2))
        return folder

    @classmethod
    def load(cls, folder: str | Path, device: str | torch.device = "cpu") -> ClapModel:
        folder = Path(folder)
        if not (folder / CONFIG_FILE).is_file() or not (folder / WEIGHTS_FILE).is_file():
            raise ClapModelError(
                f"no CLAP model in {folder} (needs {CONFIG_FILE} and {WEIGHTS_FILE})",
                f"train one on the corpus: studio train clap --corpus CORPUS --out {folder}",
            )
        try:
            record = json.loads((folder / CONFIG_FILE).read_text())
            model = cls(ClapConfig.from_dict(record["config"]))
            model.load_state_dict(load_file(str(folder / WEIGHTS_FILE)), strict=True)
        except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
            raise ClapModelError(
                f"{folder}: cannot load the CLAP model ({exc})".splitlines()[0],
                f"train it again: studio train clap --corpus CORPUS --out {folder}",
            ) from exc
        return model.eval().to(device)


def info_nce(
    audio: torch.Tensor, text: torch.Tensor, logit_scale: torch.Tensor, groups: torch.Tensor
) -> torch.Tensor:
    """Symmetric InfoNCE; rows with the same group (the same caption) are all positives."""
    logits = logit_scale.exp() * audio @ text.T
    same = (groups[:, None] == groups[None, :]).float()
    targets = same / same.sum(dim=1, keepdim=True)  # `same` is symmetric, so this serves both ways
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


def retrieval_report(model: ClapModel, clips: list[Clip]) -> dict[str, float]:
    """How well the model matches held-out clips to their captions and their categories.

    Instance retrieval: each clip's primary caption as the query among all clips (clips sharing
    that caption all count as right), both ways, recall at 1 and 5. Category retrieval: each clip
    against the category prompts of every category present (zero-shot classification).
    """
    audio = model.embed_audio(
        [read_audio(c.file, max_seconds=model.config.clip_seconds + 0.1) for c in clips]
    )
    text = model.embed_text([c.caption for c in clips])
    captions = np.array([c.caption for c in clips])
    relevant = captions[:, None] == captions[None, :]
    similarity = cosine_similarity(text, audio)
    n = len(clips)
    report = {
        "clips": float(n),
        "text_to_audio_r1": recall_at_k(similarity, relevant, 1),
        "text_to_audio_r5": recall_at_k(similarity, relevant, 5),
        "audio_to_text_r1": recall_at_k(similarity.T, relevant.T, 1),
        "audio_to_text_r5": recall_at_k(similarity.T, relevant.T, 5),
        "chance_r1": 1 / n,
        "chance_r5": min(5, n) / n,
    }
    labelled = [i for i, c in enumerate(clips) if c.category is not None]
    names = sorted({clips[i].category for i in labelled})
    prompts = model.embed_text([CATEGORY_PROMPTS.get(c, c) for c in names])
    truth = np.array([[clips[i].category == name for name in names] for i in labelled])
    report["zero_shot_category_accuracy"] = recall_at_k(cosine_similarity(audio[labelled], prompts), truth, 1)
    report["categories"] = float(len(names))
    report["chance_category"] = 1 / max(len(names), 1)
    return report


def _load_mels(model: ClapModel, clips: list[Clip], batch_size: int = 64) -> torch.Tensor:
    """Log-mels of the clips [N, n_mels, frames], half precision to keep a large corpus in memory."""
    out = []
    seconds = model.config.clip_seconds + 0.1
    with torch.inference_mode():
        for i in range(0, len(clips), batch_size):
            waves = np.stack(
                [model.waveform(*read_audio(c.file, max_seconds=seconds)) for c in clips[i : i + batch_size]]
            )
            out.append(model.log_mel(torch.from_numpy(waves)).half())
    return torch.cat(out)


def train_clap(
    config: ClapTrainConfig, progress: Callable[[int, float], None] | None = None
) -> ClapTrainResult:
    """Train on the corpus's "train" split, report retrieval on its held-out "test" split, save."""
    start = time.perf_counter()
    train = read_manifest(config.corpus, "train")
    held_out = read_manifest(config.corpus, HELD_OUT)
    if len(train) < 2 or len(held_out) < 2:
        raise ClapModelError(
            f"{config.corpus}: {len(train)} train and {len(held_out)} held-out clips; CLAP needs 2 of each",
            "build a larger corpus with `studio data build`",
        )
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    model = ClapModel(config.model)
    mels = _load_mels(model, train).clone()
    model.mel_mean.fill_(mels.float().mean())
    model.mel_std.fill_(mels.float().std().clamp_min(1e-3))
    captions = sorted({text for clip in train for text in clip.captions})
    caption_index = {text: i for i, text in enumerate(captions)}
    choices = [np.array([caption_index[t] for t in clip.captions]) for clip in train]
    # Clones: tensors made under inference mode cannot take part in autograd.
    text_features = model.text_features(captions).clone()

    device = pick_device(config.device)
    model.to(device)
    mels, text_features = mels.to(device), text_features.to(device)
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, _warmup_cosine(config.warmup_steps, config.steps))
    batch = min(config.batch_size, len(train))
    order: list[int] = []
    losses = []
    model.train()
    for step in range(1, config.steps + 1):
        if len(order) < batch:
            order += rng.permutation(len(train)).tolist()
        rows, order = order[:batch], order[batch:]
        picked = torch.tensor([int(rng.choice(choices[r])) for r in rows], device=device)
        audio = model.encode_mels(mels[rows].float())
        text = model.encode_text_features(text_features[picked])
        loss = info_nce(audio, text, model.logit_scale, picked)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))  # CLIP's cap: keeps the softmax from saturating
        losses.append(loss.item())
        if progress is not None and (step % config.log_every == 0 or step == config.steps):
            progress(step, float(np.mean(losses[-config.log_every :])))
    model.eval()
    report = retrieval_report(model, held_out)
    seconds = time.perf_counter() - start
    record = {
        "training": {
            **{k: v for k, v in asdict(config).items() if k not in ("model", "corpus", "out")},
            "corpus": str(config.corpus),
            "train_clips": len(train),
            "captions": len(captions),
            # Mean loss over each window of log_every steps.
            "loss_curve": [
                float(np.mean(losses[i : i + config.log_every]))
                for i in range(0, len(losses), config.log_every)
            ],
            "seconds": seconds,
        },
        "held_out": report,
    }
    model.cpu().save(config.out, record)
    return ClapTrainResult(config.out, config.steps, losses, report, seconds)


def _warmup_cosine(warmup: int, total: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return factor
