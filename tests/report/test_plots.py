"""The figures: what they draw (read back from the matplotlib objects) and the PNG files they become."""

from __future__ import annotations

import matplotlib.image
import pytest

from rdist.runs import EpochRecord, epoch_records
from rdist.errors import RdistError
from rdist.report.plots import eps_sweep_figure, size_figure, training_figure, write_plots
from rdist.files import check_output

COMPARISON = {
    "dataset": "digits", "n": 100, "eps": 8 / 255, "eps_text": "8/255", "attacks": ["clean", "pgd20"],
    "models": [
        {"label": "student", "params": 24058, "accuracy": {"clean": 0.9, "pgd20": 0.5}, "worst_case": 0.5},
        {"label": "teacher", "params": 140458, "accuracy": {"clean": 0.95, "pgd20": 0.6}, "worst_case": 0.6},
        {"label": "student-b", "params": 24058, "accuracy": {"clean": 0.8, "pgd20": 0.55}, "worst_case": 0.55},
    ],
    "sweep": {"attack": "pgd20", "eps": [0, 4 / 255, 8 / 255],
              "accuracy": {"student": [0.9, 0.7, 0.5], "teacher": [0.95, 0.8, 0.6], "student-b": [0.8, 0.7, 0.55]}},
}
LOG_LINES = [{"epoch": 1, "train_loss": 2.0, "train_clean_acc": 0.3, "train_robust_acc": 0.2, "val_clean_acc": 0.4,
              "val_pgd20_acc": 0.25},
             {"epoch": 2, "train_loss": 1.5, "train_clean_acc": 0.5, "train_robust_acc": 0.3, "val_clean_acc": None,
              "val_pgd20_acc": None},  # an epoch without evaluation (--eval-every 3)
             {"epoch": 3, "train_loss": 1.2, "train_clean_acc": 0.6, "train_robust_acc": 0.4, "val_clean_acc": 0.7,
              "val_pgd20_acc": 0.45}]
LOG = [EpochRecord.from_json(line) for line in LOG_LINES]


def test_eps_sweep_draws_a_line_per_model_in_percent():
    ax = eps_sweep_figure(COMPARISON).axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert list(lines["teacher"].get_xdata()) == pytest.approx([0, 4, 8])  # eps in units of 1/255
    assert list(lines["teacher"].get_ydata()) == pytest.approx([95, 80, 60])
    assert "eps" in ax.get_xlabel() and ax.get_ylabel() == "accuracy under pgd20 (%)"
    assert {t.get_text() for t in ax.get_legend().get_texts()} >= {"student", "teacher", "student-b"}


def test_size_figure_plots_clean_and_worst_case_against_parameters():
    ax = size_figure(COMPARISON).axes[0]
    assert ax.get_xscale() == "log" and ax.get_xlabel().startswith("parameters")
    points = [(line.get_xdata()[0], line.get_ydata()[0]) for line in ax.get_lines() if len(line.get_xdata()) == 1]
    ys = sorted(round(y, 6) for _, y in points)
    assert ys == sorted([90.0, 50.0, 95.0, 60.0, 80.0, 55.0])
    # The two students have the same size: drawn side by side, not on top of each other.
    student_xs = {round(x, 3) for x, y in points if round(y, 6) in (90.0, 50.0, 80.0, 55.0)}
    assert len(student_xs) == 2 and all(abs(x / 24058 - 1) < 0.1 for x in student_xs)
    assert {t.get_text() for t in ax.get_legend().get_texts()} >= {"student", "teacher", "clean"}


def test_training_figure_skips_epochs_without_evaluation():
    fig = training_figure({"run-a": LOG})
    loss_ax, _, robust_ax = fig.axes
    loss = loss_ax.get_lines()[0]
    assert list(loss.get_xdata()) == [1, 2, 3] and list(loss.get_ydata()) == [2.0, 1.5, 1.2]
    held_out, training = robust_ax.get_lines()[:2]
    assert list(held_out.get_xdata()) == [1, 3] and list(held_out.get_ydata()) == pytest.approx([25, 45])
    assert list(training.get_xdata()) == [1, 2, 3] and training.get_linestyle() == "--"
    assert [ax.get_xlabel() for ax in fig.axes] == ["epoch"] * 3
    legend = {t.get_text() for legend in fig.legends for t in legend.get_texts()}
    assert "run-a" in legend and "solid: held-out val set (robust: PGD-20)" in legend


def test_a_resumed_epoch_keeps_its_last_record():
    records = [EpochRecord(1, train_loss=3.0, partial=True), EpochRecord(1, train_loss=2.0), EpochRecord(2)]
    assert [r.train_loss for r in epoch_records(records)] == [2.0, None]


def test_write_plots_names_files_after_what_they_show(tmp_path):
    written = write_plots(COMPARISON, tmp_path / "figures", {"run-a": LOG})
    assert [p.name for p in written] == ["robust-accuracy-vs-eps-pgd20.png", "accuracy-vs-params.png",
                                         "training-curves.png"]
    for path in written:
        image = matplotlib.image.imread(path)
        assert image.shape[0] > 400 and image.shape[1] > 600  # a real, readable PNG
    assert not list((tmp_path / "figures").glob(".*"))  # no probe or temporary file left behind


def test_an_unwritable_plot_directory_is_refused(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(RdistError, match="cannot write to .*a-file/plots.*--plot"):
        check_output(blocker / "plots", "--plot", directory=True)
