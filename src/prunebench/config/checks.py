"""Checks the schema cannot make alone: bounds between keys. (What a method needs of its group is its
class's ``check_config``; checks that build the models on the `meta` device are in
:mod:`prunebench.prepare.models`.)"""

from __future__ import annotations

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
