"""Build step (setuptools `build_py`, named in pyproject.toml): ship the repository's catalogues in the wheel.

The catalogues (zoo.yaml, and every other non-hidden *.yaml at the repository root) are edited where the
README documents them, at the root. A wheel installs only the package, so this copies them into
rdist/catalogues/ of the build; `rdist.catalogues.catalogue_path` reads that copy when it exists (an installed
wheel) and the root file otherwise (a source checkout or an editable install). A copy at build time, not
a symlink: symlinks do not survive every checkout, sdist and wheel.
"""

from __future__ import annotations

from pathlib import Path

from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


def catalogues() -> list[Path]:
    return sorted(p for p in ROOT.glob("*.yaml") if not p.name.startswith("."))


class BuildWithCatalogues(build_py):
    def run(self) -> None:
        super().run()
        target = Path(self.build_lib) / "rdist" / "catalogues"
        self.mkpath(str(target))
        for source in catalogues():
            self.copy_file(str(source), str(target / source.name))

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        target = Path(self.build_lib) / "rdist" / "catalogues"
        return [*super().get_outputs(include_bytecode), *(str(target / p.name) for p in catalogues())]
