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


def test_retention_is_relative_to_the_same_runs_state0():
    s = _states([("a", "refill", 0, 0, 80.0, 80, 0, 1), ("a", "refill", 0, 1, 60.0, 60, 0, 0.5),
                 ("b", "refill", 1, 0, 50.0, 50, 0, 1), ("b", "refill", 1, 1, 50.0, 50, 0, 0.5)])  # fmt: skip
    r = A.retention(s).set_index(["experiment", "state"])["final_retention"]
    assert r[("a", 1)] == pytest.approx(75.0) and r[("b", 1)] == pytest.approx(100.0)


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


def test_seed_separation_uses_the_sum_of_stds():
    rows = [("a0", "refill", 0, 1, 80.0, 0, 0, 1), ("a1", "refill", 1, 1, 82.0, 0, 0, 1),
            ("b0", "rsst", 0, 1, 85.0, 0, 0, 1)]  # fmt: skip
    sep = A.seed_separation(_states(rows)).iloc[0]
    assert sep["diff"] == pytest.approx(-4.0)
    assert sep["spread"] == pytest.approx(np.std([80, 82], ddof=1))
    assert bool(sep["exceeds"])


def test_completeness_lists_missing_states():
    plan = pd.DataFrame([{"experiment": "e", "method": "rsst", "seed": 0, "states": 4}])
    c = A.completeness(plan, _states([("e", "rsst", 0, k, 1, 1, 1, 1) for k in (0, 2)])).iloc[0]
    assert (c["done"], c["planned"], c["missing"]) == (2, 4, [1, 3])
