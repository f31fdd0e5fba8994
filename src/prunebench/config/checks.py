"""Checks the schema cannot make alone: bounds between keys and what a method needs of its group.
(Checks that build the models on the `meta` device are in :mod:`prunebench.prepare.models`.)"""

from __future__ import annotations

from prunebench.archs import family_of
from prunebench.config.epochs import chain_epochs
from prunebench.errors import ConfigError


def check_settings(source: str, group: str, spec: dict, settings: dict) -> None:
    """Settings that the schema cannot judge alone: bounds between keys."""
    where = f"invalid {source}:\n  experiments.{group}"
    train = settings["train"]
    if train["min_lr"] > train["lr"]:
        raise ConfigError(
            f"{where}: train.min_lr = {train['min_lr']} is above train.lr = {train['lr']} (from defaults or the "
            "group's overrides); the learning rate decays from lr to min_lr, so set min_lr <= lr"
        )
    world = train["gpus"] * train["nodes"]
    if train["batch_size"] % world:
        raise ConfigError(
            f"{where}: train.batch_size = {train['batch_size']} does not split into {world} equal shards "
            f"(train.gpus x train.nodes = {train['gpus']} x {train['nodes']}); set batch_size to a multiple "
            f"of {world} (it is the global batch of all GPUs together)"
        )
    timed, n = settings["measure"]["states"], settings["prune"]["states"]
    if isinstance(timed, list) and max(timed) >= n:
        raise ConfigError(
            f"{where}: measure.states lists state {max(timed)}, but the group has {n} states (0..{n - 1}); list "
            f'states below {n} (in the group\'s overrides if other groups have more), or use "last" or "all"'
        )


def check_reprune(source: str, group: str, spec: dict, models: dict, settings: dict) -> None:
    """REPrune prunes CNN channels during training: refuse setups where it could not."""
    where = f"invalid {source}:\n  experiments.{group}"
    for model_key in spec["models"]:
        if family_of(models[model_key]["arch"]) != "cnn":
            raise ConfigError(
                f"{where}: method reprune prunes CNN channels, but model {model_key!r} "
                f"({models[model_key]['arch']}) is not a prunebench CNN; run reprune in a group of CNNs"
            )
    if "channels" not in settings["prune"]["groups"]:
        raise ConfigError(f"{where}: method reprune needs `channels` in prune.groups (set it in the group's overrides)")
    if settings["prune"].get("round_to", 1) > 1:
        raise ConfigError(
            f"{where}: prune.round_to = {settings['prune']['round_to']}, but reprune keeps any number of "
            "channels per layer (its counts come from one |BN gamma| threshold), so its widths would not be "
            "rounded like the other methods'; set round_to: 1 in this group, or run reprune in a group of its own"
        )
    rcfg, total = settings["reprune"], chain_epochs(settings)
    if round(rcfg["prune_until"] * total) < rcfg["interval_epochs"] or rcfg["interval_epochs"] >= total:
        raise ConfigError(
            f"{where}: reprune would never prune: its first event comes after {rcfg['interval_epochs']} trained "
            f"epochs, which must be within prune_until x {total} epochs and before the chain's last epoch; "
            "raise reprune.prune_until or lower reprune.interval_epochs"
        )
