"""What `rdist attack` does, callable from Python: one model's robustness report.

    import rdist
    report = rdist.robustness_report("student.safetensors", rdist.EvalConfig(attacks="clean,pgd20,aa", n=1000))
    report.accuracy["aa"], report.worst_case

The model is any name `rdist.resolve` takes, or an ONNX file; the attacks run through the one evaluator
(`rdist.attacks.evaluator.evaluate`), sharded over the processes under torchrun.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from torch import nn

from rdist.artifact import check_fits, record_results
from rdist.attacks.evaluator import EvalResult, Progress, evaluate
from rdist.attacks.registry import CORRUPTIONS
from rdist.data import Dataset, load_dataset, npz_file
from rdist.data.corruptions import SETS as CORRUPTION_SETS, CorruptedImages, corrupted_images
from rdist.device import channels_last
from rdist.errors import RdistError
from rdist.files import atomic_path, check_output
from rdist.onnx import check_surrogate, is_onnx_path, onnx_target
from rdist.parallel import Group
from rdist.attacks.protocol import PROTOCOLS
from rdist.report.config import EvalConfig
from rdist.resolve import check_recordable, resolve_model
from rdist.utils import format_eps


@dataclass
class Report(EvalResult):
    """One model's robustness report: the evaluation's numbers (`EvalResult`) and what they were measured on.

    `to_dict()` is the JSON that `rdist attack --json` prints, `--out` writes and `--record` stores in the
    artifact (whose `results` `rdist compare` reuses).
    """

    model: str = ""  # the file attacked
    dataset: str = ""
    attacks: list[str] = field(default_factory=list)
    surrogate: str | None = None  # the model transfer attacks were crafted on
    runtime: str = "PyTorch fp32"  # what answered: PyTorch, or ONNX Runtime fp32 / int8
    device: str = "cpu"
    processes: int = 1  # torchrun processes that shared the attacks
    seconds: float = 0.0  # the attacks' wall time
    protocol: str | None = None  # the protocol that fixed the evaluation (rdist.attacks.protocol.PROTOCOLS)
    recorded: bool = False  # whether it was written into the artifact's metadata

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        result = {f.name: values[f.name] for f in fields(EvalResult)}
        report = {"model": self.model, "dataset": self.dataset, "attacks": list(self.attacks), **result,
                  "eps_text": format_eps(self.eps), "surrogate": self.surrogate, "runtime": self.runtime,
                  "device": self.device, "processes": self.processes, "seconds": self.seconds,
                  "protocol": self.protocol}
        return {**report, "recorded": True} if self.recorded else report

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "Report":
        """A report as `to_dict` wrote it, or as an artifact records it (a training run's evaluation records
        fewer fields: the others keep their defaults)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


def robustness_report(model: str, config: EvalConfig | None = None, *, record: bool = False,
                      out: str | Path | None = None, progress: Progress | None = None) -> Report:
    """Attack `model` (a path, zoo:NAME, a RobustBench name or hf-hub:ORG/REPO[@REV], as is the surrogate; or an
    .onnx file) as `config` says (the standard suite at 8/255 on 1000 test images by default).

    With `record`, the report is also written into the artifact's metadata; with `out`, to a JSON file. A bf16
    report is never recorded: an artifact records the fp32 protocol only. Under torchrun each process attacks its
    share of the batches and every one gets the whole report; rank 0 alone writes.
    """
    config = config or EvalConfig()
    if record and config.precision != "fp32":
        raise RdistError("--record stores the fp32 protocol's numbers only (compare reuses them as such): "
                         "drop --record, or drop --precision bf16")
    if record:
        check_recordable(model)
    group = Group.start(config.device)
    target = _load(model, config, group, out, record)
    started = time.perf_counter()
    result = evaluate(target.net, target.dataset.x_test[:config.n], target.dataset.y_test[:config.n],
                      list(config.attacks), eps=config.eps, batch_size=config.batch_size, seed=config.seed,
                      surrogate=target.surrogate_net, precision=config.precision, progress=progress,
                      ranks=group.ranks, norm=config.norm, corruptions=target.corruptions)
    report = Report(**asdict(result), model=str(target.path), dataset=target.dataset.name,
                    attacks=list(config.attacks), surrogate=target.surrogate,
                    runtime=getattr(target.net, "runtime", "PyTorch fp32"), device=str(group.device),
                    processes=group.ranks.world_size, seconds=round(time.perf_counter() - started, 2),
                    protocol=config.protocol)
    if not group.ranks.is_main:
        return report
    if out:
        with atomic_path(out) as tmp:
            tmp.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    if record:
        record_results(Path(report.model), report.to_dict())
        report.recorded = True
    return report


@dataclass
class _Target:
    """The model under attack, the data it is attacked on and the surrogate transfer attacks are crafted on."""

    path: Path
    net: nn.Module
    dataset: Dataset
    surrogate: str | None
    surrogate_net: nn.Module | None
    corruptions: CorruptedImages | None = None


def _load(model: str, config: EvalConfig, group: Group, out: str | Path | None, record: bool) -> _Target:
    """Load and check everything before any attack runs: a bad model, data, surrogate or output fails in
    seconds, and nothing is written over an input."""
    dev, data, surrogate = group.device, config.data, config.surrogate
    with group.main_first():  # a model or a dataset may be downloaded: once, by rank 0
        if is_onnx_path(Path(model)):  # answered by ONNX Runtime: only what needs no gradient of it
            path = Path(model).expanduser()
            net, surrogate = onnx_target(path, list(config.attacks), data=data, surrogate=surrogate,
                                         record=record, device=dev)
        else:
            source = resolve_model(model, data)
            # The training engine's layout (faster convolutions); evaluate feeds the inputs in the same one.
            path, net = source.path, channels_last(source.load(dev))
        meta = net.rdist_meta
        data = data or meta.get("dataset")
        if not data:
            raise RdistError(f"{path} records no dataset: pass --data")
        if out:  # refused before any attack runs: never a report written over the model, surrogate or data
            check_output(out, "--out", inputs=[("the model", path), ("the surrogate", surrogate),
                                               ("the dataset", npz_file(data))])
        dataset = load_dataset(data, root=config.data_dir, device=dev)
    check_fits(meta, dataset, str(path))
    config.check_protocol(_benchmark_name(config, dataset.name))
    with group.main_first():  # downloaded once, by rank 0
        corruptions = _corruptions(config, dataset, meta)
    surrogate_net = None
    if surrogate:
        check_surrogate(surrogate)
        with group.main_first():
            surrogate_net = channels_last(resolve_model(surrogate, data).load(dev))
        # The model fits the dataset, so a surrogate that fits it too is of the model's task.
        check_fits(surrogate_net.rdist_meta, dataset, f"--surrogate {surrogate}", instead="a surrogate",
                   data_option=False)
    return _Target(path, net, dataset, surrogate, surrogate_net, corruptions)


def _benchmark_name(config: EvalConfig, dataset: str) -> str:
    """The dataset a protocol knows `dataset` as (its own name, unless the protocol maps it)."""
    return PROTOCOLS[config.protocol].datasets.get(dataset, dataset) if config.protocol else dataset


def _corruptions(config: EvalConfig, dataset: Dataset, meta: dict) -> CorruptedImages | None:
    """The corrupted test images of `dataset` when the attacks ask for them: CIFAR-10-C for cifar10, CIFAR-100-C for
    cifar100; for an npz file, those of the dataset the model records, provided that its test labels are those of
    the set (the first n test images of the original, in order)."""
    if CORRUPTIONS not in config.attacks:
        return None
    name = dataset.name if dataset.name in CORRUPTION_SETS else meta.get("dataset") or dataset.name
    images = corrupted_images(name, root=config.data_dir)
    images.check_labels(dataset.y_test[:config.n])
    return images

