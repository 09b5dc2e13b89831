"""Importing robustbench with the PyPI packages: the one place that makes `import robustbench` work.

robustbench 1.1.1 imports `autoattack` (published on PyPI as `pyautoattack`) and `pkg_resources`
(setuptools < 81). In your own scripts, call `import_robustbench()` before `import robustbench`.
It depends on nothing else of rdist's teachers, so the tool that writes their catalogue can use it before the
catalogue exists.
"""

from __future__ import annotations

import sys
import warnings
from typing import Any

from rdist.errors import RdistError


def import_robustbench() -> Any:
    """`robustbench.model_zoo.models`, importable with the PyPI packages.

    robustbench imports `autoattack`, which PyPI ships as `pyautoattack`: unless a real `autoattack`
    is installed, the installed `pyautoattack` is registered under that name (with its `state`
    module, the one submodule robustbench imports).
    """
    try:
        import autoattack  # noqa: F401  (an `autoattack` installed from git takes precedence)
    except ModuleNotFoundError:
        try:
            import pyautoattack
            import pyautoattack.state
        except ModuleNotFoundError:
            raise RdistError("robustbench needs AutoAttack: pip install pyautoattack") from None
        sys.modules["autoattack"] = pyautoattack
        sys.modules["autoattack.state"] = pyautoattack.state
    with warnings.catch_warnings():
        # robustbench's own imports warn about pkg_resources and timm's old module paths.
        for category in (UserWarning, DeprecationWarning, FutureWarning):
            warnings.simplefilter("ignore", category)
        try:
            import robustbench.model_zoo.models as zoo
        except ModuleNotFoundError as exc:
            fix = "pip install 'setuptools<81'" if exc.name == "pkg_resources" else "pip install 'robustbench>=1.1.1'"
            raise RdistError(f"cannot import robustbench ({exc}); {fix}") from None
    return zoo

