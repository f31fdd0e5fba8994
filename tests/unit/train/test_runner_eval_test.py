"""train.eval_test (issue 24): val at every evaluated epoch, test at epoch 0, the last epoch and, once at
the state's end, on the best checkpoint's weights; the best and final test accuracies and predictions
are those of evaluating test at every epoch, also across a resume."""

import json

import numpy as np
import pytest
import torch

import prunebench.train.runner as runner_module
from prunebench.results.checkpoint import load_checkpoint
from prunebench.results.layout import StatePaths
from prunebench.results.metrics import TIMING_FIELDS, read_rows
from prunebench.train.job import train_state
from prunebench.train.runner import StateRunner
from tests.conftest import resolved_experiment

EPOCHS = 3
ACC_FIELDS = ("best_epoch", "best_val_acc", "best_test_acc", "final_val_acc", "final_test_acc", "acc_after_pruning")


@pytest.fixture
def best_is_epoch_1(monkeypatch):
    """Validation accuracy falling epoch after epoch (100 minus the epochs done), so that the best epoch
    is 1, before the last: its test accuracy is the one evaluated later under best_and_final."""
    real = StateRunner._evaluate

    def falling(self, predictions=None, splits=("val", "test")):
        scores = real(self, predictions, splits)
        if "val" in scores:
            scores["val"] = (scores["val"][0], 100.0 - self.prog.epoch)
        return scores

    monkeypatch.setattr(StateRunner, "_evaluate", falling)


def config(tiny_config, tmp_path, eval_test: str, slim: str = "off") -> dict:
    tiny_config["data_dir"] = str(tmp_path / "data")
    tiny_config["defaults"]["train"].update(epochs=EPOCHS, state0_epochs=1, eval_test=eval_test, slim=slim)
    return resolved_experiment(tiny_config)


def state1_paths(root, state0):
    return StatePaths(root / "state1", root / "recovery" / "state1", state0 / "last.pt", state0 / "init.pt")


def outputs(folder):
    rows = [{k: v for k, v in r.items() if k not in TIMING_FIELDS} for r in read_rows(folder / "metrics.jsonl")]
    with np.load(folder / "predictions.npz", allow_pickle=False) as data:
        predictions = {name: data[name] for name in data.files}
    return rows, predictions, load_checkpoint(folder / "best.pt")["state_dict"]


@pytest.fixture
def state0(tiny_config, tmp_path):
    exp = config(tiny_config, tmp_path, "every")
    root = tmp_path / "shared"
    train_state(
        exp, 0, StatePaths(root / "state0", root / "recovery" / "state0", None, root / "state0/init.pt"), device="cpu"
    )
    return root / "state0"


@pytest.mark.parametrize("slim", ["off", "auto"])  # auto: the best's weights go back into the slim model
def test_best_and_final_tests_give_every_s_accuracies_and_predictions(
    tiny_config, tmp_path, state0, best_is_epoch_1, slim
):
    got = {}
    for eval_test in ("every", "best_and_final"):
        root = tmp_path / eval_test
        summary = train_state(
            config(tiny_config, tmp_path, eval_test, slim), 1, state1_paths(root, state0), device="cpu", threads=1
        )
        assert summary["run"]["training"] == ("slim" if slim == "auto" else "masked")
        got[eval_test] = summary, *outputs(root / "state1")
    (every, rows_e, pred_e, best_e), (cheap, rows_c, pred_c, best_c) = got["every"], got["best_and_final"]
    assert every["best_epoch"] == cheap["best_epoch"] == 1
    assert {k: every[k] for k in ACC_FIELDS} == {k: cheap[k] for k in ACC_FIELDS}
    assert all(np.array_equal(pred_e[k], pred_c[k]) for k in ("targets", "best", "final"))
    assert all(torch.equal(best_e[k], best_c[k]) for k in best_e)
    # val at every epoch; test at epoch 0, the best (evaluated at the end, in its place) and the last
    assert [r["epoch"] for r in rows_c if "test_acc" in r] == [0, 1, EPOCHS]
    assert [json.dumps(r) for r in rows_c] == [
        json.dumps({k: v for k, v in r.items() if k != "test_acc" or r["epoch"] in (0, 1, EPOCHS)}) for r in rows_e
    ]
    assert cheap["max_test_acc"] == max(r["test_acc"] for r in rows_c[1:] if "test_acc" in r)


@pytest.mark.parametrize("killed_after", [2, EPOCHS])  # before the best's test, and after it
def test_a_resumed_state_gets_the_same_best_test(
    tiny_config, tmp_path, state0, best_is_epoch_1, monkeypatch, killed_after
):
    exp = config(tiny_config, tmp_path, "best_and_final")
    whole = train_state(exp, 1, state1_paths(tmp_path / "whole", state0), device="cpu", threads=1)
    real = runner_module.save_resume

    def save_then_die(paths, run, prog):
        real(paths, run, prog)
        if prog.epoch == killed_after:
            raise KeyboardInterrupt

    root = tmp_path / "killed"
    with monkeypatch.context() as m:
        m.setattr(runner_module, "save_resume", save_then_die)
        with pytest.raises(KeyboardInterrupt):
            train_state(exp, 1, state1_paths(root, state0), device="cpu", threads=1)
    resumed = train_state(exp, 1, state1_paths(root, state0), device="cpu", threads=1)
    assert resumed["run"]["resumed_after_epoch"] == killed_after
    assert {k: resumed[k] for k in ACC_FIELDS} == {k: whole[k] for k in ACC_FIELDS}
    (rows_w, pred_w, _), (rows_r, pred_r, _) = outputs(tmp_path / "whole/state1"), outputs(root / "state1")
    assert rows_r == rows_w
    assert all(np.array_equal(pred_w[k], pred_r[k]) for k in ("targets", "best", "final"))
