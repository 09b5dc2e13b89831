"""The layering rule, checked: every module of rdist belongs to a layer and imports only its own layer or lower
ones, counting every import statement (inside functions too, read with ast, never by importing the module)."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

import rdist

PACKAGE = Path(rdist.__file__).parent

# The layers, lowest first: the one place the order is written. A module belongs to the entry that is its
# name or the longest one its name starts with ("rdist" itself is only rdist/__init__.py, the public API).
LAYERS: list[tuple[str, ...]] = [
    ("rdist.errors",),
    ("rdist.utils",),
    # Files rdist writes; the YAML catalogues it reads; the files it downloads from the Hub.
    ("rdist.files", "rdist.catalogues", "rdist.hubget"),
    ("rdist.schema",),  # the one checker of what rdist reads: metadata, checkpoints
    # Where models run (device, precision, layout) and the processes of a torchrun job: evaluation and training.
    ("rdist.device", "rdist.parallel"),
    ("rdist.models", "rdist.data"),
    # Files on disk: model files (safetensors, ONNX; knows the models), the run-directory format.
    ("rdist.artifact", "rdist.onnx", "rdist.runs"),
    ("rdist.attacks",),
    ("rdist.methods",),
    ("rdist.teachers", "rdist.zoo"),  # where models come from: RobustBench, the Hub
    ("rdist.resolve",),  # the one resolver of model names, over files, zoo and teachers
    ("rdist.export",),  # writing ONNX files from any model name
    ("rdist.report",),  # evaluation (`rdist attack`, `rdist compare`), profiles, plots: nothing of training
    ("rdist.engine",),
    ("rdist",),
    ("rdist.reproduce",),  # whole workflows: the quickstart, a paper's table row
    ("rdist.cli", "rdist.__main__"),
]


def layer_of(module: str) -> int | None:
    """The index in LAYERS of `module`, or None when no entry covers it."""
    best, found = -1, None
    for index, names in enumerate(LAYERS):
        for name in names:
            covers = module == name or (name != "rdist" and module.startswith(name + "."))
            if covers and len(name) > best:
                best, found = len(name), index
    return found


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    relative = Path(*name.split("."))
    return (PACKAGE.parent / relative).with_suffix(".py").is_file() or (PACKAGE.parent / relative).is_dir()


def imported_modules(source: str, module: str, is_package: bool = False) -> list[tuple[str, int]]:
    """(rdist module, line) for every import statement of `source`, the code of `module`, wherever it stands."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's package, one level up per extra dot
                package = module.split(".") if is_package else module.split(".")[:-1]
                anchor = package[:len(package) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            # `from rdist import engine` imports the package rdist.engine, `from rdist import load_model` the root.
            found += [(f"{base}.{alias.name}" if _is_module(f"{base}.{alias.name}") else base, node.lineno)
                      for alias in node.names]
    return sorted(((name, line) for name, line in found if name == "rdist" or name.startswith("rdist.")),
                  key=lambda item: item[1])


def upward_imports(source: str, module: str, is_package: bool = False) -> list[str]:
    own = layer_of(module)
    return [f"{module} (layer {own}: {', '.join(LAYERS[own])}) imports {target} at line {line} "
            f"(layer {layer}: {', '.join(LAYERS[layer])})"
            for target, line in imported_modules(source, module, is_package)
            if (layer := layer_of(target)) is not None and layer > own]


def modules() -> list[tuple[str, Path]]:
    return sorted((module_name(p), p) for p in PACKAGE.rglob("*.py"))


def test_every_module_belongs_to_a_layer():
    found = modules()
    assert len(found) > 50
    assert [name for name, _ in found if layer_of(name) is None] == [], "add the new modules to LAYERS"


def test_no_module_imports_a_higher_layer():
    offenders = [line for name, path in modules()
                 for line in upward_imports(path.read_text(), name, path.name == "__init__.py")]
    assert offenders == []


def test_the_check_sees_imports_inside_functions_relative_ones_and_the_root_package():
    source = ("import torch\n"
              "def late():\n"
              "    from rdist.cli.app import app\n"
              "    from ..report import compare\n"
              "    import rdist\n"
              "from rdist.errors import RdistError\n"
              "from . import registry\n")
    found = upward_imports(source, "rdist.models.resnet")
    assert [f.split(" imports ")[1].split(" at ")[0] for f in found] == ["rdist.cli.app", "rdist.report.compare",
                                                                         "rdist"]
    assert imported_modules(source, "rdist.models.resnet")[-1] == ("rdist.models.registry", 7)
    assert layer_of("rdist.report.render") == layer_of("rdist.report") > layer_of("rdist.resolve")
    assert layer_of("rdist.reporting") is None, "a name prefix is not a package prefix"


def test_the_installed_version_is_the_package_version():
    # Artifacts record version("rdist") from the installed metadata; it must agree with rdist.__version__.
    assert version("rdist") == rdist.__version__


def engine_modules() -> list[tuple[str, Path]]:
    return [(name, path) for name, path in modules() if name == "rdist.engine" or name.startswith("rdist.engine.")]


def test_the_engine_imports_only_the_methods_package_api():
    """The engine sees methods through `rdist.methods` (its __init__), never a method's or the registry's module."""
    offenders = [f"{name} imports {target} at line {line}" for name, path in engine_modules()
                 for target, line in imported_modules(path.read_text(), name, path.name == "__init__.py")
                 if target.startswith("rdist.methods.")]
    assert offenders == []
    assert imported_modules("from rdist.methods.igdm import IGDM\nfrom rdist.methods import registry\n",
                            "rdist.engine.build") == [("rdist.methods.igdm", 1), ("rdist.methods.registry", 2)], \
        "the check sees a submodule imported either way"


def method_lore(source: str) -> list[str]:
    """What in `source` (code, strings, comments) names a method, a term, an alias or a role: the registered
    names as words, a role's constant (ROBUST) or its name as a literal ("robust") or a teacher ("natural
    teacher"). "robust" alone is a word of the engine (robust accuracy), not a role."""
    from rdist.methods import aliases, list_methods
    from rdist.methods.roles import ROLES

    names = {part for name in [*list_methods(), *aliases()] for part in name.split("+")}
    patterns = [re.compile(rf"(?<![\w-]){re.escape(name)}(?![\w-])", re.IGNORECASE) for name in names]
    for name in ROLES:
        patterns += [re.compile(rf"\b{name.upper()}\b"), re.compile(rf"[\"']{name}[\"']|\b{name}[ _]teacher", re.I)]
    return [f"line {number}: {match.group(0)!r} in {line.strip()!r}"
            for number, line in enumerate(source.splitlines(), 1) for pattern in patterns
            for match in pattern.finditer(line)]


def test_the_engine_names_no_method_and_no_role():
    offenders = [f"{name}: {hit}" for name, path in engine_modules() for hit in method_lore(path.read_text())]
    assert offenders == []
    # The check does see lore: a method's name in a comment, a role's constant, literal and teacher.
    found = method_lore("# as RSLAD does\nteachers[ROBUST]\nrole = 'robust'\nthe robust teacher")
    assert [hit.split(":")[0] for hit in found] == ["line 1", "line 2", "line 3", "line 4"]
    assert method_lore("robust_acc = clean and robust accuracy; kd_tree, sat-solver, iads") == []


def imported_closure(start: str) -> set[str]:
    """Every rdist module `start` depends on, statically (imports inside functions too), with the packages whose
    __init__ importing a submodule runs. Not the root package: `rdist/__init__.py` is the public API, which gathers
    every layer (training included) for `import rdist`, and no module depends on it."""
    paths = dict(modules())
    seen, todo = set(), [start]
    while todo:
        name = todo.pop()
        if name in seen or name not in paths or name == "rdist":
            continue
        seen.add(name)
        path = paths[name]
        todo += [target for target, _ in imported_modules(path.read_text(), name, path.name == "__init__.py")]
        todo.append(name.rpartition(".")[0])
    return seen


@pytest.mark.parametrize("command", ["rdist.cli.attack", "rdist.cli.compare"])
def test_evaluating_models_needs_nothing_of_the_training_engine(command):
    """`rdist attack` and `rdist compare` (--runs included) stand on the evaluation spine alone: devices, processes,
    the attacks and evaluator, model files and run directories, never rdist.engine."""
    closure = imported_closure(command)
    assert {"rdist.attacks.evaluator", "rdist.parallel", "rdist.report.robustness"} <= closure
    assert sorted(m for m in closure if m == "rdist.engine" or m.startswith("rdist.engine.")) == []
    assert "rdist.engine.trainer" in imported_closure("rdist.cli.training"), "the closure follows imports"


@pytest.mark.e2e
def test_importing_the_evaluation_side_loads_no_engine_module():
    """At run time too (the test above reads the imports): `rdist/__init__.py` loads the engine behind its
    TrainConfig and train only when one is used."""
    code = ("import sys, rdist.cli.attack, rdist.report.compare; "
            "print([m for m in sys.modules if m == 'rdist.engine' or m.startswith('rdist.engine.')])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(PACKAGE.parent)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_every_public_name_is_reachable_and_listed():
    import rdist.engine

    assert set(rdist.__all__) <= set(dir(rdist))
    assert all(getattr(rdist, name) is not None for name in rdist.__all__)
    assert rdist.train is rdist.engine.train and rdist.TrainConfig is rdist.engine.TrainConfig
    namespace: dict = {}
    exec("from rdist import TrainConfig, train", namespace)
    assert namespace["train"] is rdist.engine.train
    with pytest.raises(AttributeError, match="module 'rdist' has no attribute 'trian'"):
        rdist.trian  # noqa: B018
