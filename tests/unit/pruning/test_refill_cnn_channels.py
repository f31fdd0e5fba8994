"""Refill and RSST on CNN channels: a pruned channel is its filter, its BN entries and the next conv's input."""

import json

import pytest

from prunebench.results.checkpoint import load_checkpoint
from prunebench.results.layout import StatePaths
from prunebench.train.job import train_state
from tests.conftest import TINY_CONFIG, resolved_experiment


def _run_chain(root, method):
    cfg = json.loads(json.dumps(TINY_CONFIG))
    cfg["models"] = {"r20": {"arch": "resnet20"}}
    cfg["experiments"]["t"]["models"] = ["r20"]
    cfg["defaults"]["prune"].update(groups=["channels"], target_sparsity=0.5, ranking="global", budget="groups")
    cfg["defaults"]["data"]["train_limit"] = 128
    exp = resolved_experiment(cfg, method)
    for k in range(2):
        paths = StatePaths(root / f"state{k}", root / f"recovery{k}", root / "state0/last.pt" if k else None)
        train_state(exp, k, paths, data_dir=str(root / "data"), download=False, device="cpu", threads=1)
    return load_checkpoint(root / "state1/last.pt")


@pytest.mark.parametrize("method", ["refill", "rsst"])
def test_pruned_channels_are_zero_after_training(tmp_path, method):
    ckpt = _run_chain(tmp_path, method)
    sd, masks = ckpt["state_dict"], ckpt["masks"]
    assert sum(int(m.sum()) for m in masks.values()) == 168  # half of ResNet-20's 336 inner channels
    for name, mask in masks.items():
        block = name.removesuffix(".conv1.channels")
        gone = ~mask
        assert bool(mask.any())  # every layer keeps a channel
        assert sd[f"{block}.conv1.weight"][gone].abs().sum() == 0
        assert sd[f"{block}.bn1.weight"][gone].abs().sum() == 0
        assert sd[f"{block}.bn1.bias"][gone].abs().sum() == 0
        assert sd[f"{block}.conv2.weight"][:, gone].abs().sum() == 0
        # the block's output channels belong to the residual stream and are never pruned
        assert bool((sd[f"{block}.bn2.weight"] != 0).all())
    assert set(masks) == {f"layer{s}.{b}.conv1.channels" for s in (1, 2, 3) for b in range(3)}
    rows = [json.loads(x) for x in (tmp_path / "state1/metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["params_alive"] < 269_722  # ResNet-20's dense parameter count
