"""stable-audio-open-small from the Hugging Face cache, offline: what `--model stable-audio-open-small`
finds on a machine that downloaded it before (a fake cache in the hub's own layout)."""

from __future__ import annotations

import shutil
from pathlib import Path

import huggingface_hub.constants as hub
import pytest
import torch
from safetensors.torch import load_file

from studio.errors import ModelNotFoundError
from studio.models import load_model
from studio.models.registry import HUB_MODELS, _from_hub, resolve_model

REVISION = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """An empty hub cache, offline (huggingface_hub reads both at call time)."""
    root = tmp_path / "hub"
    root.mkdir()
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(root))
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)
    return root


def cached_repo(cache: Path, model_dir: Path, weights: str | None) -> Path:
    """The tiny model as the hub would have cached stabilityai/stable-audio-open-small, its weights
    as model.safetensors, as a model.ckpt Lightning-style state dict, or missing (None)."""
    repo = cache / ("models--" + HUB_MODELS["stable-audio-open-small"].replace("/", "--"))
    snapshot = repo / "snapshots" / REVISION
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(REVISION)
    shutil.copy(model_dir / "model_config.json", snapshot)
    if weights == "model.safetensors":
        shutil.copy(model_dir / "model.safetensors", snapshot)
    elif weights == "model.ckpt":
        torch.save({"state_dict": load_file(str(model_dir / "model.safetensors"))}, snapshot / "model.ckpt")
    return snapshot


@pytest.mark.parametrize("weights", ["model.safetensors", "model.ckpt"])
def test_cached_repository_loads_offline(cache, tiny_model_dir, weights):
    snapshot = cached_repo(cache, tiny_model_dir, weights)
    assert _from_hub("stable-audio-open-small", download=True) == snapshot
    entry = resolve_model("stable-audio-open-small")
    assert (entry.path, entry.source) == (snapshot, "hf-cache")
    loaded, reference = load_model(entry.path), load_model(tiny_model_dir)
    for (name, ours), theirs in zip(
        loaded.state_dict().items(), reference.state_dict().values(), strict=True
    ):
        assert torch.equal(ours, theirs), name


def test_repository_without_weights_says_so(cache, tiny_model_dir):
    cached_repo(cache, tiny_model_dir, None)
    with pytest.raises(ModelNotFoundError) as error:
        _from_hub("stable-audio-open-small", download=True)
    assert "no weights (model.safetensors or model.ckpt)" in str(error.value)
    assert "huggingface.co/stabilityai/stable-audio-open-small" in error.value.hint


def test_nothing_cached_offline_says_how_to_get_it(cache):
    with pytest.raises(ModelNotFoundError) as error:
        resolve_model("stable-audio-open-small")
    assert "hub cannot be reached (offline)" in str(error.value)
    assert "hf auth login" in error.value.hint
