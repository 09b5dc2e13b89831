"""Which model do you mean: the one resolver behind every argument that names a model.

A model is named by
    a path                  an rdist `.safetensors` file, as given
    zoo:NAME                a student of zoo.yaml, pulled from the Hub and checked against its sha256
    a RobustBench name      a teacher of `rdist teacher list`, converted on first use for the dataset
    hf-hub:ORG/REPO[@REV]   the model.safetensors of any Hub repo (as `rdist zoo push` writes it), at REV
    hf://ORG/REPO[@REV][/FILE]  the same in huggingface_hub's own URI form, FILE of the repo (default
                            model.safetensors: an .onnx file too)

`rdist attack`, `rdist compare`, `--teacher`, `--natural-teacher`, `--surrogate` and `rdist zoo push` all
go through `resolve_model`, so a name that works in one works in all. The lower layers (artifact, zoo,
teachers) only ever see the resulting file: `rdist.artifact.load_artifact` stays path-only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from safetensors import SafetensorError
from safetensors.torch import load_file

from rdist.artifact import load_artifact, read_metadata
from rdist.errors import RdistError
from rdist.onnx import load_onnx, read_onnx_metadata
from rdist.teachers.catalogue import TEACHERS, is_teacher_name, teacher_dataset
from rdist.teachers.robustbench import pull_teacher
from rdist.zoo import ZOO, ZOO_PREFIX, pull_model
from rdist.utils import suggest
from rdist.zoo.hub import HF_HUB_PREFIX, HF_URI_PREFIX, HUB_FILE, pull_repo

MODEL_NAMES = ("an .safetensors file, zoo:NAME (`rdist zoo list`), a RobustBench name (`rdist teacher list`), "
               "hf-hub:ORG/REPO[@REV] or hf://ORG/REPO[@REV][/FILE]")
# Downloads whose bytes must stay as published: recording results into them would change the file.
_HUB_CACHE = "a download in the Hugging Face cache, shared by everything that uses that repo"
READ_ONLY = {"zoo": "a verified zoo download whose sha256 must stay as published", "hf-hub": _HUB_CACHE,
             "hf": _HUB_CACHE}
# What RobustBench's `load_model` takes that rdist does too (`load_model`): its threat models rdist has teachers of.
THREAT_MODELS = ("Linf",)


@dataclass(frozen=True)
class FileFormat:
    """How one kind of model file is read: its metadata alone (cheap), or the whole model in eval mode."""

    read_metadata: Callable[[Path], dict]
    load: Callable[[Path, torch.device | str], nn.Module]


# Model files by suffix. Another format (an exported `.onnx`) is one more entry; a path with any other
# suffix is read as safetensors, whose error then says what the file is not.
FORMATS: dict[str, FileFormat] = {".safetensors": FileFormat(read_metadata, load_artifact),
                                  ".onnx": FileFormat(read_onnx_metadata, load_onnx)}


@dataclass(frozen=True)
class ModelSource:
    """A resolved model name: what the user typed, which kind of name it is, and the local file it means."""

    spec: str
    kind: str  # "file", "zoo", "robustbench", "hf-hub" or "hf" (hf://)
    path: Path

    @property
    def label(self) -> str:
        return model_label(self.spec)

    @property
    def recordable(self) -> bool:
        """Whether results may be written into the file (`--record`)."""
        return self.kind not in READ_ONLY

    @property
    def format(self) -> FileFormat:
        return FORMATS.get(self.path.suffix, FORMATS[".safetensors"])

    def metadata(self) -> dict:
        return self.format.read_metadata(self.path)

    def load(self, device: torch.device | str = "cpu") -> nn.Module:
        return self.format.load(self.path, device)


def model_kind(spec: str | Path) -> str:
    """Which kind of name `spec` is, from its text alone: nothing is read or downloaded."""
    spec = str(spec)
    if spec.startswith(ZOO_PREFIX):
        return "zoo"
    if spec.startswith(HF_HUB_PREFIX):
        return "hf-hub"
    if spec.startswith(HF_URI_PREFIX):
        return "hf"
    path = Path(spec).expanduser()
    if path.exists() or path.suffix in FORMATS or "/" in spec or os.sep in spec:
        return "file"
    return "robustbench"


def resolve_model(spec: str | Path, dataset: str | None = None, checkpoints: str | Path | None = None) -> ModelSource:
    """The local file `spec` names (see the module docstring), downloaded or converted if needed.

    `dataset` (e.g. --data) decides which RobustBench checkpoint a name means when it has one for several
    datasets (see `teacher_dataset`); the other kinds name one file whatever the dataset. `checkpoints` is where a
    RobustBench name's checkpoint is read from (robustbench's `model_dir`) instead of rdist's cache.
    """
    spec = str(spec)
    kind = model_kind(spec)
    if checkpoints is not None and kind != "robustbench":
        raise RdistError(f"model_dir is where RobustBench keeps its checkpoints, but {spec} is no RobustBench name: "
                         "leave model_dir out")
    if kind == "zoo":
        path = pull_model(spec[len(ZOO_PREFIX):])
    elif kind == "hf-hub":
        path = pull_repo(*_hub_repo(spec))
    elif kind == "hf":
        path = pull_repo(*hf_uri(spec), prefix=HF_URI_PREFIX)
    elif kind == "file":
        path = Path(spec).expanduser()
        if path.is_dir():
            raise RdistError(f"{spec} is a directory, not a model: name the file inside it, e.g. "
                             f"{path / 'best.safetensors'}")
    elif is_teacher_name(spec):
        path = pull_teacher(spec, teacher_dataset(spec, dataset), checkpoints=checkpoints)
    else:
        raise RdistError(f"'{spec}' is not a file, so it was read as a RobustBench teacher name, and rdist knows "
                         f"no teacher of that name{_close_names(spec)}; a model is {MODEL_NAMES}")
    return ModelSource(spec, kind, path)


def load_model(spec: str | Path | None = None, device: torch.device | str = "cpu", dataset: str | None = None, *,
               model_name: str | None = None, model_dir: str | Path | None = None,
               threat_model: str | None = None) -> nn.Module:
    """The model `spec` names (any kind, see `resolve_model`), on `device`, in eval mode.

    The metadata stays available as `model.rdist_meta`. RobustBench's keywords work too, so that code written for
    `robustbench.utils.load_model` runs by changing its import: `model_name` (the name, any kind), `model_dir`
    (robustbench's checkpoint folder: a checkpoint it downloaded there is read, not fetched again), `dataset`, and
    `threat_model` ("Linf", the only one rdist has teachers of). Their enums (`BenchmarkDataset`, `ThreatModel`)
    are taken by value.
    """
    if (spec is None) == (model_name is None):
        raise RdistError("name the model once: load_model(NAME) or load_model(model_name=NAME)" if spec is None
                         else f"load_model got two models, {spec} and model_name={model_name}: give one")
    threat_model = getattr(threat_model, "value", threat_model)
    if threat_model is not None and threat_model not in THREAT_MODELS:
        raise RdistError(f"threat_model {threat_model!r}: rdist has {', '.join(THREAT_MODELS)} teachers only (its "
                         "RobustBench catalogue holds no L2 or corruptions models yet); pass threat_model='Linf'")
    dataset = getattr(dataset, "value", dataset)
    return resolve_model(str(spec if spec is not None else model_name), dataset, model_dir).load(device)


def model_weights(spec: str, dataset: str | None = None) -> tuple[dict, dict[str, torch.Tensor]]:
    """(metadata, state dict on the CPU) of the PyTorch model `spec` names (any kind), without building it: what a
    run starts from with --initial-weights."""
    source = resolve_model(spec, dataset)
    if source.format is not FORMATS[".safetensors"]:
        raise RdistError(f"{spec} is an {source.path.suffix} file, which holds no PyTorch weights to train on: pass "
                         "the .safetensors artifact it was exported from")
    meta = source.metadata()
    try:
        return meta, load_file(str(source.path))
    except (SafetensorError, OSError) as exc:
        raise RdistError(f"{source.path}: cannot read the weights ({exc}); the file is truncated or corrupted") \
            from None


def resolve_teacher(spec: str, device: torch.device | str = "cpu", dataset: str | None = None) -> nn.Module:
    """The model `spec` names, frozen (no grad) and in eval mode, as `--teacher` wants it."""
    model = load_model(spec, device, dataset)
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()


def check_recordable(spec: str | Path) -> None:
    """Refuse `--record` into a download that must stay as published, before anything is downloaded."""
    kind = model_kind(spec)
    if kind in READ_ONLY:
        raise RdistError(f"--record would change {spec}, {READ_ONLY[kind]}; copy the file and record into the "
                         "copy instead")


def model_label(spec: str | Path) -> str:
    """How a model is named in tables: zoo:NAME, hf-hub:ORG/REPO, a RobustBench name, or a file's stem."""
    if model_kind(spec) != "file":
        return str(spec)
    path = Path(spec)
    # best/last.safetensors say nothing on their own: their run directory names them.
    return f"{path.parent.name}/{path.stem}" if path.stem in ("best", "last") and path.parent.name else path.stem


def hf_uri(spec: str) -> tuple[str, str | None, str]:
    """(repo id, revision or None, file) of `hf://ORG/REPO[@REV][/FILE]`, huggingface_hub's URI of a file in a
    model repo (HfFileSystem's; a revision holding a slash is written %2F-escaped, as there)."""
    from urllib.parse import unquote

    rest = spec[len(HF_URI_PREFIX):]
    kind = rest.split("/", 1)[0]
    if kind in ("datasets", "spaces"):
        raise RdistError(f"'{spec}' names a file of a Hub {kind[:-1]} repo; models live in model repos: write "
                         f"{HF_URI_PREFIX}ORG/REPO[@REV][/FILE]")
    org, _, rest = rest.partition("/")
    name, _, file = rest.partition("/")
    name, at, revision = name.partition("@")
    if at and not revision:
        raise RdistError(f"'{spec}' has @ without a revision: write {HF_URI_PREFIX}ORG/REPO@REV[/FILE] (a branch, tag "
                         "or commit), or leave out @ for main")
    return f"{org}/{name}", unquote(revision) if revision else None, file or HUB_FILE


def _hub_repo(spec: str) -> tuple[str, str | None]:
    """(repo id, revision or None) of `hf-hub:ORG/REPO[@REV]`."""
    repo, at, revision = spec[len(HF_HUB_PREFIX):].partition("@")
    if at and not revision:
        raise RdistError(f"'{spec}' ends in @ without a revision: write hf-hub:ORG/REPO@REV (a branch, tag or "
                         "commit), or leave out @ for main")
    return repo, revision or None


def _close_names(spec: str) -> str:
    """' (did you mean: ...?)' over the RobustBench teachers and the zoo's students, or ''."""
    names = {name for name, _ in TEACHERS}
    try:
        names |= {f"{ZOO_PREFIX}{e.name}" for e in ZOO.load()}
    except RdistError:
        pass  # an unreadable zoo.yaml has its own error when it is used; here it only lends names
    # Model names share long runs (2019, _WRN34_10, cifar10): 0.6 keeps the near-misses and drops the look-alikes.
    return suggest(spec, names, list_all=False, cutoff=0.6)
