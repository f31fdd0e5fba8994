"""The analyses on small hand-made tables, where the right answer is obvious."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from prunebench.report import analysis as A


def _states(rows):
    cols = ["experiment", "method", "seed", "state", "final_test_acc", "best_test_acc", "acc_after_pruning", "density"]
    return pd.DataFrame(rows, columns=cols)


def _epochs(accs, train_loss=None, experiment="e", state=1):
    n = len(accs)
    return pd.DataFrame(
        {
            "experiment": experiment,
            "method": "refill",
            "seed": 0,
            "state": state,
            "epoch": range(n),
            "test_acc": accs,
            "val_acc": accs,
            "train_acc": [math.nan] + [a + 1.0 for a in accs[1:]],
            "train_loss": train_loss or [math.nan] + [1.0] * (n - 1),
            "val_loss": [0.5] * n,
        }
    )


def test_retention_is_relative_to_the_dense_reference_not_a_state_0():
    s = _states([("a", "reprune", 0, 0, 60.0, 60, 0, 0.5), ("a", "reprune", 0, 1, 72.0, 72, 0, 0.4),
                 ("b", "refill", 1, 1, 50.0, 50, 0, 0.5)])  # fmt: skip
    s["reference"] = ["shared/g-s0", "shared/g-s0", "shared/g-s1"]
    refs = pd.DataFrame({"reference": ["shared/g-s0", "shared/g-s1"], "final_test_acc": [80.0, 100.0],
                         "best_test_acc": [90.0, 100.0]})  # fmt: skip
    r = A.retention(s, refs).set_index(["experiment", "state"])
    # REPrune's pruned state 0 (60 %) is not its reference: the dense model (80 %) is
    assert r.at[("a", 1), "final_retention"] == pytest.approx(90.0)
    assert r.at[("a", 0), "final_vs_dense"] == pytest.approx(-20.0)
    assert r.at[("a", 1), "best_retention"] == pytest.approx(80.0)
    assert r.at[("b", 1), "final_retention"] == pytest.approx(50.0)


def test_wilson_and_newcombe_by_hand():
    # 90 % of 359 images: p = 0.9, z = 1.96 -> centre and half-width worked out from the formula
    z, n, p = A.Z95, 359, 0.9
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    lo, hi = A.wilson(90.0, n)
    assert (lo, hi) == pytest.approx((100 * (centre - half), 100 * (centre + half)))
    assert lo == pytest.approx(86.46, abs=0.01) and hi == pytest.approx(92.69, abs=0.01)  # by hand, 4 digits
    assert A.wilson(100.0, 50)[1] == pytest.approx(100.0)
    # 3 images of 359 (the ViT gap): well within noise
    d = A.difference({0: 95.82}, {0: 94.99}, 359, 359)
    (la, ua), (lb, ub) = A.wilson(95.82, 359), A.wilson(94.99, 359)
    assert d["lo"] == pytest.approx(0.83 - math.hypot(95.82 - la, ub - 94.99))
    assert d["hi"] == pytest.approx(0.83 + math.hypot(ua - 95.82, 94.99 - lb))
    assert d["verdict"] == "within noise" and d["how"] == "test set (Newcombe)"
    assert A.difference({0: 95.0}, {0: 70.0}, 359, 359)["verdict"] == "a better"


def test_paired_t_interval_over_seeds():
    a, b = {0: 80.0, 1: 82.0, 2: 81.0}, {0: 78.0, 1: 81.5, 2: 79.0}
    d = [2.0, 0.5, 2.0]
    half = 4.302652729911275 * np.std(d, ddof=1) / math.sqrt(3)  # t(0.975, 2 df)
    out = A.difference(a, b)
    assert out["diff"] == pytest.approx(np.mean(d))
    assert (out["lo"], out["hi"]) == pytest.approx((np.mean(d) - half, np.mean(d) + half))
    assert out["how"] == "t over 3 seeds" and out["verdict"] == "within noise"
    assert A.difference({0: 80, 1: 82}, {0: 70, 1: 72.5})["verdict"] == "a better"


def test_matched_cost_interpolates_only_inside_the_measured_range():
    s = pd.DataFrame({"method": ["refill"] * 3 + ["rsst"] * 2, "seed": 0, "state": [0, 1, 2, 1, 2],
                      "macs_kept": [100.0, 60.0, 40.0, 70.0, 45.0], "final_test_acc": [90.0, 88.0, 80.0, 87.0, 85.0],
                      "test_size": 359})  # fmt: skip
    # the multiples of 10 inside the measured range (40..100), and 45: the lowest level both reached
    assert A.matched_levels(s) == [100.0, 90.0, 80.0, 70.0, 60.0, 50.0, 45.0, 40.0]
    m = A.matched_cost(s).set_index(["level", "method"])
    assert m.at[(60.0, "refill"), "mean"] == 88.0 and not m.at[(60.0, "refill"), "interpolated"]
    assert m.at[(50.0, "refill"), "mean"] == pytest.approx(84.0) and m.at[(50.0, "refill"), "interpolated"]
    assert m.at[(45.0, "refill"), "mean"] == pytest.approx(82.0)
    assert m.at[(45.0, "rsst"), "mean"] == 85.0 and not m.at[(45.0, "rsst"), "interpolated"]
    assert m.at[(60.0, "rsst"), "mean"] == pytest.approx(85.0 + 2.0 * 15 / 25)
    assert math.isnan(m.at[(80.0, "rsst"), "mean"]) and m.at[(80.0, "rsst"), "n"] == 0  # above its range
    assert math.isnan(m.at[(40.0, "rsst"), "mean"])  # below it: never extrapolated


def test_no_difference_is_given_for_a_method_at_its_dense_state_0():
    """At 100 % Refill's and RSST's value is the shared dense state 0 (one state of training), the
    dense chain's its last state: those pairs would measure training length, not pruning."""
    s = pd.DataFrame({"method": ["dense"] * 3 + ["refill"] * 3 + ["rsst"] * 3, "seed": 0, "state": [0, 1, 2] * 3,
                      "macs_kept": [100.0] * 3 + [100.0, 60.0, 40.0, 100.0, 70.0, 40.0],
                      "final_test_acc": [80.0, 85.0, 90.0, 80.0, 88.0, 86.0, 80.0, 87.0, 85.0],
                      "test_size": 359})  # fmt: skip
    m = A.matched_cost(s).set_index(["level", "method"])
    assert m.at[(100.0, "refill"), "state0"] and not m.at[(100.0, "dense"), "state0"]
    assert m.at[(100.0, "dense"), "mean"] == 90.0  # the chain's last state
    assert not m.at[(90.0, "refill"), "state0"]  # interpolated between state 0 and state 1
    d = A.matched_differences(A.matched_cost(s))
    assert 100.0 not in set(d["level"]) and {(r.a, r.b) for r in d.itertuples()} == {("refill", "rsst")}
    assert sorted(set(d["level"]), reverse=True) == [90.0, 80.0, 70.0, 60.0, 50.0, 40.0]


def test_a_floor_that_prints_as_a_grid_level_is_one_row():
    s = pd.DataFrame({"method": ["refill", "refill", "random", "random"], "seed": 0, "state": [0, 1, 0, 1],
                      "macs_kept": [100.0, 29.9, 100.0, 29.98], "final_test_acc": 90.0, "test_size": 359})  # fmt: skip
    levels = A.matched_levels(s)
    assert levels[-1] == 29.98 and 30.0 not in levels
    assert len({f"{v:.1f}" for v in levels}) == len(levels)


def test_method_order_puts_baselines_between_dense_and_methods():
    assert A.method_order(["rsst", "random", "dense", "refill", "oneshot"]) == [
        "dense",
        "random",
        "oneshot",
        "refill",
        "rsst",
    ]


def test_dynamics_windows():
    # 12 trained epochs: last 5 = 7..11 -> values 17..21 vs 12..16
    d = A.dynamics(_epochs([0.0] + [10.0 + e for e in range(1, 13)]))
    row = d.iloc[0]
    assert row["window"] == 5
    assert row["convergence"] == pytest.approx(5.0)
    assert row["stability"] == pytest.approx(np.std([18, 19, 20, 21, 22], ddof=1))
    assert row["gap"] == pytest.approx(1.0)
    # 3 trained epochs: halves of one epoch each
    assert A.dynamics(_epochs([0.0, 1.0, 2.0, 4.0])).iloc[0]["window"] == 1


def test_anomaly_drop_needs_a_real_drop():
    rows = [("e", "refill", 0, k, acc, acc, 0, 1) for k, acc in enumerate([90, 89, 70, 88, 87])]
    found = A.anomalies(_states(rows), _epochs([0.0]))
    assert [(a["state"], a["kind"]) for a in found] == [(2, "drop")]


def test_nan_and_divergence_are_named():
    ep = _epochs([50.0, 60.0, math.nan, 70.0, 71.0], train_loss=[math.nan, 1.0, 0.5, 0.4, 1.2])
    kinds = {a["kind"]: a["message"] for a in A.anomalies(_states([]), ep)}
    assert kinds["nan"] == "e state 1: epoch 2 has NaN val_acc, test_acc, train_acc"
    assert kinds["divergence"].startswith("e state 1: training loss rose to 1.2")


def test_completeness_lists_missing_states():
    plan = pd.DataFrame([{"experiment": "e", "method": "rsst", "seed": 0, "states": 4}])
    c = A.completeness(plan, _states([("e", "rsst", 0, k, 1, 1, 1, 1) for k in (0, 2)])).iloc[0]
    assert (c["done"], c["planned"], c["missing"]) == (2, 4, [1, 3])
