"""One model's robustness report: what `rdist attack` computes, callable from Python."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from rdist.artifact import load_model, record_results
from rdist.attacks import evaluate, resolve_attacks
from rdist.attacks.evaluate import Progress
from rdist.data import load_dataset
from rdist.errors import RdistError
from rdist.export.runtime import check_surrogate, is_onnx_path, onnx_target
from rdist.utils import atomic_path, default_device, parse_eps
from rdist.zoo import ZOO_PREFIX, resolve_model_path


def check_sizes(n: int, batch_size: int) -> None:
    """Refuse a non-positive number of test images or batch size before any work starts."""
    if n <= 0:
        raise RdistError(f"--n must be a positive number of test images, got {n}")
    if batch_size <= 0:
        raise RdistError(f"--batch-size must be positive, got {batch_size}")


def check_compatible(meta: dict, dataset, source: str) -> None:
    """Refuse data whose class count or image shape differs from what the model was built for."""
    classes = meta["arch"]["num_classes"]
    if dataset.num_classes != classes:
        raise RdistError(f"{source} has {classes} classes but dataset {dataset.name} has {dataset.num_classes}; "
                         "pass the --data the model was trained on")
    shape = meta.get("input_shape")
    if shape and list(dataset.input_shape) != list(shape):
        raise RdistError(f"{source} expects inputs {tuple(shape)} but dataset {dataset.name} has "
                         f"{tuple(dataset.input_shape)}; pass the --data the model was trained on")


def robustness_report(model: str, *, suite: str | None = "standard", attacks: str | list[str] | None = None,
                      eps: str | float = "8/255", data: str | None = None, n: int = 1000, batch_size: int = 256,
                      surrogate: str | None = None, seed: int = 0, device: str | None = None, record: bool = False,
                      out: str | Path | None = None, progress: Progress | None = None) -> dict[str, Any]:
    """Attack `model` on the first `n` test images of `data` and return the report as a dict.

    With `record`, the report is also written into the artifact's metadata; with `out`, to a JSON file.
    """
    check_sizes(n, batch_size)
    if record and model.startswith(ZOO_PREFIX):
        raise RdistError(f"--record would change {model}, a verified zoo download whose sha256 must stay as "
                         "published; copy the file and record into the copy instead")
    eps_value = parse_eps(eps)
    names = resolve_attacks(suite, attacks)
    dev = default_device(device)
    path = resolve_model_path(model)
    if is_onnx_path(path):  # answered by ONNX Runtime: only what needs no gradient of it
        net, surrogate = onnx_target(path, names, data=data, surrogate=surrogate, record=record, device=dev)
    else:
        net = load_model(path, dev)
    meta = net.rdist_meta
    data = data or meta.get("dataset")
    if not data:
        raise RdistError(f"{path} records no dataset: pass --data")
    dataset = load_dataset(data, device=dev)
    check_compatible(meta, dataset, str(path))
    surrogate_net = None
    if surrogate:
        check_surrogate(surrogate)
        surrogate_net = load_model(resolve_model_path(surrogate), dev)
        classes = (surrogate_net.rdist_meta["arch"]["num_classes"], meta["arch"]["num_classes"])
        if classes[0] != classes[1]:
            raise RdistError(f"--surrogate {surrogate} has {classes[0]} classes but {path.name} has {classes[1]}; "
                             "craft transfer attacks on a model of the same task")
        check_compatible(surrogate_net.rdist_meta, dataset, surrogate)
    x, y = dataset.x_test[:n], dataset.y_test[:n]
    started = time.perf_counter()
    result = evaluate(net, x, y, names, eps=eps_value, batch_size=batch_size, seed=seed, surrogate=surrogate_net,
                      progress=progress)
    report = {"model": str(path), "dataset": dataset.name, "attacks": names, **result.to_dict(),
              "surrogate": surrogate, "runtime": getattr(net, "runtime", "PyTorch fp32"), "device": str(dev),
              "seconds": round(time.perf_counter() - started, 2)}
    if out:
        with atomic_path(out) as tmp:
            tmp.write_text(json.dumps(report, indent=2) + "\n")
    if record:
        record_results(path, report)
        report["recorded"] = True
    return report
