"""Every experiment has one dense reference run (its group's dense state 0), trained even where
REPrune, whose own state 0 is already pruned, is the group's only method."""

from __future__ import annotations

from prunebench.config import resolve_config


def _cnn_group(tiny_config, methods):
    tiny_config["models"]["cnn"] = {"arch": "small_cnn"}
    tiny_config["experiments"]["c"] = {
        "datasets": ["synthetic"], "models": ["cnn"], "methods": methods, "dense_control": False,
        "overrides": {"prune": {"groups": ["channels"]}, "reprune": {"interval_epochs": 1}},
    }  # fmt: skip


def test_a_reprune_only_group_trains_the_shared_dense_state0(tiny_config):
    _cnn_group(tiny_config, ["reprune"])
    resolved = resolve_config(tiny_config)
    assert resolved.state0_of["c-synthetic-cnn-reprune-s0"] == "c-synthetic-cnn-reprune-s0"  # prunes from epoch 1
    assert resolved.reference_of["c-synthetic-cnn-reprune-s0"] == "shared/c-synthetic-cnn-s0"
    trained = resolved.state0_runs["shared/c-synthetic-cnn-s0"]
    assert trained["method"] == "dense" and trained["name"] == "c-synthetic-cnn-s0"
    assert resolved.reference_of["t-synthetic-tiny_vit-refill-s0"] == "shared/t-synthetic-tiny_vit-s0"


def test_without_sharing_the_dense_experiment_is_the_reference(tiny_config):
    _cnn_group(tiny_config, ["refill", "reprune", "dense"])
    tiny_config["share_state0"] = False
    resolved = resolve_config(tiny_config)
    ref = {resolved.reference_of[f"c-synthetic-cnn-{m}-s0"] for m in ("refill", "reprune", "dense")}
    assert ref == {"c-synthetic-cnn-dense-s0"}
    assert "shared/c-synthetic-cnn-s0" not in resolved.state0_runs  # nothing trained twice
    _cnn_group(tiny_config, ["reprune"])
    assert resolve_config(tiny_config).reference_of["c-synthetic-cnn-reprune-s0"] == "shared/c-synthetic-cnn-s0"
