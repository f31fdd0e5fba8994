"""A 2-process state on an image folder (gloo, torchrun) trains as one process with the same global batch:
each rank's workers decode its slice of every global batch, with the same crops and flips."""

import copy
import json

import pytest

from tests.conftest import write_image_folder
from tests.unit.train.processes import TOL, metric_rows, train_chain


@pytest.mark.slow
def test_two_processes_on_an_image_folder_train_as_one(tiny_config, tmp_path):
    root = write_image_folder(tmp_path / "folder", classes=3, train=8, val=3)
    tiny_config["datasets"] = {"tiny": {"kind": "imagefolder", "root": str(root), "workers": 1}}
    tiny_config["experiments"]["t"]["datasets"] = ["tiny"]
    tiny_config["share_state0"] = False
    tiny_config["defaults"]["data"] = {"train_limit": None}
    tiny_config["defaults"]["train"].update(batch_size=8, eval_batch_size=4, epochs=2)
    runs = {}
    for gpus in (1, 2):
        config = copy.deepcopy(tiny_config)
        config["defaults"]["train"]["gpus"] = gpus
        runs[gpus] = metric_rows(train_chain(config, tmp_path, f"gpus{gpus}", states=(0,)) / "state0" / "metrics.jsonl")
    assert [r["epoch"] for r in runs[1]] == [r["epoch"] for r in runs[2]] == [0, 1, 2]
    for a, b in zip(runs[1], runs[2]):
        for key in ("train_loss", "val_loss"):
            if a.get(key) is not None:
                assert b[key] == pytest.approx(a[key], rel=TOL), (a["epoch"], key)
        assert [b.get(k) for k in ("train_acc", "val_acc", "test_acc")] == [
            a.get(k) for k in ("train_acc", "val_acc", "test_acc")
        ]
    summary = json.loads((tmp_path / "gpus2" / "t-tiny-tiny_vit-refill-s0" / "state0" / "summary.json").read_text())
    assert summary["processes"] == 2
