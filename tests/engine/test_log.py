"""log.jsonl: typed epoch records that read back as written; cut lines and unknown keys are skipped."""

from __future__ import annotations

import json

from rdist.engine import EpochRecord, RunDirectory, read_log
from rdist.engine.log import EpochLog

RECORD = EpochRecord(epoch=2, partial=False, global_step=36, lr=0.1, train_loss=1.25, train_clean_acc=0.5,
                     train_robust_acc=None, split="test", clean_acc=0.75, pgd20_acc=0.25, eval_n=64, best_epoch=2,
                     average=None, train_seconds=1.5, seconds=2.0, images_per_s=640.0)


def test_a_record_is_written_with_its_split_in_the_key_names_and_reads_back_equal(tmp_path):
    line = RECORD.to_json()
    assert (line["test_clean_acc"], line["test_pgd20_acc"]) == (0.75, 0.25)
    assert not {"split", "clean_acc", "pgd20_acc", "val_clean_acc"} & set(line)
    log = EpochLog(tmp_path / "log.jsonl")
    log.write(RECORD)
    log.write(EpochRecord(epoch=3, clean_acc=0.5))
    assert read_log(tmp_path / "log.jsonl") == [RECORD, EpochRecord(epoch=3, clean_acc=0.5)]


def test_cut_lines_and_unknown_keys_are_skipped(tmp_path):
    path = RunDirectory(tmp_path).log
    path.write_text(json.dumps({"epoch": 1, "train_loss": 2.5, "val_clean_acc": 0.4, "val_pgd20_acc": 0.1, "extra": 1})
                    + "\n" + json.dumps({"note": "no epoch"}) + '\n{"epoch": 2, "train_lo')
    (record,) = read_log(path)
    assert (record.epoch, record.train_loss, record.split, record.clean_acc, record.pgd20_acc) == (1, 2.5, "val", 0.4,
                                                                                                   0.1)


def test_a_resume_drops_the_records_of_the_epochs_it_redoes(tmp_path):
    log = EpochLog(tmp_path / "log.jsonl")
    for epoch in (1, 2, 3):
        log.write(EpochRecord(epoch=epoch))
    EpochLog(tmp_path / "log.jsonl", keep_through=2)
    assert [r.epoch for r in read_log(tmp_path / "log.jsonl")] == [1, 2]
