"""A tiny REPrune experiment through the real Snakemake workflow, and its rerun after a lost state."""

import json

import pytest

from tests.conftest import run_snakemake

pytestmark = pytest.mark.slow

EXP = "t-synthetic-r20-reprune-s0"


@pytest.fixture
def reprune_config(tiny_config):
    cfg = tiny_config
    cfg["models"] = {"r20": {"arch": "resnet20"}}
    cfg["experiments"]["t"].update(models=["r20"], methods=["reprune"])
    cfg["defaults"]["train"]["optimizer"] = "sgd"
    cfg["defaults"]["prune"].update(states=2, groups=["channels"])
    cfg["defaults"]["data"]["train_limit"] = 128
    # 2 states x 1 epoch: one event after the first epoch, at the start of state 1, which trains it
    cfg["defaults"]["reprune"] = {"interval_epochs": 1, "prune_until": 0.5, "linkage": "average"}
    return cfg


def test_tiny_reprune_run(tmp_path, reprune_config):
    run_snakemake(tmp_path, reprune_config)
    summaries = [json.loads((tmp_path / f"results/{EXP}/state{k}/summary.json").read_text()) for k in range(2)]
    assert [s["event_epochs"] for s in summaries] == [[], [1]]
    assert [s["reprune"]["frozen"] for s in summaries] == [False, True]
    assert summaries[0]["reprune"]["linkage"] == "average"
    # CNN channels default to a MACs budget: prune.target_sparsity (0.5 here) of the dense MACs go,
    # as counted on the compact model, and the state's accuracies are of the model trained after it
    assert summaries[0]["density"] == 1.0 > summaries[1]["density"]
    cost = summaries[1]["cost"]
    assert abs(1 - cost["compact"]["macs"] / cost["dense"]["macs"] - 0.5) < 0.005
    assert summaries[1]["budget"] == {"kind": "macs", "target": 0.5}
    assert (tmp_path / "results/reports/summary.md").is_file()
    # REPrune's state 0 is pruned: the group's dense state 0 is trained too and is the report's reference
    reference = json.loads((tmp_path / "results/shared/t-synthetic-r20-s0/state0/summary.json").read_text())
    assert reference["method"] == "dense" and reference["density"] == 1.0
    report = (tmp_path / "results/reports/synthetic_r20.md").read_text()
    assert f"| t-synthetic-r20-s0 | 0 | {reference['best_test_acc']:.2f} (" in report

    # a lost state is rebuilt from the one before, with the same masks
    target = f"results/{EXP}/state1/summary.json"
    (tmp_path / target).unlink()
    run_snakemake(tmp_path, reprune_config, target)
    assert json.loads((tmp_path / target).read_text())["kept"] == summaries[1]["kept"]
