"""Studio: a fast text-to-audio instrument."""

from pathlib import Path

__version__ = "0.1.0"


def shipped_dir(name: str) -> Path:
    """A folder Studio ships (`presets`, `models`): inside an installed package (setup.py copies it
    there), else the repository's own, beside the package in a source checkout."""
    package = Path(__file__).resolve().parent
    installed = package / "shipped" / name
    return installed if installed.is_dir() else package.parent / name
