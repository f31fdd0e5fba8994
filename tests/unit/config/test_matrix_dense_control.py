"""The dense control chain: every group that prunes runs it unless its `dense_control` is off."""

import copy

from prunebench.config import resolve_config, training_hash
from tests.conftest import TINY_CONFIG


def methods_of(config: dict) -> dict[str, str]:
    return {name: e["method"] for name, e in resolve_config(config).experiments.items()}


def test_a_pruning_group_gets_the_dense_chain_without_changing_what_the_others_train():
    config = copy.deepcopy(TINY_CONFIG)
    config["experiments"]["t"].update(methods=["refill", "random"], seeds=[0, 1])
    del config["experiments"]["t"]["dense_control"]  # the default: on
    runs = resolve_config(config).experiments
    assert sorted(e["method"] for e in runs.values()) == ["dense", "dense", "random", "random", "refill", "refill"]
    config["experiments"]["t"]["dense_control"] = False
    without = resolve_config(config).experiments
    assert sorted(e["method"] for e in without.values()) == ["random", "random", "refill", "refill"]
    for name, exp in without.items():  # the setting is the group's, not any experiment's training
        assert training_hash(runs[name]) == training_hash(exp)


def test_a_listed_dense_is_run_once_and_a_group_that_prunes_nothing_gets_none():
    config = copy.deepcopy(TINY_CONFIG)
    config["experiments"]["t"].update(methods=["dense", "rsst"], dense_control=True)
    assert sorted(methods_of(config).values()) == ["dense", "rsst"]
    config["experiments"]["t"]["methods"] = ["dense"]
    assert list(methods_of(config).values()) == ["dense"]
