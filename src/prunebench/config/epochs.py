"""How many epochs a state and a chain train."""

from __future__ import annotations


def state_epochs(experiment: dict, state: int) -> int:
    """Training epochs of ``state`` (state 0 may train longer than pruned states), before any
    masked fine-tune (:func:`finetune_epochs`)."""
    train = experiment["train"]
    if state == 0 and train.get("state0_epochs"):
        return int(train["state0_epochs"])
    return int(train["epochs"])


def chain_epochs(experiment: dict) -> int:
    """Training epochs of the whole state chain (what REPrune's schedule spans)."""
    return sum(state_epochs(experiment, k) for k in range(experiment["prune"]["states"]))


def finetune_epochs(experiment: dict, state: int) -> int:
    """Epochs of RSST's masked fine-tune after its hard mask, at the end of every pruned state."""
    if experiment["method"] == "rsst" and state >= 1:
        return int(experiment.get("rsst", {}).get("finetune_epochs", 0))
    return 0
