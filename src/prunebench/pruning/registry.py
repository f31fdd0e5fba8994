"""Every pruning method by its config name (the schema's ``methods`` enum lists the same names)."""

from __future__ import annotations

from prunebench.pruning.groups import GroupSet
from prunebench.pruning.hooks import Dense, PruningMethod
from prunebench.pruning.refill import OneShot, RandomPruning, Refill
from prunebench.pruning.reprune import REPrune
from prunebench.pruning.rsst import RSST

METHODS: dict[str, type[PruningMethod]] = {
    cls.name: cls for cls in (Dense, Refill, RSST, REPrune, RandomPruning, OneShot)
}


def method_for(experiment: dict, state: int, groupsets: list[GroupSet]) -> PruningMethod:
    """The hooks of ``experiment``'s method for ``state``."""
    name = experiment["method"]
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; known: {', '.join(METHODS)}")
    return METHODS[name](experiment, state, groupsets)
