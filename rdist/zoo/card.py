"""What a published student's Hub repo holds besides the weights: config.json and a model card.

The card's YAML header carries the measured accuracies in the Hub's `model-index` format (built
with huggingface_hub's own ModelCardData), so the Hub shows them and tools can read them back, and what the Hub
files a model under: its licence, the task (`pipeline_tag: image-classification`) and the library (rdist). It
never names the teacher as `base_model`: the Hub would show the student as a fine-tune of the teacher, which it
is not (distillation trains a new network); the card's text names the teacher instead.
"""

from __future__ import annotations

import json

from rdist.attacks.base import NORM_TEXT
from rdist.attacks.flags import Flag
from rdist.zoo.catalogue import ZooEntry

DATASET_NAMES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "svhn": "SVHN", "tiny-imagenet": "Tiny-ImageNet",
                 "digits": "digits (scikit-learn)"}
# metric -> (model-index name, config); all three are accuracies in percent on the test set.
_METRICS = {"clean": ("Clean accuracy", "clean"), "pgd20": ("PGD-20 accuracy", "pgd20"),
            "aa": ("AutoAttack accuracy", "autoattack")}
PIPELINE_TAG = "image-classification"
DEFAULT_LICENSE = "mit"  # rdist's own; `rdist zoo push --license` names another


def config_json(entry: ZooEntry, meta: dict, eps_text: str, reproduction: dict | None = None,
                flags: list[Flag] | None = None) -> bytes:
    """The artifact's description without the full attack reports: enough to rebuild and judge the model (and the
    flags its measured report raised, when it was published with them)."""
    config = {"library": "rdist", "name": entry.name, "format": meta["format"],
              "format_version": meta["format_version"], "arch": meta["arch"], "dataset": entry.dataset,
              "input_shape": meta.get("input_shape"),
              # `meta` as published (rdist.zoo.public); the teacher as the entry names it (--teacher may rename it).
              "provenance": {**meta.get("provenance", {}), "teacher": entry.teacher},
              "results": {**entry.results, "eps": eps_text, "unit": "percent"}, "command": entry.command}
    if reproduction is not None:
        config["reproduction"] = reproduction
    if flags:
        config["flags"] = [f.to_dict() for f in flags]
    return (json.dumps(config, indent=2) + "\n").encode()


def flags_section(flags: list[Flag]) -> str:
    """The card's warning: the measured report raised attack-failure flags and was published anyway."""
    lines = "\n".join(f"- **{f.name}**{f' ({f.attack})' if f.attack else ''}: {f.message}" for f in flags)
    return f"""
## Flags: read before trusting these numbers

This model was published with `--allow-flagged`: the evaluation that measured it raised these signs of gradient
masking or a failed attack (rdist's attack-failure checks; `rdist attack --list` says what each means), so the
accuracies above may overstate its robustness.

{lines}
"""


def reproduction_section(reproduction: dict) -> str:
    """What `rdist reproduce` measured over its seeds beside the paper's numbers (`ReproductionResult.to_dict`)."""
    source = reproduction["source"]
    seeds = ",".join(str(s["seed"]) for s in reproduction["seeds"])
    lines = []
    for metric, (name, _) in _METRICS.items():
        row = reproduction["summary"][metric]
        std = f" ± {row['std']:.2f}" if row["std"] is not None else ""
        published = f"{row['published']:.2f}%" if row["published"] is not None else "-"
        lines.append(f"| {name} | {published} | {row['mean']:.2f}%{std} |")
    rows = "\n".join(lines)
    url = f" ({source['url']})" if source.get("url") else ""
    return f"""
## Reproduction

This model is the best seed (by AutoAttack accuracy) of `rdist reproduce {reproduction['name']} --seeds {seeds}`
(checkpoint selected on the {reproduction['select_on']} split), on the first {reproduction['evaluation']['n']}
test images. Published: {source['paper']}{url}, {source['table']}.

| metric | published | measured, mean ± std over seeds {seeds} |
|---|---|---|
{rows}
"""


def model_card(entry: ZooEntry, eps_text: str, reproduction: dict | None = None,
               flags: list[Flag] | None = None, norm: str = "Linf", license: str = DEFAULT_LICENSE) -> str:
    from huggingface_hub import EvalResult, ModelCardData

    dataset = DATASET_NAMES.get(entry.dataset, entry.dataset)
    attack = {"norm": norm, "eps": eps_text}
    results = [EvalResult(task_type="image-classification", task_name="Image Classification",
                          dataset_type=entry.dataset, dataset_name=dataset, dataset_split="test",
                          metric_type="accuracy", metric_value=entry.results[metric], metric_name=name,
                          metric_config=config, metric_args=None if metric == "clean" else attack)
               for metric, (name, config) in _METRICS.items()]
    data = ModelCardData(library_name="rdist", license=license, pipeline_tag=PIPELINE_TAG, model_name=entry.name,
                         eval_results=results,
                         tags=["adversarial-robustness", "robustness-distillation", "rdist", entry.method],
                         datasets=[entry.dataset])
    rows = "\n".join(f"| {name} | {entry.results[metric]:.2f}% |" for metric, (name, _) in _METRICS.items())
    return f"""---
{data.to_yaml()}
---

# {entry.name}

A {entry.arch} student for {dataset}, trained by `rdist` with the **{entry.method}** method from the
teacher **{entry.teacher}**. Inputs are images with pixel values in [0, 1]; any normalisation is
inside the model.

## Robustness ({NORM_TEXT[norm]}, eps {eps_text}, test set)

| metric | accuracy |
|---|---|
{rows}

Measured with:

```
{entry.command}
```
{flags_section(flags) if flags else ""}{reproduction_section(reproduction) if reproduction is not None else ""}
## Use

With rdist installed:

```
rdist zoo pull {entry.name}
rdist attack zoo:{entry.name}
```

or in Python: `rdist.load_model(path)` on the downloaded `{entry.file}` (a safetensors file with
self-describing metadata; loading it never unpickles code).
"""
