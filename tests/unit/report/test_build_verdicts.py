"""Rendered reports with stored predictions (predictions.npz): a 3-seed group whose verdicts come
from paired per-seed differences and Holm's correction, and a one-seed group that compares models
and gives no verdict. The expected numbers are recomputed here by hand from the written arrays."""

from __future__ import annotations

import html
import json
import math
import statistics
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from prunebench.report.build import build_reports

from .conftest import _write_reference
from .markdown import assert_cell, sections, tables

N = 200  # test images
T2 = 4.302652729911275  # t(0.975, 2 df)
# wrong images per (method, state), plus the seed's offset (seed x step)
WRONG = {
    "dense": ([30, 26, 24], 1),
    "refill": ([30, 36, 44], 1),
    "random": ([30, 50, 62], 2),
}
MACS = {"dense": [1.0, 1.0, 1.0], "refill": [1.0, 0.60, 0.40], "random": [1.0, 0.602, 0.398]}
SOLO = {"rsst": [30, 40, 50], "random": [30, 47, 58]}  # the one-seed comparison's wrong images


def _wrong(method, seed, state, solo=False):
    if solo:
        return SOLO[method][state]
    counts, step = WRONG[method]
    return counts[state] + (0 if state == 0 else step * seed)


def _correct(seed, wrong):
    """Correct per image: the first ``wrong`` images of the seed's order are wrong, so that the
    methods of one seed fail on the same hard images (a paired comparison)."""
    c = np.ones(N, dtype=bool)
    c[np.random.default_rng(seed).permutation(N)[:wrong]] = False
    return c


def _write(results: Path, group, model, methods, seeds, solo=False, config=None):
    targets = (np.arange(N) % 10).astype(np.int16)
    for method in methods:
        for seed in seeds:
            exp = f"{group}-digits-{model}-{method}-s{seed}"
            for state in range(3):
                c = _correct(seed, _wrong(method, seed, state, solo))
                final = np.where(c, targets, (targets + 1) % 10).astype(np.int16)
                acc = 100.0 * c.mean()
                ids = {"experiment": exp, "method": method, "dataset": "digits", "model": model, "seed": seed,
                       "state": state}  # fmt: skip
                out = results / exp / f"state{state}"
                out.mkdir(parents=True)
                np.savez_compressed(out / "predictions.npz", targets=targets, final=final, best=final)
                rows = [{**ids, "epoch": e, "test_acc": acc, "val_acc": acc, "val_loss": 0.5,
                         "train_loss": None if e == 0 else 0.5, "train_acc": None if e == 0 else acc,
                         "lr": None if e == 0 else 0.1 / e} for e in range(3)]  # fmt: skip
                (out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
                kept = MACS.get(method, MACS["refill"])[state]
                cost = {"dense": {"macs": 1_000_000, "params": 10_000},
                        "compact": {"macs": round(1_000_000 * kept), "params": round(10_000 * kept)}}  # fmt: skip
                summary = {**ids, "epochs": 2, "best_epoch": 2, "best_test_acc": acc, "final_test_acc": acc,
                           "density": kept, "test_size": N, "cost": cost, "params_dense": 10_000,
                           "params_alive": round(10_000 * kept), "device": "cpu", "wall_seconds": 1.0}  # fmt: skip
                if config and method in config:
                    summary["provenance"] = {"experiment": {**config[method], "name": exp, "group": group,
                                                            "method": method, "seed": seed}}  # fmt: skip
                if state == 0:
                    summary["shared_state0"] = f"results/shared/{group}-digits-{model}-s{seed}/state0"
                (out / "summary.json").write_text(json.dumps(summary))
    for seed in seeds:
        acc = 100.0 * _correct(seed, 30).mean()
        cost = {"dense": {"macs": 1_000_000, "params": 10_000}, "compact": {"macs": 1_000_000, "params": 10_000}}
        _write_reference(results, f"{group}-digits-{model}-s{seed}", "digits", model, seed, acc, acc, cost)


RSST_VARIANT = {
    "train": {"epochs": 2, "state0_epochs": 2, "optimizer": "sgd", "lr": 0.1, "momentum": 0.9,
              "weight_decay": 1e-4, "lr_schedule": "cosine", "warmup_epochs": 0},
    "prune": {"states": 3},
    "rsst": {"peak_at": 0.5, "finetune_epochs": 0, "reg_granularity_prune": 1.0},
}  # fmt: skip


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    results = tmp_path_factory.mktemp("verdicts") / "results"
    _write(results, "g", "cnn_t", ["dense", "refill", "random"], [0, 1, 2])
    _write(results, "solo", "cnn_u", ["rsst", "random"], [0], solo=True, config={"rsst": RSST_VARIANT})
    build_reports(results)
    read = {m: sections((results / "reports" / f"digits_{m}.md").read_text()) for m in ("cnn_t", "cnn_u")}
    return results, read


def _acc(method, seed, state, solo=False):
    return 100.0 * _correct(seed, _wrong(method, seed, state, solo)).mean()


def _paired_var(a, b):
    """By hand: per-image differences, half an image added to each cell of the paired table."""
    d = a.astype(float) - b.astype(float)
    n = N + 2
    return 1e4 * ((np.square(d).sum() + 1) / n - (d.sum() / n) ** 2) / n


def test_three_seed_verdicts_after_holm(reports):
    _, secs = reports
    text = secs["cnn_t"]["Accuracy at matched cost"]
    table, diffs = tables(text)
    assert [r["MACs kept %"] for r in table] == ["60.1", "39.9"]  # 60.0 and 60.2 are one cost (0.5 tolerance)
    assert "dense final" not in table[0]
    # by hand: per seed, random - refill and its paired test-set variance; t over 3 seeds, floored
    ps, expected = [], []
    for state in (1, 2):
        d, v = [], []
        for seed in range(3):
            ca = _correct(seed, _wrong("random", seed, state))
            cb = _correct(seed, _wrong("refill", seed, state))
            d.append(100 * (ca.mean() - cb.mean()))
            v.append(_paired_var(ca, cb))
        var = max(statistics.variance(d), statistics.mean(v))
        se = math.sqrt(var / 3)
        mean = statistics.mean(d)
        ps.append(2 * stats.t.sf(abs(mean) / se, 2))
        expected.append((mean, mean - T2 * se, mean + T2 * se))
    holm = sorted(ps)
    adjusted = {ps.index(holm[0]): 2 * holm[0], ps.index(holm[1]): max(2 * holm[0], holm[1])}
    assert [r["methods"] for r in diffs] == ["random - refill"] * 2
    for i, row in enumerate(diffs):
        assert_cell(row["difference (95 % interval)"], *expected[i])
        assert_cell(row["p"], ps[i]) if ps[i] >= 1e-4 else None
        assert_cell(row["Holm p"], adjusted[i])
        assert row["verdict"] == ("refill better" if adjusted[i] < 0.05 else "inconclusive")
        assert row["seeds"] == "0, 1, 2" and row["seeds left out"] == "none"
        assert "paired per image" in row["interval"]
    assert "refill better" in {r["verdict"] for r in diffs}
    assert "over all 2 verdict-bearing comparisons" in " ".join(text.split())
    # the lead section: the last common cost, its differences the same rows, and the dense chain
    lead = secs["cnn_t"]["Decision"]
    assert lead.startswith("\nAt 39.9 % of the dense model's MACs")
    methods, lead_diffs = tables(lead)
    assert lead_diffs == [diffs[1]]
    refill = next(r for r in methods if r["method"] == "refill")
    vals = [_acc("refill", s, 2) for s in range(3)]
    tv = [1e4 * p * (1 - p) / (N + 1) for p in ((v / 100 * N + 0.5) / (N + 1) for v in vals)]
    half = T2 * math.sqrt(max(statistics.variance(vals), statistics.mean(tv)) / 3)
    assert_cell(refill["final accuracy (95 % interval)"], statistics.mean(vals), statistics.mean(vals) - half,
                statistics.mean(vals) + half)  # fmt: skip
    assert "dense control chain reaches" in lead and "](digits_cnn_t/pareto.png)" in lead
    assert list(secs["cnn_t"])[:2] == ["Decision", "Contents"]


def test_no_verdict_at_unequal_cost(reports):
    _, secs = reports
    (rows,) = tables(secs["cnn_t"]["Method differences per state"])
    for row in rows:
        assert "better" not in " ".join(row.values())
        if row["methods"].startswith("dense"):
            assert row["cost"] == "unequal cost: no verdict"
        else:  # random and refill: 60.2 vs 60.0 % MACs, within the tolerance
            assert row["cost"] == "matched cost: verdict at matched cost"


def test_retention_against_the_dense_chain(reports):
    _, secs = reports
    (rows,) = tables(secs["cnn_t"]["Retention vs the dense reference"])
    assert [r["dense retention %"] for r in rows] == ["100.00 ± 0.00"] * 3  # its own: 100 % at every state
    for row in rows:
        k = int(row["state"])
        ret = [100 * _acc("refill", s, k) / _acc("dense", s, k) for s in range(3)]
        assert_cell(row["refill retention %"], statistics.mean(ret), statistics.stdev(ret))
    assert "Every state below has such a dense chain state." in secs["cnn_t"]["Dense reference"]


def test_one_seed_group_compares_models_with_mcnemar_and_no_verdict(reports):
    _, secs = reports
    lead = secs["cnn_u"]["Decision"]
    assert "One seed: no verdict; run >= 3 seeds." in lead
    _, diffs = tables(secs["cnn_u"]["Accuracy at matched cost"])
    assert diffs and all(html.unescape(r["verdict"]) == "one seed: no verdict; run >= 3 seeds" for r in diffs)
    assert "0 verdict-bearing comparisons" in " ".join(secs["cnn_u"]["Accuracy at matched cost"].split())
    # the exact McNemar test from the stored predictions, by hand: 2 x the binomial tail
    for row, state in zip(diffs, (1, 2)):
        a, b = _correct(0, SOLO["random"][state]), _correct(0, SOLO["rsst"][state])
        a_only, b_only = int(np.sum(a & ~b)), int(np.sum(~a & b))
        n = a_only + b_only
        tail = sum(math.comb(n, k) for k in range(min(a_only, b_only) + 1)) / 2**n
        assert row["p"].endswith("(McNemar)")
        assert_cell(row["p"], min(1.0, 2 * tail))
        assert row["Holm p"] == "-"


def test_a_variant_is_named_and_each_recipe_is_on_the_page(reports):
    _, secs = reports
    (rows,) = tables(secs["cnn_u"]["How each method trained"])
    by = {r["method"]: r for r in rows}
    # RSST with peak_at 0.5 (its summaries' stored config) is a variant, and its label says so
    assert "rsst (mask at 50 %)" in by
    r = by["rsst (mask at 50 %)"]
    assert "peak\\_at 0.5" in r["its own settings"] or "peak_at 0.5" in r["its own settings"]
    assert r["epochs per state"] == "state 0: 2; states 1-2: 2"
    assert r["optimizer"].startswith("sgd, lr 0.1") and r["learning rate"] == "cosine, warmup 0 epochs"
    assert r["schedule spans"] == "restarted at every state"
    assert by["random"]["optimizer"].startswith("not recorded")
