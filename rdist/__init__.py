"""rdist: adversarial robustness distillation, from robust teachers to small robust students.

The whole Python API a user needs:
    create_model("mobilenetv2", num_classes=10)      build an architecture
    load_model("student.safetensors")                a ready nn.Module in eval mode, from any model name:
                                                     a path, zoo:NAME, a RobustBench name, hf-hub:ORG/REPO[@REV]
    save_model(model, "out.safetensors", **meta)     a self-describing artifact
    load_dataset("cifar10")                           uint8 tensors on the device
    evaluate(model, x, y, ["clean", "pgd20"])         robustness of a module under attacks, on tensors
    robustness_report("student.safetensors",          `rdist attack`: a model name attacked on its test set,
                      EvalConfig(attacks="clean,aa")) reported (and recorded) as the CLI does
    train(TrainConfig(method="rslad", ...))           train a teacher or distil a student
"""

from typing import TYPE_CHECKING, Any

from rdist.artifact import read_metadata, save_model
from rdist.attacks import evaluate
from rdist.data import load_dataset
from rdist.errors import RdistError
from rdist.models import create_model, list_models
from rdist.report.config import EvalConfig
from rdist.report.robustness import robustness_report
from rdist.resolve import load_model

if TYPE_CHECKING:
    from rdist.engine import TrainConfig, train

__version__ = "0.1.0"

__all__ = ["EvalConfig", "RdistError", "TrainConfig", "create_model", "evaluate", "list_models", "load_dataset",
           "load_model", "read_metadata", "robustness_report", "save_model", "train"]

# The training engine's names load the engine (its ~17 modules, the methods) on first use (PEP 562): evaluating a
# model (`rdist attack`, `rdist compare`, every import of rdist.report) needs nothing of it.
_ENGINE_NAMES = ("TrainConfig", "train")


def __getattr__(name: str) -> Any:
    if name in _ENGINE_NAMES:
        from rdist import engine

        value = getattr(engine, name)
        globals()[name] = value  # later lookups find it without this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_ENGINE_NAMES})
