"""`compare_models` on real digits artifacts: the numbers, their reuse, the provenance, the refusals, the exports."""

from __future__ import annotations

import csv
import io
import json
import shutil

import pytest

from rdist.artifact import read_metadata, results_key, update_metadata
from rdist.attacks import SUITES
from rdist.errors import RdistError
from rdist.report.compare import compare_models, parse_sweep, training_logs
from rdist.report.config import EvalConfig
from rdist.report.render import to_csv, to_markdown
from rdist.report.robustness import robustness_report
from tests.report.conftest import EPS, EPS_VALUE

N = 100


@pytest.fixture(scope="module")
def comparison(natural_artifact, robust_artifact):
    return compare_models([str(natural_artifact), str(robust_artifact)], EvalConfig(attacks=SUITES["quick"], eps=EPS,
                          n=N), sweep="0:32/255:16/255")


def test_a_row_per_model_with_size_speed_robustness_and_provenance(comparison):
    natural, robust = comparison.models
    assert (natural.label, robust.label) == ("natural", "robust")
    assert comparison.attacks == ["clean", "fgsm", "pgd20"] and comparison.n == N
    assert comparison.dataset == "digits" and comparison.to_dict()["eps_text"] == "32/255"
    for row in (natural, robust):
        assert row.arch == "tinycnn" and row.profile["params"] == 24058 and row.profile["macs"] > 24058
        assert row.profile["latency_ms"]["cpu"] > 0
        assert set(row.accuracy) == {"clean", "fgsm", "pgd20"}
        assert row.worst_case <= min(row.accuracy.values())
        assert row.reused is False and row.members is None
    assert (natural.method, natural.teacher, natural.epochs) == ("natural", None, 4)
    assert (robust.method, robust.teacher, robust.epochs) == ("sat", "natural", 4)


def test_the_json_is_the_comparison_s_fields_with_a_row_s_profile_inline(comparison):
    """`rdist compare --json`: the settings, eps also as text, each row's profile among its own fields."""
    data = json.loads(json.dumps(comparison.to_dict()))
    assert list(data) == ["dataset", "eps", "eps_text", "norm", "n", "seed", "attacks", "surrogate", "edge", "models",
                          "sweep"]
    row = data["models"][1]
    assert list(row) == ["label", "model", "run_dir", "arch", "num_classes", "runtime", "file_bytes",
                         *comparison.models[1].profile, "input_shape", "accuracy", "worst_case", "worst_class",
                         "per_class", "flags", "reused", "method", "teacher", "epochs"]
    assert row["params"] == 24058 and row["accuracy"] == comparison.models[1].accuracy
    assert data["sweep"] == {"attack": "pgd20", "eps": comparison.sweep.eps, "accuracy": comparison.sweep.accuracy}


def test_adversarial_training_shows_in_the_table(comparison):
    natural, robust = comparison.models
    assert natural.accuracy["clean"] > 0.8
    assert robust.accuracy["pgd20"] > natural.accuracy["pgd20"] + 0.2


def test_the_numbers_are_those_of_rdist_attack(comparison, robust_artifact):
    report = robustness_report(str(robust_artifact), EvalConfig(attacks=SUITES["quick"], eps=EPS, n=N)).to_dict()
    row = comparison.models[1]
    assert row.accuracy == report["accuracy"] and row.worst_case == report["worst_case"]


def test_the_sweep_starts_at_clean_accuracy_and_reuses_the_table(comparison):
    sweep = comparison.sweep
    assert sweep.attack == "pgd20" and sweep.eps == pytest.approx([0, 16 / 255, 32 / 255]) and sweep.std is None
    for row in comparison.models:
        at_zero, _, at_table_eps = sweep.accuracy[row.label]
        assert at_zero == pytest.approx(row.accuracy["clean"])  # no budget, no change
        assert at_table_eps == row.accuracy["pgd20"]


def test_recorded_results_are_reused_and_fresh_recomputes(robust_artifact, tmp_path):
    model = shutil.copy(robust_artifact, tmp_path / "robust.safetensors")
    attacks = ["clean", "pgd20"]
    planted = {"dataset": "digits", "attacks": attacks, "eps": EPS_VALUE, "n": N,
               "accuracy": {"clean": 0.5, "pgd20": 0.123}, "worst_case": 0.123}
    update_metadata(model, results={results_key(attacks, "digits", EPS_VALUE, N): planted})
    reused = compare_models([str(model)], EvalConfig(attacks="clean,pgd20", eps=EPS, n=N)).models[0]
    assert reused.reused is True and reused.accuracy == {"clean": 0.5, "pgd20": 0.123}
    fresh = compare_models([str(model)], EvalConfig(attacks="clean,pgd20", eps=EPS, n=N), fresh=True).models[0]
    assert fresh.reused is False and fresh.accuracy["pgd20"] != 0.123


def test_record_stores_results_that_the_next_comparison_reuses(robust_artifact, tmp_path):
    model = shutil.copy(robust_artifact, tmp_path / "robust.safetensors")
    first = compare_models([str(model)], EvalConfig(attacks="clean,fgsm", eps=EPS, n=50), record=True).models[0]
    key = results_key(["clean", "fgsm"], "digits", EPS_VALUE, 50)
    assert read_metadata(model)["results"][key]["accuracy"] == first.accuracy
    second = compare_models([str(model)], EvalConfig(attacks="clean,fgsm", eps=EPS, n=50)).models[0]
    assert second.reused is True and second.accuracy == first.accuracy


def test_n_beyond_the_test_set_uses_the_whole_test_set(natural_artifact, digits):
    comparison = compare_models([str(natural_artifact)], EvalConfig(attacks="clean", n=100_000))
    assert comparison.n == len(digits.y_test)


def test_different_class_counts_are_refused_naming_each_model(natural_artifact, five_class_artifact):
    with pytest.raises(RdistError, match="natural has 10 classes, five-classes has 5 classes"):
        compare_models([str(natural_artifact), str(five_class_artifact)], EvalConfig(attacks="clean", n=10))


def test_models_trained_on_different_data_need_data(natural_artifact, robust_artifact, tmp_path):
    other = shutil.copy(robust_artifact, tmp_path / "other.safetensors")
    update_metadata(other, dataset="npz:elsewhere.npz")
    with pytest.raises(RdistError, match="different data .*natural: digits, other: npz:elsewhere.npz.*--data"):
        compare_models([str(natural_artifact), str(other)], EvalConfig(attacks="clean", n=10))
    # With --data both are evaluated on digits, which fits both (same classes, same image shape).
    assert len(compare_models([str(natural_artifact), str(other)], EvalConfig(attacks="clean", n=10, data="digits")
                              ).models) == 2


def test_a_model_given_twice_is_refused(natural_artifact):
    with pytest.raises(RdistError, match="more than once"):
        compare_models([str(natural_artifact), str(natural_artifact)], EvalConfig(attacks="clean", n=10))


def test_run_directories_compare_their_best_checkpoint(run_dir):
    comparison = compare_models([str(run_dir)], EvalConfig(attacks="clean,pgd20", n=50), runs=True)
    (row,) = comparison.models
    assert row.label == run_dir.name and row.model.endswith("best.safetensors")
    assert row.method == "natural" and row.reused is False  # the run selected on val, not on test
    assert row.seeds == [0] and [m.label for m in row.members] == [run_dir.name] and row.accuracy_std == {
        "clean": None, "pgd20": None}, "a group of one run"
    assert list(comparison.to_dict()["models"][0])[-4:] == ["accuracy_std", "worst_case_std", "seeds", "members"]
    logs = training_logs(comparison)
    assert [r.epoch for r in logs[run_dir.name]] == [1, 2]


def test_a_run_directory_without_a_log_is_refused(tmp_path):
    (tmp_path / "not-a-run").mkdir()
    with pytest.raises(RdistError, match="has no log.jsonl"):
        compare_models([str(tmp_path / "not-a-run")], EvalConfig(attacks="clean"), runs=True)


def test_a_directory_without_runs_points_to_runs(run_dir):
    with pytest.raises(RdistError, match="pass --runs"):
        compare_models([str(run_dir)], EvalConfig(attacks="clean"))


def test_markdown_is_a_table_with_a_caption(comparison):
    text = to_markdown(comparison.to_dict())
    lines = text.splitlines()
    assert lines[0] == ("| model | arch | params | MACs | CPU ms | clean | fgsm | pgd20 | worst case | worst class | "
                        "method | teacher | epochs |")
    assert lines[1].startswith("| --- | --- | ---: |")
    robust = comparison.models[1]
    assert lines[3].startswith("| robust | tinycnn | 24.1k | ") and f"| {100 * robust.worst_case:.2f} |" in lines[3]
    assert lines[4] == "" and "first 100 test images of digits at eps=32/255" in lines[5]


def test_csv_holds_the_raw_numbers(comparison):
    rows = list(csv.DictReader(io.StringIO(to_csv(comparison.to_dict()))))
    assert [r["model"] for r in rows] == ["natural", "robust"]
    for row, model in zip(rows, comparison.models):
        assert int(row["params"]) == model.profile["params"] and int(row["macs"]) == model.profile["macs"]
        assert float(row["pgd20"]) == pytest.approx(model.accuracy["pgd20"])
        assert float(row["worst_case"]) == pytest.approx(model.worst_case)
        assert row["eps"] == "32/255" and row["dataset"] == "digits"


@pytest.mark.parametrize("text, expected", [
    ("0:16/255:2/255", [2 * k / 255 for k in range(9)]),
    ("0,8/255,4/255", [0, 4 / 255, 8 / 255]),
    ("0.1", [0.1]),
])
def test_parse_sweep(text, expected):
    assert parse_sweep(text) == pytest.approx(expected)


@pytest.mark.parametrize("text, message", [("0:16/255", "START:STOP:STEP"), ("16/255:0:2/255", "empty"),
                                           ("0:16/255:0", "empty"), ("8", "did you mean 8/255")])
def test_parse_sweep_refuses_bad_input(text, message):
    with pytest.raises(RdistError, match=message):
        parse_sweep(text)


def test_a_name_that_is_no_file_is_read_as_a_teacher_name():
    with pytest.raises(RdistError, match="'no-such-model' is not a file, so it was read as a RobustBench teacher"):
        compare_models(["no-such-model"], EvalConfig(attacks="clean"))
