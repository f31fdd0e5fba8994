"""A state chain trained end to end by real Snakemake on an image folder of JPEGs written by the test."""

import json
import time

import pytest
import torch

from prunebench.results.metrics import read_rows
from tests.conftest import TINY_CONFIG, run_snakemake, write_image_folder


@pytest.mark.slow
def test_a_tiny_image_folder_trains_a_refill_chain_through_the_workflow(tmp_path):
    root = write_image_folder(tmp_path / "folder", classes=3, train=4, val=2)
    config = json.loads(json.dumps(TINY_CONFIG))
    config["datasets"] = {"tiny": {"kind": "imagefolder", "root": str(root), "loader": "auto", "workers": 1}}
    config["experiments"]["t"]["datasets"] = ["tiny"]
    config["defaults"]["train"].update(batch_size=4, eval_batch_size=4)
    config["defaults"]["data"] = {"train_limit": None}
    started = time.monotonic()
    run_snakemake(tmp_path / "run", config)
    assert time.monotonic() - started < 120
    results = tmp_path / "run" / "results"
    marker = json.loads((results / ".prepared" / "tiny-tiny_vit.json").read_text())
    assert marker["dataset"]["num_classes"] == 3 and marker["dataset"]["sizes"] == {"train": 12, "val": 6, "test": 6}
    for k, run in ((0, "shared/t-tiny-tiny_vit-s0"), (1, "t-tiny-tiny_vit-refill-s0")):
        sdir = results / run / f"state{k}"
        ckpt = torch.load(sdir / "last.pt", weights_only=True)
        assert ckpt["model_spec"]["num_classes"] == 3  # inferred from the folder's classes
        rows = read_rows(sdir / "metrics.jsonl")
        assert [r["epoch"] for r in rows] == [0, 1] and rows[-1]["dataset"] == "tiny"
        summary = json.loads((sdir / "summary.json").read_text())
        assert summary["test_size"] == 6  # val/ is the test split too: the folder has no test/
    log = (tmp_path / "run" / "logs" / "train_state" / "t-tiny-tiny_vit-refill-s0" / "state1.log").read_text()
    assert "data tiny: {'train': 12, 'val': 6, 'test': 6}" in log
    assert (results / "reports" / "tiny_tiny_vit.md").is_file()
