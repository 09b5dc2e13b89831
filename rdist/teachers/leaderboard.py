"""Write rdist/teachers/leaderboard.json, rdist's record of RobustBench's Linf CIFAR teachers. Run it when
robustbench is upgraded or its leaderboard changes, and commit the result:

    git clone https://github.com/RobustBench/robustbench /tmp/robustbench
    python -m rdist.teachers.leaderboard --from /tmp/robustbench/model_info \\
        --commit $(git -C /tmp/robustbench rev-parse HEAD)

It reads two things, both RobustBench's own:
- the installed package's model zoo (`robustbench.model_zoo`): every CIFAR-10 and CIFAR-100 Linf entry,
  its module built on the meta device (no memory, no download) and read by `rdist.teachers.families`
  for the rdist architecture that holds it exactly, its input normalisation and its size, or the reason
  rdist cannot build it;
- `model_info/<dataset>/Linf/<name>.json` of a checkout of github.com/RobustBench/robustbench, the
  leaderboard's record of each model (clean and AutoAttack accuracy, eps, paper). The PyPI package does
  not ship these files. An entry without one has no numbers, and the file says so.

The file records the robustbench version and the model_info commit it was made from. rdist reads it at
import (`rdist.teachers.catalogue`): importing robustbench itself takes seconds.
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any, Callable

from rdist.data import dataset_shape
from rdist.errors import RdistError
from rdist.files import atomic_path
from rdist.models import create_model
from rdist.teachers.families import REASONS, Unbuildable, build_on_meta, describe, qualified_name, weights
from rdist.utils import first_line

FORMAT = 1
DATA_FILE = Path(__file__).with_name("leaderboard.json")
DATASETS = ("cifar10", "cifar100")
THREAT_MODEL = "Linf"
SOURCE = "https://github.com/RobustBench/robustbench"

# The models RobustBench's own loader (robustbench/utils.py, `_safe_load_state_dict`, 1.1.1) retries with
# strict=False when a strict load fails: their checkpoints lack the class's `mu`/`sigma` buffers, or hold keys
# the class does not have. rdist ignores such extra keys for these models only (and records them in the
# artifact), and still refuses any missing weight.
LOADED_NON_STRICT = frozenset({
    "Andriushchenko2020Understanding", "Engstrom2019Robustness", "Rice2020Overfitting", "Wong2020Fast",
    "Chen2020Efficient", "Wu2020Adversarial",
})
# Checkpoints RobustBench unwraps before its usual "state_dict" (utils.load_model takes checkpoint['last']).
CONTAINERS = {"Andriushchenko2020Understanding": ["last", "state_dict"]}


@functools.lru_cache(maxsize=None)
def count_parameters(arch: str, num_classes: int) -> int:
    """Parameters of rdist architecture `arch`, built on the meta device."""
    return sum(p.numel() for p in build_on_meta(lambda: create_model(arch, num_classes=num_classes)).parameters())


def scan_zoo(zoo: Any) -> list[dict]:
    """One record per Linf CIFAR entry of the installed model zoo (`import_robustbench()`): architecture or
    reason, normalisation, size, and how its checkpoint loads. No numbers: see `read_model_info`."""
    records = []
    for dataset in DATASETS:
        num_classes = dataset_shape(dataset)[1]
        for name, spec in _linf_models(zoo, dataset).items():
            records.append({"name": name, "dataset": dataset, "threat_model": THREAT_MODEL,
                            **describe_entry(name, spec, num_classes)})
    return records


def _linf_models(zoo: Any, dataset: str) -> dict:
    from robustbench.model_zoo.enums import BenchmarkDataset, ThreatModel

    return zoo.model_dicts[BenchmarkDataset(dataset)][ThreatModel(THREAT_MODEL)]


def describe_entry(name: str, spec: dict, num_classes: int) -> dict:
    """The record of zoo entry `name` (its `spec`: builder and Google Drive id): arch or reason, and so on."""
    record: dict[str, Any] = {"arch": None, "mean": None, "std": None, "params": None, "robustbench_class": None}
    gdrive = spec.get("gdrive_id")
    if gdrive is None:
        return {**record, "reason": "downloaded by timm from its own hub, not a RobustBench checkpoint"}
    if not isinstance(gdrive, str):
        return {**record, "reason": f"combines {len(gdrive)} checkpoints (an ensemble or composite model)"}
    try:
        module = build_on_meta(spec["model"])
    except Exception as exc:  # exotic constructors (geotorch's, say) cannot run on the meta device
        builder = _builder_name(spec["model"])
        return {**record, "reason": REASONS.get(builder) or f"built by {builder}, not an architecture rdist "
                                                            f"implements ({type(exc).__name__} on the meta device)"}
    record["robustbench_class"] = qualified_name(type(module))
    try:
        layout = describe(module)
    except Unbuildable as exc:
        record["params"] = sum(p.numel() for p in module.parameters())
        return {**record, "reason": str(exc)}
    out = module.logits if hasattr(module, "logits") else module.fc if hasattr(module, "fc") else module.linear
    if out.out_features != num_classes:
        return {**record, "reason": f"has {out.out_features} outputs for {num_classes} classes"}
    params = count_parameters(layout.arch, num_classes)
    own = dict(module.named_parameters())
    if params != sum(p.numel() for key, p in weights(module).items() if key in own):
        raise RdistError(f"rdist's {layout.arch} has {params} parameters, RobustBench's {name} a different number: "
                         "a bug in rdist.teachers.families")
    return {**record, "arch": layout.arch, "mean": layout.mean and list(layout.mean),
            "std": layout.std and list(layout.std), "params": params, "reason": None,
            "checkpoint": {"containers": CONTAINERS.get(name, ["state_dict"]), "strict": name not in LOADED_NON_STRICT}}


def _builder_name(builder: Callable) -> str:
    """`module.function` of a zoo builder; for a lambda, the names its code calls."""
    name = getattr(builder, "__name__", type(builder).__name__)
    if name == "<lambda>":
        return " / ".join(builder.__code__.co_names) or "a lambda"
    return f"{builder.__module__}.{name}"


# model_info fields rdist copies; the numbers arrive as strings ("84.92") and are stored as numbers.
_NUMBERS = {"clean_acc": "clean_acc", "autoattack_acc": "autoattack_acc", "external": "external_acc"}
_TEXT = {"eps": "eps", "architecture": "architecture", "name": "paper", "venue": "venue", "link": "link",
         "footnote": "footnote"}


def read_model_info(directory: Path, dataset: str, name: str) -> dict | None:
    """The leaderboard record `model_info/<dataset>/Linf/<name>.json` under `directory`, or None without one."""
    path = directory / dataset / THREAT_MODEL / f"{name}.json"
    if not path.is_file():
        return None
    try:
        info = json.loads(path.read_text())
        record = {ours: float(info[theirs]) if theirs in info else None for theirs, ours in _NUMBERS.items()}
    except (ValueError, TypeError, KeyError) as exc:
        raise RdistError(f"{path} is not a RobustBench model_info record ({first_line(exc)})") from None
    if record["clean_acc"] is None or record["autoattack_acc"] is None:
        raise RdistError(f"{path} lacks clean_acc or autoattack_acc; is it a RobustBench model_info record?")
    record.update({ours: str(info.get(theirs, "")) for theirs, ours in _TEXT.items()})
    record["additional_data"] = bool(info.get("additional_data", False))
    record["unreliable"] = bool(info.get("unreliable", False))
    return record


def build(model_info: Path, commit: str, zoo: Any) -> dict:
    """The content of leaderboard.json from a model_info directory and the installed zoo."""
    model_info = Path(model_info)
    if not all((model_info / d / THREAT_MODEL).is_dir() for d in DATASETS):
        raise RdistError(f"{model_info} is not RobustBench's model_info directory (no cifar10/Linf and "
                         "cifar100/Linf in it); pass --from CHECKOUT/model_info")
    if not re.fullmatch(r"[0-9a-f]{40}", commit):
        raise RdistError(f"--commit takes the 40-hex-digit commit of the checkout, got '{commit}'")
    # The records first: a bad one fails before the seconds the scan takes.
    boards = {(dataset, name): read_model_info(model_info, dataset, name)
              for dataset in DATASETS for name in _linf_models(zoo, dataset)}
    teachers = [{**record, "leaderboard": boards[(record["dataset"], record["name"])]} for record in scan_zoo(zoo)]
    return {"format": FORMAT, "source": SOURCE, "robustbench_version": version("robustbench"),
            "model_info_commit": commit, "teachers": teachers}


def write(content: dict, output: Path = DATA_FILE) -> None:
    with atomic_path(output) as tmp:
        Path(tmp).write_text(json.dumps(content, indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    from rdist.teachers.robustbench import import_robustbench

    parser = argparse.ArgumentParser(prog="python -m rdist.teachers.leaderboard", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--from", dest="model_info", type=Path, required=True,
                        help="the model_info directory of a checkout of github.com/RobustBench/robustbench")
    parser.add_argument("--commit", required=True, help="the commit of that checkout (git rev-parse HEAD)")
    parser.add_argument("--output", type=Path, default=DATA_FILE, help=f"where to write [default: {DATA_FILE}]")
    args = parser.parse_args(argv)
    try:
        content = build(args.model_info, args.commit, import_robustbench())
        write(content, args.output)
    except RdistError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    teachers = content["teachers"]
    buildable = sum(t["arch"] is not None for t in teachers)
    print(f"wrote {args.output}: {len(teachers)} entries, {buildable} buildable, "
          f"{sum(t['leaderboard'] is None for t in teachers)} without model_info")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
