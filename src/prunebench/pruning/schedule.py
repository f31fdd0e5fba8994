"""The fraction of the budget kept per prune state, what the budget counts, and the epochs of each state.

Nothing here imports torch: the config (and so the Snakemake process) reads it too."""

from __future__ import annotations


def density_at(state: int, states: int, target_sparsity: float, schedule: str = "geometric") -> float:
    """Fraction of the budget's dense quantity kept in ``state`` (prune.budget: prunable groups, or with
    mixed ranking their parameters; the dense model's parameters; or its MACs).

    State 0 is dense; state S-1 reaches ``1 - target_sparsity``.
    """
    if state < 0 or state >= states:
        raise ValueError(f"state {state} outside 0..{states - 1}")
    if state == 0:
        return 1.0
    frac = state / (states - 1)
    if schedule == "geometric":
        return (1.0 - target_sparsity) ** frac
    if schedule == "linear":
        return 1.0 - target_sparsity * frac
    if schedule == "constant":
        return 1.0 - target_sparsity
    raise ValueError(f"unknown schedule {schedule!r}")


def default_budget(groups: list[str]) -> str:
    """prune.budget when the config leaves it out: ``macs`` for CNN-channel experiments (what CNN
    pruning papers report), ``groups`` otherwise."""
    return "macs" if list(groups) == ["channels"] else "groups"


def budget_kind(prune_cfg: dict) -> str:
    """What a state's budget counts: ``prune.budget``, or its default for the group kinds."""
    return prune_cfg.get("budget") or default_budget(prune_cfg.get("groups", []))


def state_epochs(experiment: dict, state: int) -> int:
    """Training epochs of ``state`` (state 0 may train longer than pruned states), before any
    masked fine-tune (the method's :meth:`~prunebench.pruning.hooks.PruningMethod.finetune_epochs`)."""
    train = experiment["train"]
    if state == 0 and train.get("state0_epochs"):
        return int(train["state0_epochs"])
    return int(train["epochs"])


def chain_epochs(experiment: dict) -> int:
    """Training epochs of the whole state chain (what REPrune's schedule spans)."""
    return sum(state_epochs(experiment, k) for k in range(experiment["prune"]["states"]))
