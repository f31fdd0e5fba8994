import pytest

from prunebench.pruning.schedule import density_at


def test_state0_is_dense_and_last_state_reaches_target():
    for schedule in ("geometric", "linear", "constant"):
        assert density_at(0, 16, 0.7, schedule) == 1.0
        assert density_at(15, 16, 0.7, schedule) == pytest.approx(0.3)


def test_geometric_linear_constant_formulas():
    assert density_at(5, 16, 0.7, "geometric") == pytest.approx(0.3 ** (5 / 15))
    assert density_at(5, 16, 0.7, "linear") == pytest.approx(1 - 0.7 * 5 / 15)
    assert density_at(5, 16, 0.7, "constant") == pytest.approx(0.3)


def test_density_decreases_monotonically():
    for schedule in ("geometric", "linear"):
        values = [density_at(k, 16, 0.7, schedule) for k in range(16)]
        assert values == sorted(values, reverse=True)


def test_state_outside_chain_is_an_error():
    with pytest.raises(ValueError):
        density_at(16, 16, 0.7)
