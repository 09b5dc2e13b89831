"""One model's robustness report: what `rdist attack` computes, callable from Python."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from rdist.artifact import check_fits, record_results
from rdist.attacks import resolve_attacks
from rdist.attacks.evaluator import PRECISIONS, Progress
from rdist.data import load_dataset, npz_file
from rdist.engine.distributed import Parallel
from rdist.engine.step import channels_last
from rdist.errors import RdistError
from rdist.export.runtime import check_surrogate, is_onnx_path, onnx_target
from rdist.resolve import check_recordable, resolve_model
from rdist.files import atomic_path, check_output
from rdist.utils import parse_eps


def parse_batch_size(text: str | int) -> int | str:
    """--batch-size: a number of images, or "auto" (the largest batch the GPU's memory allows)."""
    if text == "auto" or isinstance(text, int):
        return text
    try:
        return int(text)
    except ValueError:
        raise RdistError(f"--batch-size must be a positive integer or auto, got '{text}'") from None


def check_sizes(n: int, batch_size: int | str) -> None:
    """Refuse a non-positive number of test images or batch size before any work starts."""
    if n <= 0:
        raise RdistError(f"--n must be a positive number of test images, got {n}")
    if parse_batch_size(batch_size) != "auto" and parse_batch_size(batch_size) <= 0:
        raise RdistError(f"--batch-size must be positive, got {batch_size}")


def _report(parallel: Parallel, model: str, names: list[str], eps: float, data: str | None, n: int,
            batch_size: int | str, surrogate: str | None, seed: int, precision: str, progress: Progress | None,
            out: str | Path | None, record: bool) -> dict[str, Any]:
    dev = parallel.device
    with parallel.main_first():  # a model or a dataset may be downloaded: once, by rank 0
        if is_onnx_path(Path(model)):  # answered by ONNX Runtime: only what needs no gradient of it
            path = Path(model).expanduser()
            net, surrogate = onnx_target(path, names, data=data, surrogate=surrogate, record=record, device=dev)
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
        dataset = load_dataset(data, device=dev)
    check_fits(meta, dataset, str(path))
    surrogate_net = None
    if surrogate:
        check_surrogate(surrogate)
        with parallel.main_first():
            surrogate_net = channels_last(resolve_model(surrogate, data).load(dev))
        # The model fits the dataset, so a surrogate that fits it too is of the model's task.
        check_fits(surrogate_net.rdist_meta, dataset, f"--surrogate {surrogate}", instead="a surrogate",
                   data_option=False)
    x, y = dataset.x_test[:n], dataset.y_test[:n]
    started = time.perf_counter()
    result = parallel.evaluate(net, x, y, names, eps=eps, batch_size=batch_size, seed=seed, surrogate=surrogate_net,
                               precision=precision, progress=progress)
    return {"model": str(path), "dataset": dataset.name, "attacks": names, **result.to_dict(),
            "surrogate": surrogate, "runtime": getattr(net, "runtime", "PyTorch fp32"), "device": str(dev),
            "processes": parallel.ranks.world_size,
            "seconds": round(time.perf_counter() - started, 2)}


def robustness_report(model: str, *, suite: str | None = "standard", attacks: str | list[str] | None = None,
                      eps: str | float = "8/255", data: str | None = None, n: int = 1000,
                      batch_size: int | str = 256, surrogate: str | None = None, seed: int = 0,
                      device: str | None = None, precision: str = "fp32", record: bool = False,
                      out: str | Path | None = None, progress: Progress | None = None) -> dict[str, Any]:
    """Attack `model` (a path, zoo:NAME, a RobustBench name or hf-hub:ORG/REPO[@REV], as is `surrogate`) on the
    first `n` test images of `data` and return the report as a dict.

    With `record`, the report is also written into the artifact's metadata; with `out`, to a JSON file.
    `batch_size` may be "auto"; `precision` "bf16" runs the attacks under bf16 autocast (faster on a GPU,
    less faithful), and its reports are never recorded: an artifact records the fp32 protocol only.
    """
    check_sizes(n, batch_size)
    batch_size = parse_batch_size(batch_size)
    if precision not in PRECISIONS:
        raise RdistError(f"--precision must be one of {', '.join(PRECISIONS)}, got '{precision}'")
    if record and precision != "fp32":
        raise RdistError("--record stores the fp32 protocol's numbers only (compare reuses them as such): "
                         "drop --record, or drop --precision bf16")
    if record:
        check_recordable(model)
    eps_value = parse_eps(eps)
    names = resolve_attacks(suite, attacks)
    # Under torchrun each process attacks its share of the batches and every one gets the whole report.
    parallel = Parallel.start(device)
    report = _report(parallel, model, names, eps_value, data, n, batch_size, surrogate, seed, precision, progress,
                     out, record)
    if not parallel.ranks.is_main:  # rank 0 writes
        return report
    if out:
        with atomic_path(out) as tmp:
            tmp.write_text(json.dumps(report, indent=2) + "\n")
    if record:
        record_results(Path(report["model"]), report)
        report["recorded"] = True
    return report
