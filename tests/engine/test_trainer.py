"""The loop's outputs and its refusals: artifacts with provenance, the JSONL log, selection, max_steps, SWA,
teacher checks and the non-finite-loss stop."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from safetensors.torch import load_file
from torch.optim.swa_utils import update_bn

import rdist
from rdist.artifact import read_metadata
from rdist.data import Batches
from rdist.engine import BEST, CHECKPOINT, LAST, LOG, TrainConfig, load_checkpoint, read_log, resume_config, train
from rdist.engine.build import build_run
from rdist.errors import RdistError


def test_run_writes_log_best_and_last_with_provenance(short_run, robust_teacher, tmp_path):
    result = train(short_run(tmp_path, epochs=3))

    log = read_log(tmp_path / LOG)
    assert [r.epoch for r in log] == [1, 2, 3] and not any(r.partial for r in log)
    for line in (tmp_path / LOG).read_text().splitlines():  # the file's own keys, split named
        assert {"lr", "train_loss", "train_clean_acc", "train_robust_acc", "val_clean_acc", "val_pgd20_acc",
                "seconds", "images_per_s"} <= set(json.loads(line))
    for record in log:
        assert record.split == "val" and 0 <= record.pgd20_acc <= record.clean_acc <= 1
    assert [r.lr for r in log] == pytest.approx([0.1, 0.1, 0.01])  # milestones at 50% and 75% of 3 epochs
    best_epoch = max(log, key=lambda r: r.pgd20_acc).epoch
    assert result.best_epoch == best_epoch and result.epochs_done == 3 and result.stopped_by == "epochs"

    best, last = read_metadata(tmp_path / BEST), read_metadata(tmp_path / LAST)
    assert best["provenance"]["epoch"] == best_epoch and last["provenance"]["epoch"] == 3
    provenance = last["provenance"]
    assert provenance["teacher"] == str(robust_teacher.resolve()) and provenance["teacher_arch"] == "smallcnn"
    assert provenance["selection"]["on"] == "val" and provenance["selection"]["n"] == 64
    assert provenance["rdist_version"] == rdist.__version__
    assert provenance["method_config"] == {"method": "rslad", "eps": 8 / 255, "step_size": 2 / 255, "attack_steps": 3,
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
    assert record.split == "test" and record.pgd20_acc is not None
    assert "test_pgd20_acc" in record.to_json() and "val_pgd20_acc" not in record.to_json()
    assert record.eval_n == len(digits.y_test)
    assert result.global_step == -(-len(digits.y_train) // 64)  # every training image trains
    assert read_metadata(tmp_path / BEST)["provenance"]["selection"]["on"] == "test"


def test_max_steps_stops_mid_epoch_saves_last_but_no_best_or_checkpoint(short_run, tmp_path):
    result = train(short_run(tmp_path, epochs=2, max_steps=5))
    assert result.stopped_by == "max_steps" and result.global_step == 5 and result.epochs_done == 0
    (record,) = read_log(tmp_path / LOG)
    assert record.partial and record.pgd20_acc is not None and record.best_epoch is None
    assert (tmp_path / LAST).is_file()
    # A partial epoch is never selected, and a checkpoint is only ever an epoch boundary.
    assert result.best_path is None and result.best_epoch is None and not (tmp_path / BEST).exists()
    assert not (tmp_path / CHECKPOINT).exists()


def _natural_run(out, **overrides) -> TrainConfig:
    """tinycnn trained naturally on digits: 18 steps of a fraction of a second per epoch, no teacher needed."""
    return TrainConfig(**{**dict(method="natural", student="tinycnn", data="digits", epochs=3, batch_size=64,
                                 lr=0.05, eval_n=64, out=str(out)), **overrides})


def test_a_partial_epoch_is_never_selected_as_best(tmp_path):
    """best.safetensors is always the whole epoch that the checkpoint, hence a resume, knows as the best."""
    result = train(_natural_run(tmp_path, max_steps=18 + 9))  # stops half way through epoch 2
    log = read_log(tmp_path / LOG)
    assert [r.partial for r in log] == [False, True]
    # Early in training the half epoch 2 is already more accurate than epoch 1: a selection would take it.
    assert log[1].clean_acc > log[0].clean_acc
    state = load_checkpoint(tmp_path)
    assert result.best_epoch == state["best_epoch"] == log[1].best_epoch == 1
    assert result.best_acc == state["best_acc"] == log[0].clean_acc
    best = load_file(str(tmp_path / BEST))
    assert all(torch.equal(best[k], v.float()) for k, v in state["model"].items())  # epoch 1's weights
    assert read_metadata(tmp_path / BEST)["provenance"]["epoch"] == 1
    assert read_metadata(tmp_path / LAST)["provenance"]["epoch"] == 2  # the partial epoch is still saved as last

    resumed = train(resume_config(tmp_path))
    log = read_log(tmp_path / LOG)
    assert [(r.epoch, r.partial) for r in log] == [(1, False), (2, False), (3, False)]
    best_epoch = max(log, key=lambda r: r.clean_acc).epoch
    assert resumed.best_epoch == best_epoch == read_metadata(tmp_path / BEST)["provenance"]["epoch"]
    assert resumed.best_acc == log[best_epoch - 1].clean_acc


def test_swa_averages_weights_and_recomputes_bn_statistics(short_run, natural_teacher, tmp_path):
    train(short_run(tmp_path, method="akd2", teachers={"natural": str(natural_teacher)}, epochs=3, swa_start=2))
    log = read_log(tmp_path / LOG)
    assert [r.average for r in log] == [None, "swa", "swa"]
    state = load_checkpoint(tmp_path)
    assert int(state["average"]["n_averaged"]) == 2
    saved = load_file(str(tmp_path / LAST))
    averaged = {k.removeprefix("module."): v for k, v in state["average"].items() if k != "n_averaged"}
    assert torch.equal(saved["linear.weight"], averaged["linear.weight"])
    assert not torch.equal(saved["linear.weight"], state["model"]["linear.weight"])
    # BN statistics of the averaged weights are their own, not the student's running averages.
    bn = "features.0.1.running_mean"
    assert not torch.allclose(saved[bn], state["model"][bn])
    assert read_metadata(tmp_path / LAST)["provenance"]["average"] == {"kind": "swa", "start": 2}


def test_swa_provenance_and_bn_statistics_hold_at_epochs_without_evaluation(tmp_path):
    # Stopped inside epoch 2, the first SWA epoch: nothing is averaged yet, so the student itself is saved.
    train(_natural_run(tmp_path, swa_start=2, eval_every=3, max_steps=18 + 5))
    assert [r.average for r in read_log(tmp_path / LOG)] == [None, None]
    assert read_metadata(tmp_path / LAST)["provenance"]["average"] is None

    # Resumed to the end of epoch 2, which is not evaluated (eval_every 3): last is the average, and its BN
    # statistics must be those of the averaged weights, computed as for an evaluation.
    config = resume_config(tmp_path, max_steps=36)
    train(config)
    record = read_log(tmp_path / LOG)[-1]
    assert (record.epoch, record.partial, record.clean_acc, record.average) == (2, False, None, "swa")
    assert read_metadata(tmp_path / LAST)["provenance"]["average"] == {"kind": "swa", "start": 2}
    saved = rdist.load_model(tmp_path / LAST)
    expected = copy.deepcopy(saved)
    run = build_run(config)
    update_bn(Batches(run.train_x, run.train_y, run.schedule.batch_size), expected)
    for name, buffer in expected.named_buffers():
        if name.endswith(("running_mean", "running_var")):
            assert torch.allclose(saved.get_buffer(name), buffer, atol=1e-6), name
    assert int(load_checkpoint(tmp_path)["average"]["n_averaged"]) == 1


def _teacher_artifact(path, num_classes=10, in_channels=1, size=8):
    model = rdist.create_model("smallcnn", num_classes=num_classes, in_channels=in_channels)
    rdist.save_model(model, path, dataset="digits", input_shape=[in_channels, size, size])
    return str(path)


def test_teacher_with_other_class_count_is_refused(short_run, tmp_path):
    teacher = _teacher_artifact(tmp_path / "t.safetensors", num_classes=5)
    with pytest.raises(RdistError, match=r"has 5 classes but dataset digits has 10"):
        train(short_run(tmp_path / "run", teachers={"robust": teacher}))


def test_teacher_with_other_input_shape_is_refused(short_run, tmp_path):
    teacher = _teacher_artifact(tmp_path / "t.safetensors", in_channels=3, size=32)
    with pytest.raises(RdistError, match=r"inputs of shape \(3, 32, 32\) but dataset digits has \(1, 8, 8\)"):
        train(short_run(tmp_path / "run", teachers={"robust": teacher}))


@pytest.mark.parametrize("method", ["akd2", "iad-ii"])
def test_two_teacher_methods_need_the_natural_teacher(method, short_run, tmp_path):
    with pytest.raises(RdistError, match="--natural-teacher"):
        train(short_run(tmp_path, method=method))


def test_distillation_needs_a_teacher(short_run, tmp_path):
    with pytest.raises(RdistError, match="--teacher"):
        train(short_run(tmp_path, teachers={"robust": None}))


def test_non_finite_loss_stops_and_names_the_step(short_run, tmp_path):
    with pytest.raises(RdistError, match=r"training loss is (nan|inf) at step \d+ \(epoch 1.*lower learning rate"):
        train(short_run(tmp_path, lr=1e30))
    assert not (tmp_path / CHECKPOINT).exists() and not (tmp_path / LAST).exists()


def test_non_finite_loss_keeps_the_last_good_checkpoint(short_run, tmp_path):
    teacher = tmp_path / "teacher.safetensors"
    model = rdist.create_model("smallcnn", num_classes=10, in_channels=1)
    rdist.save_model(model, teacher, dataset="digits", input_shape=[1, 8, 8])
    # 18 steps: one epoch
    config = short_run(tmp_path / "run", teachers={"robust": str(teacher)}, epochs=2, max_steps=18)
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
    assert [r.epoch for r in read_log(tmp_path / "run" / LOG)] == [1]


def test_natural_training_selects_its_most_accurate_epoch(tmp_path):
    """A natural teacher (the Tstd of AKD2 and IAD-II) is chosen for clean accuracy, robust methods for PGD-20."""
    result = train(TrainConfig(method="natural", student="tinycnn", data="digits", epochs=4, batch_size=64,
                               lr=0.05, eval_n=64, out=str(tmp_path)))
    log = read_log(tmp_path / LOG)
    assert result.select_metric == "clean"
    assert result.best_epoch == max(log, key=lambda r: r.clean_acc).epoch
    assert read_metadata(tmp_path / BEST)["provenance"]["selection"]["metric"] == "clean"
