"""The engine never imports the top-level `rdist` package: rdist/__init__.py imports the engine, so such an
import is a cycle that only works while nothing reads the half-initialised package at import time."""

from __future__ import annotations

import ast
from importlib.metadata import version
from pathlib import Path

import rdist.engine

ENGINE = Path(rdist.engine.__file__).parent


def _top_level_rdist_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [f"import {a.name}" for a in node.names if a.name == "rdist"]
        elif isinstance(node, ast.ImportFrom) and node.module == "rdist" and node.level == 0:
            found.append(f"from rdist import {', '.join(a.name for a in node.names)}")
    return found


def test_engine_modules_do_not_import_the_rdist_package():
    modules = sorted(ENGINE.glob("*.py"))
    assert len(modules) > 5
    offenders = {p.name: imports for p in modules if (imports := _top_level_rdist_imports(p))}
    assert offenders == {}


def test_the_installed_version_is_the_package_version():
    # Artifacts record version("rdist") from the installed metadata; it must agree with rdist.__version__.
    assert version("rdist") == rdist.__version__
