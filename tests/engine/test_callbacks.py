"""The callback protocol: every run ends with on_run_end, with its result or with None when it failed, so that one
callback (a progress display) can watch several runs in turn."""

from __future__ import annotations

import pytest

from rdist.engine import Callback, Callbacks, TrainConfig, train, train_seeds


class Recorder(Callback):
    def __init__(self, fail_at_epoch_end: bool = False):
        self.calls, self.results, self.fail = [], [], fail_at_epoch_end

    def on_run_start(self, run_dir, start_epoch, epochs, steps_per_epoch, resumed) -> None:
        self.calls.append("run_start")

    def on_epoch_end(self, record) -> None:
        self.calls.append("epoch_end")
        if self.fail:
            raise RuntimeError("the watcher broke")

    def on_run_end(self, result) -> None:
        self.calls.append("run_end")
        self.results.append(result)


def config(out, **overrides) -> TrainConfig:
    return TrainConfig(**{"method": "natural", "student": "tinycnn", "data": "digits", "epochs": 1, "batch_size": 256,
                          "eval_n": 32, "out": str(out) if out else None, **overrides})


def test_each_run_ends_with_its_result(tmp_path):
    recorder = Recorder()
    results = train_seeds(config(tmp_path / "group"), [0, 1], recorder)
    assert recorder.calls == ["run_start", "epoch_end", "run_end"] * 2
    assert recorder.results == results
    seed_0 = tmp_path / "group" / "seed-0"
    again = train(config(None, resume=str(seed_0), seed=0), recorder)
    assert recorder.calls[-2:] == ["run_start", "run_end"] and recorder.results[-1] == again, "a finished run too"


def test_a_failed_run_ends_with_none_and_its_error(tmp_path):
    recorder = Recorder(fail_at_epoch_end=True)
    with pytest.raises(RuntimeError, match="the watcher broke"):
        train(config(tmp_path / "run"), recorder)
    assert recorder.calls == ["run_start", "epoch_end", "run_end"] and recorder.results == [None]


class FailsToStart(Callback):
    def on_run_start(self, *args) -> None:
        raise RuntimeError("the tracker could not start")


def test_callbacks_combine_and_each_ends_even_when_one_fails_to_start(tmp_path):
    first, last = Recorder(), Recorder()
    fast = Recorder()
    fast.report_every = 3
    combined = Callbacks([first, None, fast, last])
    assert combined.callbacks == [first, fast, last] and combined.report_every == 3
    train(config(tmp_path / "run"), combined)
    assert first.calls == fast.calls == last.calls == ["run_start", "epoch_end", "run_end"]

    watchers = [Recorder(), FailsToStart(), Recorder()]
    with pytest.raises(RuntimeError, match="the tracker could not start"):
        train(config(tmp_path / "other"), Callbacks(watchers))
    assert watchers[0].calls == ["run_start", "run_end"] and watchers[2].calls == ["run_end"]
    assert watchers[0].results == watchers[2].results == [None]
