"""Memory and time each training state asks the scheduler for, from its model and epochs."""

import math

import pytest
import yaml

from prunebench.config import resolve_config
from prunebench.errors import ConfigError
from prunebench.estimates import state_resources
from tests.conftest import REPO


def reference(**resources):
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    if resources:
        cfg["resources"] = resources
    return cfg


def first(resolved, model_key, method="refill"):
    return next(e for e in resolved.experiments.values() if e["model_key"] == model_key and e["method"] == method)


def test_builtin_estimates_for_vit_small_224_and_resnet56():
    resolved = resolve_config(reference())
    vit, cnn = first(resolved, "vit_small"), first(resolved, "resnet56")
    # 60 epochs x 1.5 min x 1.5 + 10 min; 30 epochs x 0.5 min x 1.5 + 10 min
    assert state_resources(vit, 1, resolved.resources) == {"mem_mb": 12000, "runtime": 145}
    assert state_resources(cnn, 1, resolved.resources) == {"mem_mb": 8000, "runtime": 33}


def test_the_config_replaces_the_estimates_per_model_and_scales_by_epochs(tiny_config):
    tiny_config["defaults"]["train"].update(epochs=10, state0_epochs=40)
    tiny_config["defaults"]["data"]["train_limit"] = None
    tiny_config["resources"] = {
        "safety_factor": 2.0,
        "overhead_minutes": 5,
        "models": {"tiny_vit": {"minutes_per_epoch": 3, "mem_mb": 2000}},
    }
    resolved = resolve_config(tiny_config)
    exp = next(iter(resolved.experiments.values()))
    assert state_resources(exp, 0, resolved.resources) == {"mem_mb": 2000, "runtime": 40 * 3 * 2 + 5}
    assert state_resources(exp, 1, resolved.resources) == {"mem_mb": 2000, "runtime": 10 * 3 * 2 + 5}


def test_a_small_dataset_asks_for_less_time_than_cifar(tiny_config):
    resolved = resolve_config(tiny_config)  # synthetic data, 256 training images
    exp = next(iter(resolved.experiments.values()))
    assert state_resources(exp, 1, resolved.resources)["runtime"] == 10 + 1  # the overhead, and a minute


def test_resources_for_an_undefined_model_are_refused(tiny_config):
    tiny_config["resources"] = {"models": {"vit_smal": {"mem_mb": 4000}}}
    with pytest.raises(ConfigError, match="resources.models.vit_smal: not defined under `models`; defined: tiny_vit"):
        resolve_config(tiny_config)


def test_pruned_states_trained_slim_ask_for_time_by_the_density_they_start_from():
    from prunebench.estimates import SLIM_FIXED_SHARE, slim_share
    from prunebench.pruning.schedule import density_at

    cfg = reference()
    cfg["defaults"]["train"]["slim"] = "auto"
    vit = first(resolve_config(cfg), "vit_small")
    prune = vit["prune"]
    fixed = SLIM_FIXED_SHARE["vit"]
    assert slim_share(vit, 0) == 1.0  # state 0 is dense
    for k in (1, 8, prune["states"] - 1):
        start = density_at(k - 1, prune["states"], prune["target_sparsity"], prune["schedule"])
        assert slim_share(vit, k) == pytest.approx(fixed + (1 - fixed) * start)
    last = prune["states"] - 1
    # 60 epochs x 1.5 min x the share x 1.5 + 10 min, rounded up
    assert state_resources(vit, last, resolve_config(cfg).resources)["runtime"] == math.ceil(
        60 * 1.5 * slim_share(vit, last) * 1.5 + 10
    )
    off = {**vit, "train": {**vit["train"], "slim": "off"}}
    dense = {**vit, "method": "dense"}
    assert slim_share(off, last) == slim_share(dense, last) == 1.0


def test_planned_gpu_hours_count_every_training_state_once():
    from prunebench.estimates import planned_gpu_hours, planned_states

    cfg = reference()
    cfg["defaults"]["train"]["slim"] = "off"
    resolved = resolve_config(cfg)
    states = planned_states(resolved)
    assert len(states) == len({(run, k) for run, k, _ in states})
    hours = planned_gpu_hours(resolved)
    assert sum(row["states"] for row in hours.values()) == len(states)
    # masked training: every state at a dense epoch's time, as the docs' reference figures say
    assert hours["vit_small"]["as_configured"] == hours["vit_small"]["dense_shaped"] == pytest.approx(684.0)
    assert hours["resnet56"]["as_configured"] == pytest.approx(66.75)
    cfg["defaults"]["train"]["slim"] = "auto"
    slim = planned_gpu_hours(resolve_config(cfg))
    assert slim["vit_small"]["as_configured"] < 0.9 * slim["vit_small"]["dense_shaped"]
