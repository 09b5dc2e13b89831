"""A comparison laid out for people: one table, rendered for the terminal (rich), Markdown or CSV.

Every rendering starts from `table`, so the columns, units and rounding are the same everywhere.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from rich import box
from rich.table import Table

from rdist.attacks.base import NORM_TEXT
from rdist.attacks.flags import Flag
from rdist.report.profile import format_count

# Columns holding text; every other column holds a number and is right-aligned.
TEXT_COLUMNS = ("model", "arch", "runtime", "method", "teacher")


def _ms(value: float) -> str:
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


def _seeded(comparison: dict[str, Any]) -> bool:
    """Whether the rows are seed groups (`--runs`): their accuracies are means, with a std and a seed count."""
    return any("seeds" in r for r in comparison["models"])


def _percent(mean: float | None, std: float | None = None) -> str:
    """An accuracy in %, with its std over seeds; "-" for an attack that does not apply (a gradient attack on
    an ONNX file)."""
    if mean is None:
        return "-"
    return f"{100 * mean:.2f}" + (f" ± {100 * std:.2f}" if std is not None else "")


def footnotes(comparison: dict[str, Any]) -> dict[tuple[str, str | None], int]:
    """A footnote number per (model label, attack or None for the model) that a flag concerns, in table order."""
    numbers: dict[tuple[str, str | None], int] = {}
    for r in comparison["models"]:
        for flag in r.get("flags") or []:
            numbers.setdefault((r["label"], flag.get("attack")), len(numbers) + 1)
    return numbers


def _worst_class(value: dict[str, Any] | None) -> str:
    return "-" if not value else f"{100 * value['accuracy']:.2f} ({value['class']})"


def table(comparison: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the comparison as text: sizes in k/M/G, latency in ms per image, accuracy in %
    (mean ± std over the seeds of a seed group), and the worst class: its worst-case accuracy (the class).

    With an ONNX file among the models, also the runtime, the file size in MB and the all-thread CPU latency;
    "-" marks an attack that does not apply and a count that is unknown. A flag (rdist.attacks.flags) puts a
    footnote mark [k] on the number it concerns, or on the model's name for the model's own flags; `caption`
    lists them.
    """
    rows = comparison["models"]
    gpu = any("cuda" in r["latency_ms"] for r in rows)
    edge = comparison.get("edge", False)
    seeded = _seeded(comparison)
    marks = footnotes(comparison)

    def marked(text: str, label: str, attack: str | None) -> str:
        return f"{text} [{marks[label, attack]}]" if (label, attack) in marks else text

    header = ["model", "arch", *(["runtime"] if edge else []), "params", "MACs", *(["MB"] if edge else []),
              "CPU ms", *(["CPU ms all"] if edge else []), *(["GPU ms"] if gpu else []),
              *comparison["attacks"], "worst case", "worst class", *(["seeds"] if seeded else []), "method",
              "teacher", "epochs"]
    body = []
    for r in rows:
        latency = [_ms(r["latency_ms"]["cpu"]), *([_ms(r["latency_ms"]["cpu_all"])] if edge else [])]
        if gpu:
            latency.append(_ms(r["latency_ms"]["cuda"]) if "cuda" in r["latency_ms"] else "-")
        label = r["label"]
        body.append([marked(label, label, None), r["arch"], *([r["runtime"]] if edge else []),
                     format_count(r["params"]), format_count(r["macs"]) if r["macs"] is not None else "-",
                     *([f"{r['file_bytes'] / 1e6:.3g}"] if edge else []), *latency,
                     *(marked(_percent(r["accuracy"][a], r.get("accuracy_std", {}).get(a)), label, a)
                       for a in comparison["attacks"]),
                     _percent(r["worst_case"], r.get("worst_case_std")), _worst_class(r.get("worst_class")),
                     *([str(len(r["seeds"]))] if seeded else []),
                     *(str(r[k]) if r[k] is not None else "-" for k in ("method", "teacher", "epochs"))])
    return header, body


def caption(comparison: dict[str, Any]) -> str:
    threads = comparison["models"][0]["cpu_threads"]
    seeds = "; runs that differ only by seed are one row, mean ± sample std over its seeds" \
        if _seeded(comparison) else ""
    norm = NORM_TEXT[comparison.get("norm", "Linf")]
    text = (f"Accuracy (%) on the first {comparison['n']} test images of {comparison['dataset']} at "
            f"eps={comparison['eps_text']} ({norm}, seed {comparison['seed']}); worst case: robust to every attack"
            f"{seeds}. "
            f"Latency: median ms per image at batch size 1 (CPU: {threads} thread{'s' if threads > 1 else ''}"
            + (f"; all: {comparison['models'][0]['cpu_threads_all']} threads" if comparison.get("edge") else "")
            + "). MACs at the input size.")
    if comparison.get("edge"):
        text += (" ONNX rows run in ONNX Runtime on the CPU; MB: file size on disk; '-': an attack that needs "
                 "the model's gradients, which ONNX Runtime does not give.")
    if comparison.get("surrogate") and any(a.startswith("transfer-") for a in comparison["attacks"]):
        text += f" Transfer attacks crafted on {comparison['surrogate']}."
    text += " Worst class: the lowest worst-case accuracy of a class (the class)."
    marks = footnotes(comparison)
    if marks:
        text += " Flags (signs of gradient masking or a failed attack; `rdist attack --list` explains them):"
        for r in comparison["models"]:
            for flag in r.get("flags") or []:
                seed = f", seed {flag['seed']}" if "seed" in flag else ""
                text += (f" [{marks[r['label'], flag.get('attack')]}] {r['label']}{seed}: "
                         f"{Flag.from_dict(flag).line()}.")
    return text


def rich_table(comparison: dict[str, Any], width: int | None = None) -> tuple[Table, int]:
    """(the table for a terminal, the width its row-per-model layout needs).

    A row per model; when `width` (the terminal's) is too narrow for that, a column per model instead.
    """
    header, body = table(comparison)
    widths = [max(len(text) for text in column) for column in zip(header, *body)]
    needed = sum(widths) + 3 * len(widths) + 2  # padding and the space between columns
    if width is not None and needed > width:
        out = Table("", *(cells[0] for cells in body), caption=caption(comparison), caption_justify="left",
                    box=box.SIMPLE_HEAD)
        for i, name in enumerate(header[1:], 1):
            out.add_row(name, *(cells[i] for cells in body), style="bold" if name == "worst case" else None)
        return out, needed
    out = Table(caption=caption(comparison), caption_justify="left", box=box.SIMPLE_HEAD)
    for name in header:
        out.add_column(name, justify="left" if name in TEXT_COLUMNS else "right", no_wrap=True,
                       style="bold" if name == "worst case" else None)
    for cells in body:
        out.add_row(*cells)
    return out, needed


def to_markdown(comparison: dict[str, Any]) -> str:
    header, body = table(comparison)
    align = ["---" if h in TEXT_COLUMNS else "---:" for h in header]
    lines = ["| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |" for cells in (header, align, *body)]
    return "\n".join(lines) + "\n\n" + caption(comparison) + "\n"


def _fraction(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


def to_csv(comparison: dict[str, Any]) -> str:
    """Raw numbers, one row per model: accuracies as fractions, latency in ms, sizes as integers."""
    attacks = comparison["attacks"]
    gpu = any("cuda" in r["latency_ms"] for r in comparison["models"])
    edge = comparison.get("edge", False)
    seeded = _seeded(comparison)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    spread = [*(f"{a}_std" for a in attacks), "worst_case_std", "seeds", "seed_list"] if seeded else []
    writer.writerow(["model", "path", "arch", *(["runtime"] if edge else []), "params", "macs",
                     *(["file_bytes"] if edge else []), "cpu_ms", *(["cpu_ms_all"] if edge else []),
                     *(["gpu_ms"] if gpu else []), *attacks, "worst_case", "worst_class", "worst_class_accuracy",
                     *spread, "method", "teacher", "epochs", "dataset", "eps", "norm", "n", "reused", "flags"])
    for r in comparison["models"]:
        spread = [*(_fraction(r["accuracy_std"][a]) for a in attacks), _fraction(r["worst_case_std"]),
                  len(r["seeds"]), " ".join(map(str, r["seeds"]))] if seeded else []
        writer.writerow([r["label"], r["model"], r["arch"], *([r["runtime"]] if edge else []), r["params"],
                         r["macs"] if r["macs"] is not None else "", *([r["file_bytes"]] if edge else []),
                         r["latency_ms"]["cpu"], *([r["latency_ms"]["cpu_all"]] if edge else []),
                         *([r["latency_ms"].get("cuda", "")] if gpu else []),
                         *(_fraction(r["accuracy"][a]) for a in attacks), _fraction(r["worst_case"]),
                         *((worst["class"], _fraction(worst["accuracy"])) if (worst := r.get("worst_class"))
                           else ("", "")), *spread,
                         r["method"] or "", r["teacher"] or "", r["epochs"] if r["epochs"] is not None else "",
                         comparison["dataset"], comparison["eps_text"], comparison.get("norm", "Linf"),
                         comparison["n"], r["reused"],
                         ";".join(f"{f['name']}({f['attack']})" if f.get("attack") else f["name"]
                                  for f in r.get("flags") or [])])
    return out.getvalue()
