"""A non-editable install (a wheel, as `pip install .` builds) finds the catalogues of the repository root:
zoo.yaml and every other root *.yaml that build_hooks.py ships, and the teacher catalogue of the package
(rdist/teachers/leaderboard.json, package data)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[1]

CHECK = """
import json, rdist, rdist.utils, rdist.cli.app
from rdist.zoo import ZOO
from rdist.catalogues import catalogue_path
from rdist.teachers.catalogue import DATA_FILE, ROBUSTBENCH, TEACHERS
PROJECT_ZOO, PROJECT_REPRODUCTIONS = catalogue_path("zoo.yaml"), catalogue_path("reproductions.yaml")
print(json.dumps({"rdist": rdist.__file__, "cli": rdist.cli.__file__, "zoo": str(PROJECT_ZOO),
                  "students": len(ZOO.load()),
                  "reproductions": str(PROJECT_REPRODUCTIONS),
                  "catalogues": sorted(p.name for p in (PROJECT_ZOO.parent).glob("*.yaml")),
                  "schemas": sorted(p.name for p in (PROJECT_ZOO.parent).glob("*.schema.json")),
                  "teachers": str(DATA_FILE), "buildable": len(TEACHERS), "robustbench": len(ROBUSTBENCH)}))
"""


def test_a_wheel_install_finds_the_catalogues(tmp_path):
    # Build from a copy, so that the build's build/ and egg-info never land in the checkout.
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", "build", "dist", "*.egg-info", "__pycache__",
                                                              ".pytest_cache", "runs", ".venv", "venv"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "--quiet", "-w",
                    str(tmp_path / "dist"), f"{source}{os.sep}"], check=True, capture_output=True, timeout=300)
    (wheel,) = (tmp_path / "dist").glob("rdist-*.whl")
    site = tmp_path / "site"
    subprocess.run([*pip, "install", "--no-deps", "--no-index", "--quiet", "--target", str(site), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    # Only the installed copy on the path (torch and the rest come from this interpreter's site-packages),
    # run from a directory without a zoo.yaml and without RDIST_ZOO.
    env = {k: v for k, v in os.environ.items() if k not in ("RDIST_ZOO", "PYTHONPATH")}
    result = subprocess.run([sys.executable, "-c", CHECK], env={**env, "PYTHONPATH": str(site)}, cwd=tmp_path,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert Path(found["rdist"]).is_relative_to(site), found
    # A regular package, as every other one (a namespace package has no __file__).
    assert found["cli"] is not None and Path(found["cli"]) == site / "rdist" / "cli" / "__init__.py", found
    assert Path(found["zoo"]) == site / "rdist" / "catalogues" / "zoo.yaml"
    assert Path(found["zoo"]).read_bytes() == (ROOT / "zoo.yaml").read_bytes()
    assert Path(found["reproductions"]) == site / "rdist" / "catalogues" / "reproductions.yaml"
    root_catalogues = sorted(p.name for p in ROOT.glob("*.yaml") if not p.name.startswith("."))
    assert found["catalogues"] == root_catalogues
    assert found["schemas"] == sorted(p.name for p in (ROOT / "rdist" / "catalogues").glob("*.schema.json"))
    assert found["schemas"], "the catalogues' JSON Schemas ship for editors"
    from rdist.teachers.catalogue import DATA_FILE, ROBUSTBENCH, TEACHERS

    assert Path(found["teachers"]) == site / "rdist" / "teachers" / "leaderboard.json"
    assert Path(found["teachers"]).read_bytes() == DATA_FILE.read_bytes()
    assert (found["buildable"], found["robustbench"]) == (len(TEACHERS), len(ROBUSTBENCH))
