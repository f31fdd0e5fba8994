"""The reprune settings: defaults, and the setups it refuses with an error that says the fix."""

import pytest

from prunebench.config import resolve_config
from prunebench.errors import ConfigError


def _cnn(config, **reprune):
    config["models"]["r20"] = {"arch": "resnet20"}
    config["experiments"]["t"].update(models=["r20"], methods=["reprune"])
    config["defaults"]["prune"]["groups"] = ["channels"]
    config["defaults"]["train"]["epochs"] = 4  # 8 epochs in all: events at 2 and 4 with the defaults
    if reprune:
        config["defaults"]["reprune"] = reprune
    return config


def test_defaults_are_filled_in(tiny_config):
    exp = next(iter(resolve_config(_cnn(tiny_config)).experiments.values()))
    assert exp["reprune"] == {
        "interval_epochs": 2, "prune_until": 0.65, "linkage": "ward",
        "ramp": "linear", "min_layer_density": 0.0, "regrowth": 0.0,
    }  # fmt: skip


def test_the_old_budget_keys_name_their_replacement(tiny_config):
    with pytest.raises(ConfigError) as err:
        resolve_config(_cnn(tiny_config, budget="macs", macs_reduction=0.6))
    assert "reprune.budget is replaced by prune.budget" in str(err.value)
    assert "reprune.macs_reduction is replaced by prune.target_sparsity with prune.budget: macs" in str(err.value)


def test_reprune_on_a_vit_is_refused(tiny_config):
    tiny_config["experiments"]["t"]["methods"] = ["reprune"]
    with pytest.raises(ConfigError, match="reprune prunes CNN channels.*tiny_vit"):
        resolve_config(tiny_config)


def test_reprune_needs_channel_groups(tiny_config):
    config = _cnn(tiny_config)
    config["defaults"]["prune"]["groups"] = ["heads"]
    with pytest.raises(ConfigError, match="`channels` in prune.groups"):
        resolve_config(config)


def test_unknown_linkage_lists_the_choices(tiny_config):
    with pytest.raises(ConfigError, match="linkage = 'centroid': must be one of ward, single, complete, average"):
        resolve_config(_cnn(tiny_config, linkage="centroid"))


def test_a_schedule_without_any_event_is_refused(tiny_config):
    # 8 epochs in all: prune_until 0.2 is epoch 2, before the first event at epoch 3
    with pytest.raises(ConfigError, match="would never prune"):
        resolve_config(_cnn(tiny_config, interval_epochs=3, prune_until=0.2))
    # an event after all 8 epochs would have no epoch left to train the pruned model
    with pytest.raises(ConfigError, match="would never prune"):
        resolve_config(_cnn(tiny_config, interval_epochs=8, prune_until=1.0))


def test_round_to_is_refused_for_reprune(tiny_config):
    """REPrune's per-layer counts come from a |gamma| threshold: a round_to would silently not apply."""
    from prunebench.config import resolve_config
    from prunebench.errors import ConfigError

    tiny_config["models"]["cnn"] = {"arch": "small_cnn"}
    tiny_config["experiments"]["t"] = {
        "datasets": ["synthetic"], "models": ["cnn"], "methods": ["refill", "reprune"],
        "overrides": {"prune": {"groups": ["channels"], "round_to": 8}, "reprune": {"interval_epochs": 1}},
    }  # fmt: skip
    with pytest.raises(ConfigError, match="round_to = 8, but reprune keeps any number of channels"):
        resolve_config(tiny_config)
