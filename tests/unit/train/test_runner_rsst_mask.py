"""RSST's hard mask: where in the state it comes (rsst.peak_at) and what it costs, measured."""

import json

import pytest
import torch

from prunebench.results.checkpoint import load_checkpoint
from prunebench.results.metrics import read_rows
from prunebench.train.job import train_state
from tests.conftest import resolved_experiment
from tests.unit.train.chains import interrupt_after_epoch, paths, pruned_weights_are_zero


def _experiment(tiny_config):
    tiny_config["defaults"]["train"]["epochs"] = 4
    tiny_config["defaults"]["rsst"] = {"peak_at": 0.5}
    return resolved_experiment(tiny_config, "rsst")


def test_peak_at_masks_mid_state_and_logs_the_damage(tiny_config, tmp_path):
    exp = _experiment(tiny_config)
    train_state(exp, 0, paths(tmp_path, 0), device="cpu", threads=1)
    summary = train_state(exp, 1, paths(tmp_path, 1), device="cpu", threads=1)
    rows = read_rows(tmp_path / "state1/metrics.jsonl")
    lam = [r["reg_lambda"] for r in rows[1:]]
    assert lam[0] < lam[1] == pytest.approx(1.0) and lam[2:] == [0.0, 0.0]  # g by the end of epoch 2 of 4
    rsst = summary["rsst"]
    assert rsst["mask_epoch"] == 2
    # before the mask: the unmasked model; just after: the masked one, which is the epoch's row
    assert rsst["unmasked"] == {"val_acc": rows[2]["unmasked_val_acc"], "test_acc": rows[2]["unmasked_test_acc"]}
    assert rsst["masked"] == {"val_acc": rows[2]["val_acc"], "test_acc": rows[2]["test_acc"]}
    # the penalty shrinks the groups it will prune, epoch after epoch
    ratios = [r["penalized_norm_ratio"] for r in rows[1:3]]
    assert 0 < ratios[1] < min(ratios[0], 1.0) and rsst["penalized_norm_ratio"] == ratios[1]
    assert "penalized_norm_ratio" not in rows[3]  # masked: nothing is penalised any more
    assert pruned_weights_are_zero(load_checkpoint(tmp_path / "state1/last.pt"))
    assert summary["density"] == rows[-1]["density"] < 1 and summary["event_epochs"] == []
    assert summary["budget"] == {"kind": "groups", "target": 0.5}
    assert json.loads((tmp_path / "state1/summary.json").read_text())["rsst"] == rsst


@pytest.mark.parametrize("killed_after", [1, 3])  # before and after the mask
def test_a_resumed_state_reports_the_same_mask_damage(tiny_config, tmp_path, monkeypatch, killed_after):
    exp = _experiment(tiny_config)
    train_state(exp, 0, paths(tmp_path / "a", 0), device="cpu", threads=1)
    whole = train_state(exp, 1, paths(tmp_path / "a", 1), device="cpu", threads=1)
    train_state(exp, 0, paths(tmp_path / "b", 0), device="cpu", threads=1)
    with monkeypatch.context() as m:
        interrupt_after_epoch(m, killed_after)
        with pytest.raises(KeyboardInterrupt):
            train_state(exp, 1, paths(tmp_path / "b", 1), device="cpu", threads=1)
    resumed = train_state(exp, 1, paths(tmp_path / "b", 1), device="cpu", threads=1)
    assert resumed["rsst"] == whole["rsst"]
    a = load_checkpoint(tmp_path / "a/state1/last.pt")["state_dict"]
    b = load_checkpoint(tmp_path / "b/state1/last.pt")["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
