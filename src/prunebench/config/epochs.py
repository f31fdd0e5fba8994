"""How many epochs a state and a chain train (the helpers live in :mod:`prunebench.pruning.schedule`,
which the methods read too; a method's class declares its masked fine-tune)."""

from __future__ import annotations

from prunebench.pruning.registry import declared
from prunebench.pruning.schedule import chain_epochs, state_epochs

__all__ = ["chain_epochs", "finetune_epochs", "state_epochs"]


def finetune_epochs(experiment: dict, state: int) -> int:
    """Epochs ``state`` trains after its ``train.epochs``: its method's
    :meth:`~prunebench.pruning.hooks.PruningMethod.finetune_epochs` (RSST's masked fine-tune after its
    hard mask, at the end of every pruned state; none for the others)."""
    return declared(experiment["method"]).finetune_epochs(experiment, state)
