"""Finding models: embedded under `models/`, the user's models folder, the Hugging Face cache.

`--model` takes a folder or a name. A name is looked up in that order; stable-audio-open-small is
downloaded with huggingface_hub when it is nowhere on disk and the hub can be reached.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from studio import shipped_dir
from studio.errors import ModelNotFoundError
from studio.models.config import MODEL_TYPES

CONFIG_FILE = "model_config.json"
WEIGHT_FILES = ("model.safetensors", "model.ckpt")  # the first found is loaded

DEFAULT_MODEL = "studio-mini"
HUB_MODELS = {"stable-audio-open-small": "stabilityai/stable-audio-open-small"}
RUN_EXPORT_DIR = "model"  # the model folder a training run writes inside its run folder


def model_label(name: str) -> str:
    """A short name for a model's reports: its name, or a model folder's own name (a training
    run's export, RUN/model, and a recipe's model folder go by the folder they are in)."""
    path = Path(name)
    return path.parent.name if path.name == RUN_EXPORT_DIR and path.parent.name else path.name


@dataclass(frozen=True)
class ModelEntry:
    name: str
    path: Path
    source: str  # "embedded" | "user" | "hf-cache" | "folder"


def embedded_models_dir() -> Path:
    """The models that come with Studio ($STUDIO_EMBEDDED_MODELS overrides)."""
    return Path(os.environ.get("STUDIO_EMBEDDED_MODELS", shipped_dir("models")))


def user_models_dir() -> Path:
    if "STUDIO_MODELS_DIR" in os.environ:
        return Path(os.environ["STUDIO_MODELS_DIR"])
    from platformdirs import user_data_path

    return user_data_path("studio") / "models"


def is_model_folder(folder: Path) -> bool:
    return (folder / CONFIG_FILE).is_file() and any((folder / w).is_file() for w in WEIGHT_FILES)


def _folders_in(root: Path, source: str) -> list[ModelEntry]:
    if not root.is_dir():
        return []
    return [
        ModelEntry(p.name, p, source) for p in sorted(root.iterdir()) if p.is_dir() and is_model_folder(p)
    ]


def _hub_cache_entries() -> list[ModelEntry]:
    """Snapshots in the Hugging Face cache that hold a model Studio runs (diffusion_cond or mar_cond)."""
    try:
        from huggingface_hub import constants, scan_cache_dir

        # Named here: scan_cache_dir's own default is fixed when huggingface_hub is imported, the
        # downloads' is read at call time, and both must look in the same place.
        cache = scan_cache_dir(constants.HF_HUB_CACHE)
    except Exception:  # no cache folder yet, or one we cannot read: nothing to list
        return []
    entries = []
    aliases = {repo: name for name, repo in HUB_MODELS.items()}
    for repo in cache.repos:
        if repo.repo_type != "model":
            continue
        for revision in sorted(repo.revisions, key=lambda r: r.last_modified, reverse=True):
            folder = Path(revision.snapshot_path)
            if is_model_folder(folder) and _is_studio_model(folder / CONFIG_FILE):
                entries.append(ModelEntry(aliases.get(repo.repo_id, repo.repo_id), folder, "hf-cache"))
                break
    return entries


def _is_studio_model(config: Path) -> bool:
    try:
        return json.loads(config.read_text()).get("model_type") in MODEL_TYPES
    except (OSError, ValueError, AttributeError):
        return False


def list_models() -> list[ModelEntry]:
    return (
        _folders_in(embedded_models_dir(), "embedded")
        + _folders_in(user_models_dir(), "user")
        + _hub_cache_entries()
    )


def resolve_model(name_or_path: str | None, download: bool = True) -> ModelEntry:
    """The model a name or path means, downloading stable-audio-open-small if need be.

    A folder given by path is named by its absolute path, so take parameters can find it again.
    """
    name = name_or_path or DEFAULT_MODEL
    candidate = Path(name).expanduser()
    if candidate.is_dir() or os.sep in name or name.startswith("."):
        if not candidate.is_dir():
            raise ModelNotFoundError(f"model folder {candidate} does not exist")
        if not (candidate / CONFIG_FILE).is_file():
            raise ModelNotFoundError(
                f"{candidate} is not a model folder: it has no {CONFIG_FILE}",
                f"a model folder holds {CONFIG_FILE} and {' or '.join(WEIGHT_FILES)}",
            )
        return ModelEntry(str(candidate.resolve()), candidate, "folder")
    for entry in list_models():
        if name in (entry.name, entry.path.name):
            return entry
    if name in HUB_MODELS:
        return ModelEntry(name, _from_hub(name, download), "hf-cache")
    known = sorted({e.name for e in list_models()})
    raise ModelNotFoundError(
        f"no model named '{name}'" + (f" (found: {', '.join(known)})" if known else " (no models found)"),
        f"pass a folder with {CONFIG_FILE} + weights, put one under {user_models_dir()}, "
        f"or use {', '.join(HUB_MODELS)} (see `studio models`)",
    )


def _manual_install_hint(name: str) -> str:
    repo = HUB_MODELS[name]
    target = user_models_dir() / name
    return (
        f"accept the licence at https://huggingface.co/{repo}, run `hf auth login`, and run again online; "
        f"or copy {CONFIG_FILE} and model.safetensors from that page into {target}/ "
        f"(or any folder, then pass --model FOLDER)"
    )


def _from_hub(name: str, download: bool) -> Path:
    """The model's snapshot folder in the Hugging Face cache, downloading what is not there yet.

    The weights are model.safetensors, or model.ckpt where a repository holds only that.
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    repo = HUB_MODELS[name]
    if not download:
        raise ModelNotFoundError(f"{name} is not on this machine", _manual_install_hint(name))
    try:
        config = Path(hf_hub_download(repo, CONFIG_FILE))
        for weights in WEIGHT_FILES:
            try:
                hf_hub_download(repo, weights)
                return config.parent
            except EntryNotFoundError:  # not in the repository, or (offline) not in the cache
                continue
    except GatedRepoError as exc:
        raise ModelNotFoundError(
            f"{name} is gated on the Hugging Face hub and this account has not been granted access",
            _manual_install_hint(name),
        ) from exc
    except RepositoryNotFoundError as exc:
        raise ModelNotFoundError(
            f"{repo} could not be opened on the hub ({exc})".splitlines()[0], _manual_install_hint(name)
        ) from exc
    except (LocalEntryNotFoundError, OSError) as exc:
        raise ModelNotFoundError(
            f"{name} is not on this machine and the Hugging Face hub cannot be reached (offline)",
            _manual_install_hint(name),
        ) from exc
    except Exception as exc:  # the hub client's HTTP errors differ between versions
        raise ModelNotFoundError(
            f"downloading {name} failed: {exc}".splitlines()[0], _manual_install_hint(name)
        ) from exc
    raise ModelNotFoundError(
        f"{repo} has {CONFIG_FILE} but no weights ({' or '.join(WEIGHT_FILES)}) in the cache or on the hub",
        _manual_install_hint(name),
    )
