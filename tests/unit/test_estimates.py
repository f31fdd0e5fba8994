"""Memory and time each training state asks the scheduler for, from its model and epochs."""

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
