"""A RobustBench leaderboard entry for an rdist artifact: the `model_info/<dataset>/<threat model>/<name>.json` file
of RobustBench's repository and the text of its new-model issue (`.github/ISSUE_TEMPLATE/new-model.md`), both
filled in from the report `rdist attack --protocol robustbench --record` stored in the artifact.

The JSON holds the fields of RobustBench's own files, in their order (`robustbench.utils.ModelInfo` and the files
of github.com/RobustBench/robustbench/model_info): numbers as text with two decimals, as `update_json` writes them;
`additional_data` from the run's training data; `number_forward_passes` 1 (an rdist model is one deterministic
forward); `unreliable` true only when the report was flagged and exported with `allow_flagged`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from rdist.artifact import read_metadata
from rdist.attacks.flags import Flag
from rdist.attacks.protocol import PROTOCOLS
from rdist.errors import RdistError
from rdist.files import atomic_path, check_output
from rdist.resolve import model_label, resolve_model
from rdist.utils import format_eps

THREAT_MODELS = ("Linf", "L2", "corruptions")
# The field order of RobustBench's files (and of robustbench.utils.ModelInfo, where it has them).
FIELDS = ("link", "name", "authors", "additional_data", "number_forward_passes", "dataset", "venue", "architecture",
          "eps", "clean_acc", "reported", "autoattack_acc", "corruptions_acc", "footnote", "unreliable")
ISSUE_URL = "https://github.com/RobustBench/robustbench/issues/new?template=new-model.md"


def architecture_name(arch: str) -> str:
    """An rdist architecture as RobustBench's files name theirs: WideResNet-34-10, ResNet-18, PreActResNet-18."""
    if match := re.fullmatch(r"(?:dm-)?wrn-(\d+)-(\d+)", arch):
        return f"WideResNet-{match[1]}-{match[2]}"
    if match := re.fullmatch(r"(?:dm-)?preactresnet(\d+)(?:-wong)?", arch):
        return f"PreActResNet-{match[1]}"
    if match := re.fullmatch(r"resnet(\d+)", arch):
        return f"ResNet-{match[1]}"
    return {"mobilenetv2": "MobileNetV2"}.get(arch, arch)


def _percent(value: float) -> str:
    return str(round(100 * value, 2))  # robustbench.utils.update_json writes str(round(acc * 100, 2))


def protocol_report(meta: dict[str, Any], source: Path, threat_model: str) -> dict[str, Any]:
    """The report of RobustBench's protocol for `threat_model` that the artifact records: AutoAttack standard (or
    the common corruptions) on the first 10,000 test images of CIFAR-10 or CIFAR-100, in fp32."""
    protocol = PROTOCOLS["robustbench"]
    found = []
    for report in (meta.get("results") or {}).values():
        if report.get("n") != protocol.n or report.get("precision", "fp32") != "fp32":
            continue
        dataset = protocol.datasets.get(report.get("dataset"))
        if threat_model == "corruptions":
            if "corruptions" in report.get("accuracy", {}) and dataset:
                found.append(report)
        elif (report.get("protocol") == "robustbench" and report.get("norm", "Linf") == threat_model
              and "aa" in report.get("accuracy", {}) and dataset):
            found.append(report)
    if not found:
        how = ("rdist attack MODEL --attacks corruptions --n 10000 --record" if threat_model == "corruptions" else
               f"rdist attack MODEL --protocol robustbench{'' if threat_model == 'Linf' else ' --norm L2'} --record")
        raise RdistError(f"{source} records no RobustBench {threat_model} evaluation (AutoAttack standard on the "
                         f"first {protocol.n:,} test images of CIFAR-10 or CIFAR-100, fp32); run `{how}` first")
    return found[-1]


def model_info(meta: dict[str, Any], report: dict[str, Any], threat_model: str, *, name: str, link: str = "",
               authors: str = "", venue: str = "N/A", flags: list[Flag] | None = None) -> dict[str, Any]:
    """The model_info JSON of RobustBench's schema for an artifact's metadata and its protocol report."""
    provenance = meta.get("provenance") or {}
    dataset = PROTOCOLS["robustbench"].datasets[report["dataset"]]
    notes = _footnotes(provenance, flags)
    info = {"link": link, "name": name, "authors": authors, "additional_data": _additional_data(provenance),
            "number_forward_passes": 1, "dataset": dataset, "venue": venue,
            "architecture": architecture_name(meta["arch"]["name"]),
            "eps": None if threat_model == "corruptions" else format_eps(report["eps"]),
            "clean_acc": _percent(report["accuracy"]["clean"])}
    if threat_model == "corruptions":
        info.update(reported=_percent(report["accuracy"]["corruptions"]),
                    corruptions_acc=_percent(report["accuracy"]["corruptions"]))
    else:
        info.update(reported=_percent(report["accuracy"]["aa"]), autoattack_acc=_percent(report["accuracy"]["aa"]))
    info.update(footnote=" ".join(notes) if notes else None, unreliable=bool(flags))
    return {key: info[key] for key in FIELDS if key in info}


def _additional_data(provenance: dict[str, Any]) -> bool:
    """Whether training used real images beyond the dataset's training set (RobustBench's `additional_data`;
    generated images are not additional data there, a footnote says so). rdist's training runs record extra real
    data as `extra_data` with a `kind` of "real"."""
    extra = provenance.get("extra_data")
    return isinstance(extra, dict) and extra.get("kind") == "real"


def _footnotes(provenance: dict[str, Any], flags: list[Flag] | None) -> list[str]:
    notes = []
    if provenance.get("extra_data"):
        notes.append(f"Trained with additional images: {_describe(provenance['extra_data'])}.")
    method, teacher = provenance.get("method"), provenance.get("teacher")
    if teacher:
        notes.append(f"Distilled with {method or 'an unnamed method'} from the teacher {model_label(str(teacher))}"
                     f"{_teacher_data(str(teacher))} (rdist).")
    if flags:
        notes.append("rdist's attack-failure checks flagged this evaluation: "
                     + "; ".join(f.line() for f in flags) + ".")
    return notes


def _describe(extra: Any) -> str:
    if isinstance(extra, dict):
        return ", ".join(f"{k} {v}" for k, v in extra.items())
    return str(extra)


def _teacher_data(teacher: str) -> str:
    """", which RobustBench lists with additional data" for a RobustBench teacher that used some."""
    from rdist.teachers.catalogue import ROBUSTBENCH

    entries = [e for (name, _), e in ROBUSTBENCH.items() if name == teacher]
    return ", which RobustBench lists with additional data" if any(e.additional_data for e in entries) else ""


def issue_text(info: dict[str, Any], threat_model: str, command: str) -> str:
    """RobustBench's new-model issue (its template's headings and fields), filled in for one model."""
    board = {"Linf": "Linf", "L2": "L2", "corruptions": "Common Corruptions"}[threat_model]
    robust = info.get("autoattack_acc") or info.get("corruptions_acc")
    method = ("AutoAttack standard (pyautoattack), first 10,000 test images, fp32, run by rdist: " if threat_model !=
              "corruptions" else "mean accuracy over 15 corruptions x 5 severities (RobustBench's), run by rdist: ")
    def given(value: str, option: str) -> str:
        return value or f"(to fill in, or pass {option} to rdist export)"

    return f"""# Paper Information

- **Paper Title**: {info['name']}
- **Paper URL**: {given(info['link'], '--link')}
- **Paper authors**: {given(info['authors'], '--authors')}

# Leaderboard Claim(s)

## Model 1

- **Architecture**: {info['architecture']}
- **Threat Model**: {board}
- **eps**: {info['eps'] if info['eps'] is not None else 'N/A'}
- **Clean accuracy**: {info['clean_acc']}%
- **Robust accuracy**: {robust}%
- **Additional data**: {str(info['additional_data']).lower()}
- **Evaluation method**: {method}`{command}`
- **Checkpoint and code**: (the URL of the checkpoint, e.g. its Hugging Face repo from `rdist zoo push`) and
  https://github.com/ (rdist){f'''

Footnote: {info['footnote']}''' if info.get('footnote') else ''}

# Model Zoo:

- [ ] I want to add my models to the Model Zoo (check if true)
- [ ] I use an architecture that is included among
  those [here](https://github.com/RobustBench/robustbench/tree/master/robustbench/model_zoo/architectures) or in `timm`. If not, I added the link to the architecture implementation so that it can be added.
- [ ] I agree to release my model(s) under MIT license (check if true) **OR** under a custom license, located here: (put the custom license URL here if a custom license is needed. If no URL is specified, we assume that you are fine with MIT)
"""


def export_robustbench(model: str, out: str | Path, *, threat_model: str = "Linf", issue: str | Path | None = None,
                       title: str | None = None, link: str = "", authors: str = "", venue: str = "N/A",
                       allow_flagged: bool = False) -> dict[str, Any]:
    """Write RobustBench's model_info JSON for `model` (any model name rdist resolves) to `out`, and its new-model
    issue text to `issue` (when given); returns what was written: {"path", "model_info", "issue", "issue_path"}.

    The model name (RobustBench's model ID) is `out`'s file name without .json. A flagged report is refused unless
    `allow_flagged`, which marks the entry unreliable and names the flags in its footnote."""
    if threat_model not in THREAT_MODELS:
        raise RdistError(f"--threat-model must be one of {', '.join(THREAT_MODELS)}, got '{threat_model}'")
    source = resolve_model(model)
    out = Path(out).expanduser()
    if out.suffix != ".json":
        raise RdistError(f"-o {out}: RobustBench's model_info files are <model ID>.json; name the output so")
    check_output(out, "-o", inputs=[("the model", source.path)])
    if issue is not None:
        check_output(issue, "--issue", inputs=[("the model", source.path), ("the model_info JSON", out)])
    meta = read_metadata(source.path)
    report = protocol_report(meta, source.path, threat_model)
    flags = [Flag.from_dict(f) for f in report.get("flags") or []]
    if flags and not allow_flagged:
        raise RdistError(f"the recorded evaluation is flagged ({'; '.join(f.line() for f in flags[:3])}): RobustBench "
                         "would list numbers that may be gradient masking; investigate (`rdist attack --list`), or "
                         "export anyway with --allow-flagged, which marks the entry unreliable")
    provenance = meta.get("provenance") or {}
    name = title or (f"{provenance.get('method', 'rdist').upper()} {meta['arch']['name']} student"
                     + (f" of {model_label(str(provenance['teacher']))}" if provenance.get("teacher") else ""))
    info = model_info(meta, report, threat_model, name=name, link=link, authors=authors, venue=venue, flags=flags)
    command = (f"rdist attack {out.stem} --protocol robustbench" + ("" if threat_model == "Linf" else " --norm L2")
               if threat_model != "corruptions" else f"rdist attack {out.stem} --attacks corruptions --n 10000")
    text = issue_text(info, threat_model, command)
    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps(info, indent=2) + "\n")
    if issue is not None:
        with atomic_path(Path(issue).expanduser()) as tmp:
            tmp.write_text(text)
    return {"path": str(out), "model_info": info, "issue": text, "issue_path": str(issue) if issue else None,
            "issue_url": ISSUE_URL}
