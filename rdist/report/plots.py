"""PNG figures of a comparison: robust accuracy against eps, accuracy against model size, training curves.

Figures are drawn on matplotlib's Agg canvas directly, never through pyplot, so that importing rdist
changes no global backend and works without a display.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator

from rdist.files import atomic_path, check_output
from rdist.report.profile import format_count
from rdist.runs import EpochRecord, epoch_records
from rdist.utils import format_eps

DPI = 150
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f",
          "#bcbd22"]


def _color(i: int) -> str:
    return COLORS[i % len(COLORS)]


def save_png(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    FigureCanvasAgg(fig)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight")
    return path


def _legend_outside(ax, **kwargs) -> None:
    # Beside the axes, where no line or point can hide behind it.
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0, **kwargs)


def _subtitle(comparison: dict[str, Any]) -> str:
    return f"{comparison['dataset']}, first {comparison['n']} test images"


def eps_sweep_figure(comparison: dict[str, Any]) -> Figure:
    """Accuracy under the sweep's attack at each eps, one line per model, eps in units of 1/255 (L-inf) or in pixel
    units (L2)."""
    sweep = comparison["sweep"]
    linf = comparison.get("norm", "Linf") == "Linf"
    scale = 255 if linf else 1
    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    x = [scale * e for e in sweep["eps"]]
    spread = sweep.get("std", {})  # seed groups: error bars of one sample std
    for i, (label, acc) in enumerate(sweep["accuracy"].items()):
        std = spread.get(label)
        ax.plot(x, [100 * a for a in acc], marker="o", color=_color(i), label=label)
        if std and any(s is not None for s in std):
            ax.errorbar(x, [100 * a for a in acc], yerr=[100 * (s or 0.0) for s in std], fmt="none",
                        ecolor=_color(i), capsize=3)
    ax.axvline(scale * comparison["eps"], color="grey", linestyle=":",
               label=f"eps of the table ({comparison['eps_text']})")
    ax.set_xlabel("eps (L-inf budget, in units of 1/255)" if linf else "eps (L2 budget, [0, 1] pixel units)")
    ax.set_ylabel(f"accuracy under {sweep['attack']} (%)")
    ax.set_ylim(0, 100)
    ax.set_xticks(x if len(x) <= 12 else x[::2])
    labels = [format_eps(e).removesuffix("/255") if linf else f"{e:g}" for e in sweep["eps"]]
    ax.set_xticklabels(labels[::1 if len(x) <= 12 else 2])
    ax.grid(alpha=0.3)
    _legend_outside(ax)
    ax.set_title(f"Robust accuracy against eps ({sweep['attack']}; {_subtitle(comparison)})")
    return fig


def _dodged(params: list[int]) -> list[float]:
    """Models of the same size side by side (a few % apart on the log axis) instead of on top of each other."""
    seen: dict[int, int] = {}
    out = []
    for p in params:
        k = seen.get(p, 0)
        seen[p] = k + 1
        count = params.count(p)
        out.append(p * 10 ** (0.025 * (k - (count - 1) / 2)))
    return out


def size_figure(comparison: dict[str, Any]) -> Figure:
    """Clean and worst-case accuracy of each model against its parameter count (log scale)."""
    rows = comparison["models"]
    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    xs = _dodged([r["params"] for r in rows])
    for i, (r, x) in enumerate(zip(rows, xs)):
        clean = r["accuracy"].get("clean") if r["accuracy"].get("clean") is not None else r["worst_case"]
        if clean is None:
            continue
        # Seed groups (`--runs`) carry a sample std, drawn as error bars of one std. No worst case: an ONNX
        # file, on which the suite's gradient attacks cannot run.
        clean_std = (r.get("accuracy_std") or {}).get("clean") if "clean" in r["accuracy"] else r.get("worst_case_std")
        points = [(100 * clean, "white", clean_std)]
        if r["worst_case"] is not None:
            points.append((100 * r["worst_case"], None, r.get("worst_case_std")))
        ax.plot([x] * len(points), [y for y, _, _ in points], color=_color(i), alpha=0.5)
        for y, face, std in points:
            ax.plot(x, y, marker="o", markerfacecolor=face, markersize=8, color=_color(i), linestyle="none")
            if std:
                ax.errorbar([x], [y], yerr=[100 * std], fmt="none", ecolor=_color(i), capsize=3)
    ax.set_xscale("log")
    ax.margins(x=0.15)
    ax.xaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: format_count(v)))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
    ax.set_xlabel("parameters (log scale)")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3, which="both")
    worst_label = f"worst case over {', '.join(a for a in comparison['attacks'] if a != 'clean')}" \
        if len(comparison["attacks"]) > 1 else "worst case"
    handles = [Line2D([], [], color=_color(i), marker="o", linestyle="none", label=r["label"])
               for i, r in enumerate(rows)]
    handles += [Line2D([], [], color="black", marker="o", markerfacecolor="white", linestyle="none", label="clean"),
                Line2D([], [], color="black", marker="o", linestyle="none", label=worst_label)]
    _legend_outside(ax, handles=handles)
    ax.set_title(f"Accuracy against model size (eps {comparison['eps_text']}; {_subtitle(comparison)})")
    return fig


def per_class_figure(comparison: dict[str, Any]) -> Figure | None:
    """Worst-case accuracy of each class, a bar per model (clean accuracy as an outline behind it); None when no
    model has per-class numbers (results recorded before rdist measured them)."""
    rows = [r for r in comparison["models"] if (r.get("per_class") or {}).get("worst_case") and r["worst_case"]
            is not None]
    if not rows:
        return None
    classes = max(r["per_class"]["classes"] for r in rows)
    fig = Figure(figsize=(max(7.0, 0.45 * classes * len(rows) + 2), 4.5))
    ax = fig.add_subplot()
    width = 0.8 / len(rows)
    for i, r in enumerate(rows):
        worst = [100 * (v or 0.0) for v in r["per_class"]["worst_case"]]
        clean = r["per_class"]["accuracy"].get("clean")
        x = [k - 0.4 + (i + 0.5) * width for k in range(len(worst))]
        if clean:
            ax.bar(x, [100 * (v or 0.0) for v in clean], width, fill=False, edgecolor=_color(i), linewidth=0.8)
        ax.bar(x, worst, width, color=_color(i), label=f"{r['label']} (worst class {r['worst_class']['class']})")
    ax.set_xticks(range(classes))
    ax.set_xlabel("class")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3, axis="y")
    handles, labels = ax.get_legend_handles_labels()
    handles.append(Line2D([], [], color="black", linewidth=0.8, label="outline: clean accuracy"))
    _legend_outside(ax, handles=handles)
    ax.set_title(f"Worst-case accuracy per class (eps {comparison['eps_text']}; {_subtitle(comparison)})")
    return fig


def _series(records: list[EpochRecord], key: str) -> tuple[list[int], list[float]]:
    points = [(r.epoch, getattr(r, key)) for r in records if getattr(r, key) is not None]
    return [p[0] for p in points], [p[1] for p in points]


def training_figure(runs: dict[str, list[EpochRecord]]) -> Figure:
    """Loss, clean accuracy and PGD accuracy per epoch, one colour per run; solid: held-out data, dashed: training."""
    fig = Figure(figsize=(15, 4.6))
    loss_ax, clean_ax, robust_ax = fig.subplots(1, 3)
    splits = set()
    for i, records in enumerate(runs.values()):
        records = epoch_records(records)
        splits.update(r.split for r in records)
        color = _color(i)
        loss_ax.plot(*_series(records, "train_loss"), color=color, marker=".")
        for ax, held_out, train in ((clean_ax, "clean_acc", "train_clean_acc"),
                                    (robust_ax, "pgd20_acc", "train_robust_acc")):
            epochs, acc = _series(records, held_out)
            ax.plot(epochs, [100 * a for a in acc], color=color, marker=".")
            epochs, acc = _series(records, train)
            ax.plot(epochs, [100 * a for a in acc], color=color, linestyle="--", alpha=0.7)
    loss_ax.set_title("training loss")
    loss_ax.set_ylabel("loss (the method's objective)")
    clean_ax.set_title("clean accuracy")
    robust_ax.set_title("robust accuracy")
    for ax in (loss_ax, clean_ax, robust_ax):
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    for ax in (clean_ax, robust_ax):
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(0, 100)
    # One legend under the panels, where it hides no curve: a colour per run, then what solid and dashed mean.
    colours = [Line2D([], [], color=_color(i), marker=".", label=label) for i, label in enumerate(runs)]
    styles = [Line2D([], [], color="black", label=f"solid: held-out {'/'.join(sorted(splits))} set (robust: PGD-20)"),
              Line2D([], [], color="black", linestyle="--",
                     label="dashed: training batches (robust: the method's own attack)")]
    fig.legend(handles=colours, loc="upper center", bbox_to_anchor=(0.5, 0.03), ncol=min(len(colours), 6),
               frameon=False)
    fig.legend(handles=styles, loc="upper center", bbox_to_anchor=(0.5, -0.03), ncol=2, frameon=False)
    fig.suptitle("Training curves: " + ", ".join(runs))
    return fig


def write_plots(comparison: dict[str, Any], directory: str | Path,
                runs: dict[str, list[EpochRecord]] | None = None) -> list[Path]:
    """Every figure the comparison supports, named after what it shows; returns their paths."""
    directory = check_output(directory, "--plot", directory=True)
    figures = {}
    if "sweep" in comparison:
        figures[f"robust-accuracy-vs-eps-{comparison['sweep']['attack']}.png"] = eps_sweep_figure(comparison)
    figures["accuracy-vs-params.png"] = size_figure(comparison)
    classes = per_class_figure(comparison)
    if classes is not None:
        figures["per-class-accuracy.png"] = classes
    if runs:
        figures["training-curves.png"] = training_figure(runs)
    return [save_png(fig, directory / name) for name, fig in figures.items()]
