"""The fraction of the budget kept per prune state."""

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
