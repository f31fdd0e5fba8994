"""The analyses on small hand-made tables, where the right answer is obvious."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from prunebench.report import analysis as A
from prunebench.report import stats


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


def test_retention_is_relative_to_the_equally_trained_dense_chain():
    """Each state against the dense chain's state of the same index and seed: the chain's own
    retention is 100 % at every state; a seed without a dense chain falls back to the dense state 0."""
    rows = [("d", "dense", 0, k, acc, acc + 1, 0, 1.0) for k, acc in enumerate([80.0, 84.0, 88.0])]
    rows += [("a", "refill", 0, k, acc, acc, 0, 0.5) for k, acc in enumerate([80.0, 83.0, 77.0])]
    rows += [("b", "refill", 1, 1, 50.0, 50.0, 0, 0.5)]
    s = _states(rows)
    s["reference"] = ["shared/g-s0"] * 6 + ["shared/h-s1"]
    refs = pd.DataFrame({"reference": ["shared/g-s0", "shared/h-s1"], "final_test_acc": [80.0, 100.0],
                         "best_test_acc": [81.0, 100.0]})  # fmt: skip
    r = A.retention(s, refs).set_index(["experiment", "state"])
    for k in range(3):
        assert r.at[("d", k), "final_retention"] == pytest.approx(100.0)
        assert r.at[("d", k), "best_retention"] == pytest.approx(100.0)
        assert r.at[("d", k), "ref_kind"] == "chain"
    assert r.at[("a", 1), "final_retention"] == pytest.approx(100.0 * 83.0 / 84.0)  # not / 80 (state 0)
    assert r.at[("a", 2), "final_vs_dense"] == pytest.approx(77.0 - 88.0)
    assert r.at[("a", 0), "final_retention"] == pytest.approx(100.0)  # the same dense start
    # seed 1 has no dense chain: its state-0 reference, marked as such (under-trained)
    assert r.at[("b", 1), "final_retention"] == pytest.approx(50.0) and r.at[("b", 1), "ref_kind"] == "state 0"


def test_wilson_by_hand():
    # 90 % of 359 images: p = 0.9, z = 1.96 -> centre and half-width worked out from the formula
    z, n, p = A.Z95, 359, 0.9
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    lo, hi = A.wilson(90.0, n)
    assert (lo, hi) == pytest.approx((100 * (centre - half), 100 * (centre + half)))
    assert lo == pytest.approx(86.46, abs=0.01) and hi == pytest.approx(92.69, abs=0.01)  # by hand, 4 digits
    assert A.wilson(100.0, 50)[1] == pytest.approx(100.0)


def _half_image_var(acc, n):
    p = (acc / 100 * n + 0.5) / (n + 1)
    return 1e4 * p * (1 - p) / (n + 1)


def test_one_seed_compares_two_models_and_gives_no_verdict():
    # 3 images of 359 (the ViT gap), no predictions stored: unpaired test-set interval
    d = A.difference({0: 95.82}, {0: 94.99}, 359, 359)
    var = _half_image_var(95.82, 359) + _half_image_var(94.99, 359)
    assert (d["lo"], d["hi"]) == pytest.approx((0.83 - 1.959964 * math.sqrt(var), 0.83 + 1.959964 * math.sqrt(var)))
    assert d["verdict"] == A.ONE_SEED == "one seed: no verdict; run >= 3 seeds"
    assert "predictions not recorded" in d["how"]
    assert A.difference({0: 95.0}, {0: 70.0}, 359, 359)["verdict"] == A.ONE_SEED  # however large


def _predictions(n, a_only, b_only, both_wrong=0, exp=("a", "b"), state=1, targets=None):
    """Two states' predictions.npz contents: a right and b wrong on a_only images, the reverse on
    b_only, both wrong on both_wrong, both right on the rest."""
    t = np.arange(n, dtype=np.int16) % 10 if targets is None else targets
    wrong = (t + 1) % 10
    fa, fb = t.copy(), t.copy()
    fb[:a_only] = wrong[:a_only]
    fa[a_only : a_only + b_only] = wrong[a_only : a_only + b_only]
    k = a_only + b_only
    fa[k : k + both_wrong] = wrong[k : k + both_wrong]
    fb[k : k + both_wrong] = wrong[k : k + both_wrong]
    return {
        (exp[0], state): {"targets": t, "final": fa, "best": fa},
        (exp[1], state): {"targets": t, "final": fb, "best": fb},
    }


def test_exact_mcnemar_from_stored_predictions_by_hand():
    pred = _predictions(100, a_only=7, b_only=2, both_wrong=5)
    # exact binomial test of 7 of 9 discordant images at 1/2: 2 x P(X <= 2), X ~ Bin(9, 1/2)
    by_hand = 2 * (math.comb(9, 0) + math.comb(9, 1) + math.comb(9, 2)) / 2**9
    assert by_hand == pytest.approx(0.1796875)
    mc = stats.mcnemar_exact(pred[("a", 1)]["final"] == pred[("a", 1)]["targets"],
                             pred[("b", 1)]["final"] == pred[("b", 1)]["targets"])  # fmt: skip
    assert (mc["a_only"], mc["b_only"]) == (7, 2) and mc["p"] == pytest.approx(by_hand)
    d = A.difference({0: 88.0}, {0: 83.0}, 100, 100, {0: [("a", 1, 1.0)]}, {0: [("b", 1, 1.0)]}, pred)
    assert d["mcnemar_p"] == pytest.approx(by_hand) and d["verdict"] == A.ONE_SEED and d["paired"]
    # the paired test-set variance: per-image differences +1 x 7, -1 x 2, half an image in each cell
    n2 = 102
    var = 1e4 * ((7 + 2 + 1) / n2 - (5 / n2) ** 2) / n2
    assert (d["lo"], d["hi"]) == pytest.approx((5.0 - 1.959964 * math.sqrt(var), 5.0 + 1.959964 * math.sqrt(var)))
    assert stats.mcnemar_exact([True, False], [True, False])["p"] == 1.0  # no discordant image


def test_three_seeds_one_image_apart_never_give_a_zero_width_interval():
    """The reviewer's case: A beats B by one image in each of 3 seeds. The per-seed differences are
    equal (sample variance 0): the interval is floored at the paired test-set variance, is wider than
    the test-set interval alone, and no verdict follows."""
    n = 359
    pred, a_parts, b_parts = {}, {}, {}
    for seed in range(3):
        pred.update(_predictions(n, 1, 0, both_wrong=20, exp=(f"a{seed}", f"b{seed}")))
        a_parts[seed], b_parts[seed] = [(f"a{seed}", 1, 1.0)], [(f"b{seed}", 1, 1.0)]
    a = {s: 100 * (n - 20) / n for s in range(3)}
    b = {s: 100 * (n - 21) / n for s in range(3)}
    a[3] = 90.0  # a seed only a ran: left out, and named
    d = A.difference(a, b, n, n, a_parts, b_parts, pred)
    one = 100 / n
    floor = 1e4 * ((1 + 1) / (n + 2) - (1 / (n + 2)) ** 2) / (n + 2)  # +1 once, half an image per cell
    half = 4.302652729911275 * math.sqrt(floor / 3)  # t(0.975, 2 df), the floored variance over 3 seeds
    assert d["diff"] == pytest.approx(one)
    assert (d["lo"], d["hi"]) == pytest.approx((one - half, one + half))
    assert d["hi"] - d["lo"] > 0 and d["lo"] < 0 < d["hi"]
    test_alone = 2 * 1.959964 * math.sqrt(floor / 3)
    assert d["hi"] - d["lo"] > test_alone and (d["test_hi"] - d["test_lo"]) == pytest.approx(test_alone)
    assert d["left_out"] == ["seed 3 (only a)"] and d["n"] == 3 and d["verdict"] is None
    # with a real spread between seeds, the sample variance rules
    spread = A.difference({0: 80.0, 1: 82.0, 2: 81.0}, {0: 78.0, 1: 81.5, 2: 79.0}, 10_000, 10_000)
    dd = [2.0, 0.5, 2.0]
    half = 4.302652729911275 * np.std(dd, ddof=1) / math.sqrt(3)
    assert (spread["lo"], spread["hi"]) == pytest.approx((np.mean(dd) - half, np.mean(dd) + half))


def test_holm_by_hand():
    # sorted: 0.005 x 4 = 0.02, 0.01 x 3 = 0.03, 0.03 x 2 = 0.06, 0.04 x 1 = 0.04 -> 0.06 (monotone)
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # 0.5 x 2 = 1, then monotone: 0.9 -> 1
    assert stats.holm([]) == []


def test_matched_levels_are_pruned_costs_and_never_interpolate_through_state_0():
    s = pd.DataFrame({"method": ["refill"] * 3 + ["rsst"] * 3 + ["dense"] * 2, "seed": 0,
                      "state": [0, 1, 2, 0, 1, 2, 0, 1], "experiment": ["r"] * 3 + ["s"] * 3 + ["d"] * 2,
                      "macs_kept": [100.0, 60.0, 40.0, 100.0, 70.0, 45.0, 100.0, 100.0],
                      "final_test_acc": [90.0, 88.0, 80.0, 90.0, 87.0, 85.0, 90.0, 91.0], "test_size": 359})  # fmt: skip
    # the measured costs of the pruned states; neither 100 % (state 0, the dense chain) nor grid levels
    assert A.matched_levels(s) == [70.0, 60.0, 45.0, 40.0]
    m = A.matched_cost(s).set_index(["level", "method"])
    assert "dense" not in set(A.matched_cost(s)["method"])
    assert m.at[(60.0, "refill"), "mean"] == 88.0 and m.at[(60.0, "refill"), "measured"]
    # refill at 70 %: above its pruned states (60, 40), and state 0 (100 %) is not interpolated through
    assert m.at[(70.0, "refill"), "n"] == 0 and math.isnan(m.at[(70.0, "refill"), "mean"])
    assert m.at[(60.0, "rsst"), "mean"] == pytest.approx(85.0 + 2.0 * 15 / 25) and m.at[(60.0, "rsst"), "interpolated"]
    assert m.at[(60.0, "rsst"), "parts"][0] == [("s", 2, pytest.approx(0.4)), ("s", 1, pytest.approx(0.6))]
    assert m.at[(45.0, "refill"), "mean"] == pytest.approx(82.0)
    assert m.at[(40.0, "rsst"), "n"] == 0  # below its range: never extrapolated
    assert A.common_level(A.matched_cost(s)) == 45.0  # the lowest level both reached


def test_costs_within_the_budget_tolerance_are_one_level():
    s = pd.DataFrame({"method": ["refill", "refill", "random", "random"], "seed": 0, "state": [0, 1, 0, 1],
                      "experiment": ["r", "r", "q", "q"], "macs_kept": [100.0, 29.9, 100.0, 30.3],
                      "final_test_acc": [90.0, 80.0, 90.0, 70.0], "test_size": 359})  # fmt: skip
    assert A.MATCH_TOL == 0.5
    assert A.matched_levels(s) == [pytest.approx(30.1)]
    m = A.matched_cost(s).set_index(["level", "method"])
    assert all(m["measured"]) and list(m["mean"]) == [70.0, 80.0]
    d = A.matched_differences(A.matched_cost(s))
    assert len(d) == 1 and d.iloc[0]["verdict"] == A.ONE_SEED and not d.iloc[0]["bearing"]


def test_verdicts_come_after_holm_over_every_verdict_bearing_pair():
    rows = []
    for seed, (ra, rb, rc) in enumerate([(80.0, 70.0, 79.0), (81.0, 71.0, 80.5), (80.5, 70.2, 80.0)]):
        for method, acc in (("refill", ra), ("random", rb), ("rsst", rc)):
            rows.append({"method": method, "seed": seed, "state": 1, "experiment": f"{method}{seed}",
                         "macs_kept": 50.0, "final_test_acc": acc, "test_size": 10_000})  # fmt: skip
    d = A.matched_differences(A.matched_cost(pd.DataFrame(rows))).set_index(["a", "b"])
    assert d.attrs["m"] == 3 and d["bearing"].all()
    assert d["holm_p"].tolist() == pytest.approx(stats.holm(d["p"].tolist()))
    assert d.at[("random", "refill"), "verdict"] == "b better"  # refill (b) 10 points better, over 3 seeds
    assert d.at[("refill", "rsst"), "verdict"] == "inconclusive"
    t = A.matched_differences(A.matched_cost(pd.DataFrame(rows)))
    # the t test behind p: mean / (s / sqrt(3)), 2 df
    r = t[(t["a"] == "random") & (t["b"] == "refill")].iloc[0]
    dd = [-10.0, -10.0, -10.3]
    floor = np.mean([_half_image_var(x, 10_000) + _half_image_var(y, 10_000) for x, y in
                     [(70.0, 80.0), (71.0, 81.0), (70.2, 80.5)]])  # fmt: skip
    se = math.sqrt(max(np.var(dd, ddof=1), floor) / 3)
    assert r["p"] == pytest.approx(2 * scipy_stats.t.sf(abs(np.mean(dd)) / se, 2))


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


def test_dynamics_use_val_where_test_was_evaluated_at_some_epochs_only():
    old = _epochs([0.0, 1.0, 2.0, 4.0])
    assert A.dynamics(old).iloc[0]["metric"] == "test_acc"
    new = old.assign(test_acc=[5.0, math.nan, 9.0, 9.5], val_acc=[0.0, 1.0, 2.0, 4.0], evaluated=True)
    row = A.dynamics(new).iloc[0]  # train.eval_test: best_and_final (epoch 2 the best): val per epoch
    assert row["metric"] == "val_acc" and row["convergence"] == pytest.approx(2.0)
    states = pd.DataFrame([{"experiment": "e", "state": 1, "final_test_acc": 9.5}])
    assert not A.anomalies(states, new)  # a val-only evaluation is not a NaN test accuracy
    assert A.anomalies(states, new.assign(val_acc=[0.0, math.nan, 2.0, 4.0]))  # a NaN val still is


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


def test_recovery_uses_the_accuracy_logged_right_after_an_event():
    s = _states([("r", "reprune", 0, 1, 90.0, 90.0, 85.0, 0.5), ("r", "reprune", 0, 2, 91.0, 91.0, 89.0, 0.4),
                 ("f", "refill", 0, 1, 88.0, 88.0, 70.0, 0.5)])  # fmt: skip
    s["event_epochs"] = [[2, 4], [], []]
    ep = _epochs([85.0, 80.0, 84.0, 86.0, 88.0], experiment="r", state=1)
    ep["after_prune_test_acc"] = [math.nan, math.nan, 60.0, math.nan, 75.0]
    r = A.recovery(s, ep).set_index(["experiment", "state"])
    assert r.at[("r", 1), "acc_after_pruning"] == 75.0 and r.at[("r", 1), "recovery"] == pytest.approx(15.0)
    assert r.at[("r", 1), "when"] == "right after the event at epoch 4"
    assert r.at[("r", 2), "when"] == "epoch 0 (no pruning event in this state)"
    assert r.at[("f", 1), "when"] == "epoch 0, right after the state's pruning"
    # files written before the field existed: epoch 0, labelled as before the event
    old = A.recovery(s, ep.drop(columns="after_prune_test_acc")).set_index(["experiment", "state"])
    assert old.at[("r", 1), "acc_after_pruning"] == 85.0
    assert old.at[("r", 1), "when"] == "before the events (epoch 0; not recorded after them)"
