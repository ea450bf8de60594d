"""Presets and the embedded models ship inside the wheel: the build copies the repository's
`presets/` and `models/` into the package as `studio/shipped/`, where `studio.shipped_dir` finds
them in an installed Studio (a source checkout reads the repository's folders directly)."""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

SHIPPED = ("presets", "models")


class BuildWithShippedData(build_py):
    def run(self) -> None:
        super().run()
        for folder in SHIPPED:
            if Path(folder).is_dir():
                self.copy_tree(folder, str(Path(self.build_lib, "studio", "shipped", folder)))


setup(cmdclass={"build_py": BuildWithShippedData})
