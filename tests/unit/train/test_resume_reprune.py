"""A REPrune state killed mid-way resumes with the masks its earlier pruning events chose."""

import json

import pytest
import torch

import prunebench.train.runner as runner_module
from prunebench.results.checkpoint import load_checkpoint
from prunebench.results.layout import StatePaths
from prunebench.train.job import train_state
from tests.conftest import TINY_CONFIG, resolved_experiment


def _experiment():
    cfg = json.loads(json.dumps(TINY_CONFIG))
    cfg["models"] = {"cnn": {"arch": "small_cnn", "kwargs": {"widths": [8, 8, 8]}}}
    cfg["experiments"]["t"]["models"] = ["cnn"]
    cfg["defaults"]["train"]["epochs"] = 3
    cfg["defaults"]["prune"].update(states=1, groups=["channels"], target_sparsity=0.5, budget="groups")
    cfg["defaults"]["data"]["train_limit"] = 128
    cfg["defaults"]["reprune"] = {"interval_epochs": 1, "prune_until": 0.67, "regrowth": 0.5}
    return resolved_experiment(cfg, "reprune")


def test_resume_keeps_the_masks_of_events_before_the_crash(tmp_path, monkeypatch):
    exp = _experiment()
    paths = StatePaths(tmp_path / "state0", tmp_path / "recovery")
    real = runner_module.train_one_epoch
    calls = []

    def dies_in_epoch_3(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt("killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(runner_module, "train_one_epoch", dies_in_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        train_state(exp, 0, paths, data_dir=str(tmp_path / "data"), download=False, device="cpu", threads=1)
    saved = torch.load(paths.resume, weights_only=True)["plan"]["final"]
    assert 12 < sum(int(m.sum()) for m in saved.values()) < 24  # epoch 2's event pruned, regrowth on

    monkeypatch.setattr(runner_module, "train_one_epoch", real)
    summary = train_state(exp, 0, paths, data_dir=str(tmp_path / "data"), download=False, device="cpu", threads=1)
    # events before epochs 2 and 3 (after 1 and 2 trained epochs; T_prune = round(0.67 x 3) = 2)
    assert [e["epoch"] for e in summary["reprune"]["events"]] == [2, 3]  # epoch 2 is not trained again
    masks = load_checkpoint(tmp_path / "state0/last.pt")["masks"]
    for name, mask in masks.items():
        assert not bool((mask & ~saved[name]).any())  # the second event pruned within the first one's masks
    assert sum(int(m.sum()) for m in masks.values()) == 12  # at T_prune regrowth is 0: exactly half
