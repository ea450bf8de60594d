from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# Tests never reach a model hub; code that would go online must say so instead.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tiny import make_model_folder  # noqa: E402


def shared_fixture(variable: str, name: str) -> Path:
    """A recorded parity folder: $variable, else ../shared/fixtures/NAME."""
    folder = Path(os.environ.get(variable, REPO.parent / "shared" / "fixtures" / name))
    if not (folder / "cases.safetensors").is_file():
        pytest.fail(f"parity fixtures not found in {folder}; set {variable}")
    return folder


@pytest.fixture(scope="session")
def fixture_dir() -> Path:
    return shared_fixture("STUDIO_SAO_FIXTURES", "sao-parity")


@pytest.fixture(scope="session")
def t5_fixture_dir() -> Path:
    return shared_fixture("STUDIO_T5_FIXTURES", "sao-t5")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return make_model_folder(tmp_path_factory.mktemp("models") / "tiny-minilm")


@pytest.fixture(scope="session")
def engine(tiny_model_dir):
    from studio.engine import Engine

    with Engine(tiny_model_dir, batch_window_s=0.0) as engine:
        yield engine
