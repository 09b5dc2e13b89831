"""`rdist compare` end to end on real artifacts: exports, plots, and one-line errors for bad input."""

from __future__ import annotations

import json

from tests.report.conftest import EPS


def test_exports_markdown_csv_and_json(cli, natural_artifact, robust_artifact, tmp_path):
    md, csv = tmp_path / "out" / "table.md", tmp_path / "out" / "table.csv"
    result = cli("compare", "--suite", "quick", "--eps", EPS, "--n", "60", "--md", md, "--csv", csv, "--json",
                 natural_artifact, robust_artifact)
    comparison = json.loads(result.stdout)
    assert [m["label"] for m in comparison["models"]] == ["natural", "robust"]
    assert comparison["files"] == [str(csv), str(md)]
    table = md.read_text().splitlines()
    assert table[0].startswith("| model | arch | params | MACs |") and table[3].startswith("| robust | tinycnn |")
    assert csv.read_text().splitlines()[0].startswith("model,path,arch,params,macs,cpu_ms,clean,fgsm,pgd20,worst_case")


def test_markdown_to_stdout(cli, natural_artifact):
    result = cli("compare", "--attacks", "clean", "--n", "20", "--md", "-", "-q", str(natural_artifact))
    assert result.stdout.startswith("| model | arch |") and "| natural | tinycnn |" in result.stdout


def test_the_table_is_printed_whole(cli, natural_artifact, robust_artifact):
    result = cli("compare", "--attacks", "clean,fgsm", "--eps", EPS, "--n", "20", "-q", str(natural_artifact),
                 str(robust_artifact))
    for text in ("natural", "robust", "tinycnn", "24.1k", "157k", "worst case", "sat"):
        assert text in result.stdout
    assert "…" not in result.stdout  # no cell cropped, whatever the width of the output


def test_runs_with_plots_draw_every_figure(cli, run_dir, tmp_path):
    figures = tmp_path / "figures"
    result = cli("compare", "--runs", str(run_dir), "--attacks", "clean,pgd20", "--n", "30", "--sweep", "0,8/255",
                 "--plot", str(figures), "-q")
    assert sorted(p.name for p in figures.iterdir()) == ["accuracy-vs-params.png", "per-class-accuracy.png",
                                                         "robust-accuracy-vs-eps-pgd20.png", "training-curves.png"]
    assert f"wrote {figures / 'training-curves.png'}" in result.stdout


def test_different_class_counts_fail_in_one_line(cli, natural_artifact, five_class_artifact):
    cli.fails(["compare", "--attacks", "clean", str(natural_artifact), str(five_class_artifact)],
              "natural has 10 classes", "five-classes has 5 classes")


def test_a_runs_directory_without_a_log_fails_in_one_line(cli, tmp_path):
    empty = tmp_path / "empty-run"
    empty.mkdir()
    cli.fails(["compare", "--runs", str(empty)], "has no log.jsonl")


def test_an_unwritable_plot_directory_fails_before_any_attack(cli, natural_artifact, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = cli.fails(["compare", "--plot", blocker / "figures", natural_artifact], "cannot write to", "--plot")
    assert "clean" not in result.stderr  # failed before the progress bar of the first attack


def test_two_exports_to_stdout_are_refused(cli, natural_artifact):
    cli.fails(["compare", "--json", "--md", "-", str(natural_artifact)], "--json and --md -")
