"""The loop's outputs and its refusals: artifacts with provenance, the JSONL log, selection, max_steps, SWA,
teacher checks and the non-finite-loss stop."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

import rdist
from rdist.artifact import read_metadata
from rdist.engine import BEST, CHECKPOINT, LAST, LOG, TrainConfig, load_checkpoint, read_log, train
from rdist.errors import RdistError


def test_run_writes_log_best_and_last_with_provenance(short_run, robust_teacher, tmp_path):
    result = train(short_run(tmp_path, epochs=3))

    log = read_log(tmp_path / LOG)
    assert [r["epoch"] for r in log] == [1, 2, 3] and not any(r["partial"] for r in log)
    for record in log:
        assert {"lr", "train_loss", "train_clean_acc", "train_robust_acc", "val_clean_acc", "val_pgd20_acc",
                "seconds", "images_per_s"} <= set(record)
        assert 0 <= record["val_pgd20_acc"] <= record["val_clean_acc"] <= 1
    assert [r["lr"] for r in log] == pytest.approx([0.1, 0.1, 0.01])  # milestones at 50% and 75% of 3 epochs
    best_epoch = max(log, key=lambda r: r["val_pgd20_acc"])["epoch"]
    assert result.best_epoch == best_epoch and result.epochs_done == 3 and result.stopped_by == "epochs"

    best, last = read_metadata(tmp_path / BEST), read_metadata(tmp_path / LAST)
    assert best["provenance"]["epoch"] == best_epoch and last["provenance"]["epoch"] == 3
    provenance = last["provenance"]
    assert provenance["teacher"] == str(robust_teacher.resolve()) and provenance["teacher_arch"] == "smallcnn"
    assert provenance["selection"]["on"] == "val" and provenance["selection"]["n"] == 64
    assert provenance["method_config"] == {"method": "rslad", "eps": 8 / 255, "step_size": 2 / 255, "steps": 3,
                                           "kl_scale": 0.1}
    assert best["dataset"] == "digits" and best["input_shape"] == [1, 8, 8]
    (report,) = best["results"].values()
    assert report["split"] == "val" and report["accuracy"]["pgd20"] == pytest.approx(result.best_acc)
    # The artifact is a usable model, the same weights the checkpoint holds at the end.
    state = load_checkpoint(tmp_path)
    assert state["epoch"] == 3 and state["global_step"] == result.global_step
    weights = load_file(str(tmp_path / LAST))
    assert all(torch.equal(weights[k], v.float()) for k, v in state["model"].items())
    assert rdist.load_model(tmp_path / BEST).rdist_meta["provenance"]["selection"]["checkpoint"] == "best"


def test_select_on_test_trains_on_all_training_data_and_says_so(short_run, tmp_path):
    digits = rdist.load_dataset("digits")
    result = train(short_run(tmp_path, epochs=1, select_on="test", eval_n=10_000))
    (record,) = read_log(tmp_path / LOG)
    assert record["test_pgd20_acc"] is not None and "val_pgd20_acc" not in record
    assert record["eval_n"] == len(digits.y_test)
    assert result.global_step == -(-len(digits.y_train) // 64)  # every training image trains
    assert read_metadata(tmp_path / BEST)["provenance"]["selection"]["on"] == "test"


def test_max_steps_stops_mid_epoch_saves_artifacts_but_no_checkpoint(short_run, tmp_path):
    result = train(short_run(tmp_path, epochs=2, max_steps=5))
    assert result.stopped_by == "max_steps" and result.global_step == 5 and result.epochs_done == 0
    (record,) = read_log(tmp_path / LOG)
    assert record["partial"] and record["val_pgd20_acc"] is not None
    assert (tmp_path / LAST).is_file() and (tmp_path / BEST).is_file()
    assert not (tmp_path / CHECKPOINT).exists()  # a checkpoint is only ever an epoch boundary


def test_swa_averages_weights_and_recomputes_bn_statistics(short_run, natural_teacher, tmp_path):
    train(short_run(tmp_path, method="akd2", natural_teacher=str(natural_teacher), epochs=3, swa_start=2))
    log = read_log(tmp_path / LOG)
    assert [r["swa"] for r in log] == [False, True, True]
    state = load_checkpoint(tmp_path)
    assert int(state["swa"]["n_averaged"]) == 2
    saved = load_file(str(tmp_path / LAST))
    averaged = {k.removeprefix("module."): v for k, v in state["swa"].items() if k != "n_averaged"}
    assert torch.equal(saved["linear.weight"], averaged["linear.weight"])
    assert not torch.equal(saved["linear.weight"], state["model"]["linear.weight"])
    # BN statistics of the averaged weights are their own, not the student's running averages.
    bn = "features.0.1.running_mean"
    assert not torch.allclose(saved[bn], state["model"][bn])
    assert read_metadata(tmp_path / LAST)["provenance"]["swa"] is True


def _teacher_artifact(path, num_classes=10, in_channels=1, size=8):
    model = rdist.create_model("smallcnn", num_classes=num_classes, in_channels=in_channels)
    rdist.save_model(model, path, dataset="digits", input_shape=[in_channels, size, size])
    return str(path)


def test_teacher_with_other_class_count_is_refused(short_run, tmp_path):
    teacher = _teacher_artifact(tmp_path / "t.safetensors", num_classes=5)
    with pytest.raises(RdistError, match=r"has 5 classes but dataset digits has 10"):
        train(short_run(tmp_path / "run", teacher=teacher))


def test_teacher_with_other_input_shape_is_refused(short_run, tmp_path):
    teacher = _teacher_artifact(tmp_path / "t.safetensors", in_channels=3, size=32)
    with pytest.raises(RdistError, match=r"inputs of shape \(3, 32, 32\) but dataset digits has \(1, 8, 8\)"):
        train(short_run(tmp_path / "run", teacher=teacher))


@pytest.mark.parametrize("method", ["akd2", "iad-ii"])
def test_two_teacher_methods_need_the_natural_teacher(method, short_run, tmp_path):
    with pytest.raises(RdistError, match="--natural-teacher"):
        train(short_run(tmp_path, method=method))


def test_distillation_needs_a_teacher(short_run, tmp_path):
    with pytest.raises(RdistError, match="--teacher"):
        train(short_run(tmp_path, teacher=None))


def test_non_finite_loss_stops_and_names_the_step(short_run, tmp_path):
    with pytest.raises(RdistError, match=r"training loss is (nan|inf) at step \d+ \(epoch 1.*lower learning rate"):
        train(short_run(tmp_path, lr=1e30))
    assert not (tmp_path / CHECKPOINT).exists() and not (tmp_path / LAST).exists()


def test_non_finite_loss_keeps_the_last_good_checkpoint(short_run, tmp_path):
    teacher = tmp_path / "teacher.safetensors"
    model = rdist.create_model("smallcnn", num_classes=10, in_channels=1)
    rdist.save_model(model, teacher, dataset="digits", input_shape=[1, 8, 8])
    config = short_run(tmp_path / "run", teacher=str(teacher), epochs=2, max_steps=18)  # 18 steps: one epoch
    train(config)
    checkpoint = (tmp_path / "run" / CHECKPOINT).read_bytes()
    last = (tmp_path / "run" / LAST).read_bytes()
    # The teacher file goes bad between the epochs: its logits, hence the loss, become NaN.
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float("nan"))
    rdist.save_model(model, teacher, dataset="digits", input_shape=[1, 8, 8])
    config.max_steps, config.resume = None, str(tmp_path / "run")
    with pytest.raises(RdistError, match=r"at step 19 \(epoch 2, batch 1 of 18\).*last good checkpoint \(epoch 1\)"):
        train(config)
    assert (tmp_path / "run" / CHECKPOINT).read_bytes() == checkpoint
    assert (tmp_path / "run" / LAST).read_bytes() == last
    assert [r["epoch"] for r in read_log(tmp_path / "run" / LOG)] == [1]


def test_natural_training_selects_its_most_accurate_epoch(tmp_path):
    """A natural teacher (the Tstd of AKD2 and IAD-II) is chosen for clean accuracy, robust methods for PGD-20."""
    result = train(TrainConfig(method="natural", student="tinycnn", data="digits", epochs=4, batch_size=64,
                               lr=0.05, eval_n=64, out=str(tmp_path)))
    log = read_log(tmp_path / LOG)
    assert result.select_metric == "clean"
    assert result.best_epoch == max(log, key=lambda r: r["val_clean_acc"])["epoch"]
    assert read_metadata(tmp_path / BEST)["provenance"]["selection"]["metric"] == "clean"
