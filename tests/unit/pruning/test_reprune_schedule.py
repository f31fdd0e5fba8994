"""REPrune's schedule: which share of the budget an event prunes, and how much it regrows."""

import pytest

from prunebench.pruning.representatives import ramp_fraction, regrow_fraction


def test_ramps_reach_the_whole_budget_at_t_prune():
    assert [ramp_fraction(e, 10, "linear") for e in (2, 5, 10, 12)] == [0.2, 0.5, 1.0, 1.0]
    assert ramp_fraction(5, 10, "cubic") == pytest.approx(0.875)
    assert ramp_fraction(1, 10, "constant") == 1.0


def test_regrowth_decays_with_a_cosine_to_zero():
    assert regrow_fraction(0, 10, 0.4) == pytest.approx(0.4)
    assert regrow_fraction(5, 10, 0.4) == pytest.approx(0.2)
    assert regrow_fraction(10, 10, 0.4) == pytest.approx(0.0)
