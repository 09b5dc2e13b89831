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

from rdist.artifact import read_metadata, save_model
from rdist.attacks import evaluate
from rdist.data import load_dataset
from rdist.engine import TrainConfig, train
from rdist.errors import RdistError
from rdist.models import create_model, list_models
from rdist.report.config import EvalConfig
from rdist.report.robustness import robustness_report
from rdist.resolve import load_model

__version__ = "0.1.0"

__all__ = ["EvalConfig", "RdistError", "TrainConfig", "create_model", "evaluate", "list_models", "load_dataset",
           "load_model", "read_metadata", "robustness_report", "save_model", "train"]
