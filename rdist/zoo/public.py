"""What a push publishes about the publisher's machine: nothing. Paths in an artifact's metadata and in a
reproduction's record (run directory, teachers, npz datasets, the files an attack report names) become names: a
file or directory name, or a path relative to the reproduction's directory. The local files keep their paths.

    provenance.teacher, natural_teacher, ... (a local file)  ->  its name without suffix, as the zoo lists teachers
    provenance.initial_weights (a local file)                ->  the same
    provenance.run_dir                                       ->  the run directory's name
    dataset, provenance.dataset, results.*.dataset (npz:)    ->  npz:FILE.npz (the file's name)
    results.*.model, results.*.surrogate                     ->  the file's name (zoo:, hf-hub: and RobustBench names
                                                                 stay)
    results keys                                             ->  made again from the rewritten reports
    any other text                                           ->  each absolute path in it reduced to its last part
"""

from __future__ import annotations

import re
from pathlib import Path, PurePath
from typing import Any

from rdist.artifact import report_key

# Model names that are no file of this machine: zoo:NAME, hf-hub:ORG/REPO[@REV] and hf://ORG/REPO[@REV][/FILE]
# (ZOO_PREFIX, hub.HF_HUB_PREFIX, hub.HF_URI_PREFIX).
_NAMED_MODELS = ("zoo:", "hf-hub:", "hf://")
# An absolute path: /..., ~/..., ~user/... or C:\... (not the // of a URL), where it starts a value or follows a
# separator; it runs to the next separator. A whole value that is one (spaces and all) is handled before this.
_ABSOLUTE = re.compile(r"(?<![\w.~/\\-])(?:~[\w.-]*|[A-Za-z]:)?[/\\](?![/\\])[^\s|,;\"'<>()\[\]{}]*")
_WHOLE = re.compile(r"(?P<prefix>[a-z][\w+-]*:)?(?P<path>(?:~[\w.-]*|[A-Za-z]:)?[/\\](?![/\\]).*)", re.S)


def public_text(text: str) -> str:
    """`text` with every absolute path in it reduced to its last part: "npz:/home/u/d.npz" -> "npz:d.npz"."""
    whole = _WHOLE.fullmatch(text)
    if whole:
        return (whole["prefix"] or "") + _last_part(whole["path"])
    return _ABSOLUTE.sub(lambda m: _last_part(m.group()), text)


def _last_part(path: str) -> str:
    return re.split(r"[/\\]", path.rstrip("/\\"))[-1]


def public(value: Any) -> Any:
    """`value` (JSON data) with `public_text` applied to every string, mapping keys included."""
    if isinstance(value, str):
        return public_text(value)
    if isinstance(value, dict):
        return {public_text(k) if isinstance(k, str) else k: public(v) for k, v in value.items()}
    if isinstance(value, list):
        return [public(v) for v in value]
    return value


def teacher_name(teacher: Any) -> str:
    """A teacher as the zoo shows it: a name, never a path on the publisher's machine."""
    if not teacher:
        return "none"
    text = str(teacher)
    if text.startswith(_NAMED_MODELS):
        return text
    return Path(text).stem if text.endswith(".safetensors") or "/" in text or "\\" in text else text


def model_name(model: Any) -> Any:
    """A model an attack report names (the attacked model, a surrogate): a zoo or Hub name as it is, a file by its
    file name."""
    if not isinstance(model, str) or model.startswith(_NAMED_MODELS):
        return model
    return PurePath(model.replace("\\", "/")).name or model


def public_metadata(meta: dict[str, Any]) -> dict[str, Any]:
    """An artifact's metadata as a push publishes it (see the module docstring)."""
    meta = dict(meta)
    provenance = dict(meta.get("provenance") or {})
    for key, value in provenance.items():
        if key in ("teacher", "initial_weights") or key.endswith("_teacher"):
            provenance[key] = teacher_name(value) if value else value
        elif key == "run_dir" and isinstance(value, str):
            provenance[key] = _last_part(value) or value
    if meta.get("provenance") is not None:
        meta["provenance"] = provenance
    results = {}
    for report in (meta.get("results") or {}).values():
        report = {**report, **{k: model_name(report[k]) for k in ("model", "surrogate") if k in report}}
        report = public(report)
        results[report_key(report)] = report
    if meta.get("results") is not None:
        meta["results"] = results
    return public(meta)


def public_reproduction(reproduction: dict[str, Any]) -> dict[str, Any]:
    """`rdist reproduce`'s result (`ReproductionResult.to_dict`) as a push publishes it: its directory by name,
    each seed's run directory and model relative to it."""
    out = PurePath(reproduction["out"])
    seeds = [{**seed, **{key: _relative(seed[key], out) for key in ("run_dir", "model") if key in seed}}
             for seed in reproduction.get("seeds", [])]
    return public({**reproduction, "out": out.name, "seeds": seeds})


def _relative(path: str, base: PurePath) -> str:
    try:
        return PurePath(path).relative_to(base).as_posix()
    except ValueError:
        return PurePath(path).name
