"""Every number in a rendered comparison report equals the value recomputed from the fixture files.

The expected values are recomputed here with plain Python from the JSON files, independently of
prunebench.report's pandas code, and compared with the numbers parsed back from the Markdown.
"""

from __future__ import annotations

import bisect
import copy
import json
import math
import statistics
from pathlib import Path

import pytest

from .conftest import DATASET, FIXTURE_CONFIG, MODEL, TEST_SIZE, write_results
from .markdown import assert_cell, sections, tables

Z = 1.959963984540054  # the normal quantile of 0.975
T975 = {1: 12.706204736174707, 2: 4.302652729911275}  # Student t quantiles of 0.975 by degrees of freedom


def _mean_std(values):
    return (statistics.mean(values), statistics.stdev(values)) if len(values) > 1 else (values[0],)


def _wilson(acc, n=TEST_SIZE):
    p = acc / 100
    centre = (p + Z * Z / (2 * n)) / (1 + Z * Z / n)
    half = Z * math.sqrt(p * (1 - p) / n + Z * Z / (4 * n * n)) / (1 + Z * Z / n)
    return 100 * (centre - half), 100 * (centre + half)


def _acc(values):
    """What an accuracy cell shows: value (± std), then the Wilson interval at the mean."""
    return (*_mean_std(values), *_wilson(statistics.mean(values)))


def _test_var(acc, n=TEST_SIZE):
    """Test-set variance (points²) of one accuracy, half an image added to each outcome."""
    p = (acc / 100 * n + 0.5) / (n + 1)
    return 1e4 * p * (1 - p) / (n + 1)


def _diff(a: dict, b: dict):
    """a - b paired by seed and its 95 % interval. The fixture stores no predictions, so each seed's
    test-set variance is the unpaired one. One seed: normal interval; several: t over the seeds, the
    variance floored at the mean test-set variance."""
    common = sorted(set(a) & set(b))
    d = [a[s] - b[s] for s in common]
    v = [_test_var(a[s]) + _test_var(b[s]) for s in common]
    if len(d) == 1:
        half = Z * math.sqrt(v[0])
        return d[0], d[0] - half, d[0] + half
    half = T975[len(d) - 1] * math.sqrt(max(statistics.variance(d), statistics.mean(v)) / len(d))
    return statistics.mean(d), statistics.mean(d) - half, statistics.mean(d) + half


ONE_SEED = "one seed: no verdict; run &gt;= 3 seeds"  # as the Markdown escapes it


def _density(s):
    kept = sum(n for layer in s["kept"].values() for n in layer.values())
    return kept / sum(n for layer in s["group_sizes"].values() for n in layer.values())


def _macs_kept(s):
    return 100 * s["cost"]["compact"]["macs"] / s["cost"]["dense"]["macs"]


def _reference(refs, s, summaries):
    """The equally trained dense model: the dense chain's state of the same index and seed, else
    (no dense chain of that seed) the shared dense state 0 of the summary's group and seed."""
    chain = [x for x in _by(summaries, "dense", s["state"]) if x["seed"] == s["seed"]]
    if chain:
        return chain[0], ""
    return refs[f"{s['experiment'].split('-')[0]}-{DATASET}-{MODEL}-s{s['seed']}"], " (dense start)"


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """Built once for this module: rendering draws the plots, which takes seconds."""
    from prunebench.config import resolve_config
    from prunebench.report.build import build_reports
    from prunebench.report.load import plan_from_experiments

    results_dir = write_results(tmp_path_factory.mktemp("report"))
    build_reports(results_dir, plan_from_experiments(resolve_config(copy.deepcopy(FIXTURE_CONFIG)).experiments))
    md = (results_dir / "reports" / f"{DATASET}_{MODEL}.md").read_text()
    summaries = [json.loads(p.read_text()) for p in sorted(Path(results_dir).glob("*/state*/summary.json"))]
    metrics = {}
    for p in Path(results_dir).glob("*/state*/metrics.jsonl"):
        rows = [json.loads(line) for line in p.read_text().splitlines()]
        metrics[(rows[0]["experiment"], rows[0]["state"])] = rows
    refs = {
        p.parent.parent.name: json.loads(p.read_text()) for p in Path(results_dir).glob("shared/*/state0/summary.json")
    }
    assert len(refs) == 2
    metrics["refs"] = refs
    return sections(md), summaries, metrics


def _by(summaries, method=None, state=None):
    return [
        s for s in summaries if (method is None or s["method"] == method) and (state is None or s["state"] == state)
    ]


def test_accuracy_table(rendered):
    secs, summaries, _ = rendered
    (rows,) = tables(secs["Accuracy per state"])
    assert [int(r["state"]) for r in rows] == [0, 1, 2, 3]
    checked = 0
    for row in rows:
        k = int(row["state"])
        for method in ("refill", "rsst"):
            found = _by(summaries, method, k)
            if found:
                assert_cell(row[f"{method} density"], statistics.mean(map(_density, found)), where=f"{method} {k}")
                assert_cell(row[f"{method} MACs %"], statistics.mean(map(_macs_kept, found)), where=f"{method} {k}")
        assert "dense density" not in row
        for method in ("dense", "refill", "rsst"):
            found = _by(summaries, method, k)
            for kind in ("best", "final"):
                cell = row[f"{method} {kind}"]
                if not found:
                    assert cell == "missing"
                    continue
                assert_cell(cell, *_acc([s[f"{kind}_test_acc"] for s in found]), where=f"{method} {kind} {k}")
                checked += 1
    assert checked == 2 * (4 * 3 - 1)  # 4 states x 3 methods, less the missing rsst state 3


def test_summary_and_retention(rendered):
    secs, summaries, metrics = rendered
    refs = metrics["refs"]
    (rows,) = tables(secs["Summary per method"])
    for row in rows:
        m = row["method"]
        per_state = {}
        for s in _by(summaries, m):
            per_state.setdefault(s["state"], []).append(s)
        means = {k: statistics.mean(x["best_test_acc"] for x in v) for k, v in per_state.items()}
        finals = {k: statistics.mean(x["final_test_acc"] for x in v) for k, v in per_state.items()}
        pruned = [k for k in means if k >= 1]
        best = max(pruned, key=lambda k: means[k])
        assert int(row["seeds"]) == len({s["seed"] for s in _by(summaries, m)})
        assert int(row["best pruned state"]) == best
        assert_cell(row["best acc"], means[best], where=m)
        assert_cell(row["mean best (pruned)"], statistics.mean(means[k] for k in pruned), where=m)
        assert_cell(row["mean final (pruned)"], statistics.mean(finals[k] for k in pruned), where=m)
        last = max(per_state)
        assert int(row["last state"]) == last
        # the reference is the equally trained dense chain's state, never the method's own state 0
        refs_at = [_reference(refs, s, summaries) for s in per_state[last]]
        ret = [100 * s["final_test_acc"] / r["final_test_acc"] for s, (r, _) in zip(per_state[last], refs_at)]
        vs = [s["final_test_acc"] - r["final_test_acc"] for s, (r, _) in zip(per_state[last], refs_at)]
        mark = "".join(sorted({m for _, m in refs_at}))
        assert_cell(row["retention at last state %"], statistics.mean(ret), where=m)
        assert_cell(row["vs dense at last state"], statistics.mean(vs), where=m)
        assert row["vs dense at last state"].endswith(mark)
        if m == "dense":
            assert float(row["retention at last state %"]) == 100.0
        assert_cell(row["MACs kept % at last state"], statistics.mean(map(_macs_kept, per_state[last])), where=m)

    (rows,) = tables(secs["Retention vs the dense reference"])
    for row in rows:
        k = int(row["state"])
        for m in ("dense", "refill", "rsst"):
            found = _by(summaries, m, k)
            if not found:
                assert row[f"{m} retention %"] == "missing"
                continue
            ret = [100 * s["final_test_acc"] / _reference(refs, s, summaries)[0]["final_test_acc"] for s in found]
            assert_cell(row[f"{m} retention %"], *_mean_std(ret), where=f"{m} {k}")
            if m == "dense":  # the dense chain's own retention: 100 % at every state
                assert row[f"{m} retention %"] == "100.00"


def test_dense_reference_section(rendered):
    secs, _, metrics = rendered
    text = secs["Dense reference"]
    (rows,) = tables(text)
    assert len(rows) == 2
    for row in rows:
        ref = metrics["refs"][row["dense state 0"]]
        assert int(row["seed"]) == ref["seed"]
        assert_cell(row["best"], ref["best_test_acc"], *_wilson(ref["best_test_acc"]))
        assert_cell(row["final"], ref["final_test_acc"], *_wilson(ref["final_test_acc"]))
        assert_cell(row["MACs"], ref["cost"]["dense"]["macs"])
    finals = [r["final_test_acc"] for r in metrics["refs"].values()]
    mean, std = statistics.mean(finals), statistics.stdev(finals)
    lo, hi = _wilson(mean)
    assert f"Its final accuracy: {mean:.2f} ± {std:.2f} ({lo:.1f}–{hi:.1f}) over 2 seeds" in text


def _pruned_curves(summaries, method):
    """Per seed: (MACs kept, final accuracy) of the method's pruned states (1 and later, below 100 %
    MACs), sorted by MACs; the latest state where several share one cost."""
    out = {}
    for s in sorted(_by(summaries, method), key=lambda s: s["state"]):
        if s["state"] >= 1 and _macs_kept(s) < 99.5:
            out.setdefault(s["seed"], {})[_macs_kept(s)] = s["final_test_acc"]
    return {seed: sorted(points.items()) for seed, points in out.items()}


def _at(points, level):
    """(value, interpolated) at level, by hand: a pruned state within 0.5 points, else interpolated
    between two pruned states; None outside their range."""
    xs = [x for x, _ in points]
    near = min(points, key=lambda p: abs(p[0] - level))
    if abs(near[0] - level) <= 0.5:
        return near[1], False
    if not xs[0] < level < xs[-1]:
        return None
    i = bisect.bisect(xs, level)
    (x0, y0), (x1, y1) = points[i - 1], points[i]
    return y0 + (y1 - y0) * (level - x0) / (x1 - x0), True


def _matched(summaries):
    methods = ("refill", "rsst")  # the dense chain keeps 100 %: no matched-cost level, no pair
    curves = {m: _pruned_curves(summaries, m) for m in methods}
    costs = {}
    for s in summaries:
        if s["method"] in methods and s["state"] >= 1:
            costs.setdefault((s["method"], s["state"]), []).append(_macs_kept(s))
    levels = sorted({statistics.mean(v) for v in costs.values()}, reverse=True)  # the fixture's are 0.5 apart or more
    out = {}
    for level in levels:
        for m in methods:
            found = {seed: _at(pts, level) for seed, pts in curves[m].items()}
            out[(level, m)] = {seed: v for seed, v in found.items() if v is not None}
    return levels, out


def test_matched_cost_table(rendered):
    secs, summaries, _ = rendered
    text = secs["Accuracy at matched cost"]
    table, diffs = tables(text)
    levels, values = _matched(summaries)
    assert [float(r["MACs kept %"]) for r in table] == pytest.approx(levels, abs=0.05)
    assert "dense final" not in table[0]
    interpolated = 0
    for row, level in zip(table, levels):
        for m in ("refill", "rsst"):
            found = values[(level, m)]
            cell = row[f"{m} final"]
            if not found:
                assert cell == "-", f"{m} at {level}: outside its measured range"
                continue
            assert_cell(cell, *_mean_std([v for v, _ in found.values()]), where=f"{m} at {level}")
            was = any(i for _, i in found.values())
            assert cell.endswith("(interp.)") == was
            interpolated += was
    assert interpolated == 0  # refill and rsst prune on one schedule: their states share the levels
    expected = [(level, "refill", "rsst") for level in levels if values[(level, "refill")] and values[(level, "rsst")]]
    got = [(float(r["MACs kept %"]), *r["methods"].split(" - ")) for r in diffs]
    assert got == [(round(lv, 1), a, b) for lv, a, b in expected]
    for row in diffs:
        level = next(lv for lv in levels if abs(lv - float(row["MACs kept %"])) < 0.05)
        va = {seed: v for seed, (v, _) in values[(level, "refill")].items()}
        vb = {seed: v for seed, (v, _) in values[(level, "rsst")].items()}
        diff, lo, hi = _diff(va, vb)
        assert_cell(row["difference (95 % interval)"], diff, lo, hi, where=f"refill-rsst at {level}")
        # rsst ran seed 0 only: one seed in common, refill's seed 1 left out and named
        assert row["seeds"] == "0" and row["seeds left out"] == "seed 1 (only refill)"
        assert row["verdict"] == ONE_SEED and row["Holm p"] == "-"
        assert "predictions not recorded" in row["interval"]
    # the lead section: the last level both reached, its rows the same as the table's
    decision = secs["Decision"]
    common = min(lv for lv in levels if values[(lv, "refill")] and values[(lv, "rsst")])
    assert f"At {common:.1f} % of the dense model's MACs" in decision
    methods, lead = tables(decision)
    assert [r["method"] for r in methods] == ["refill", "rsst"]
    assert lead == [r for r in diffs if float(r["MACs kept %"]) == round(common, 1)]
    assert "One seed: no verdict; run >= 3 seeds." in decision
    for r in methods:
        vals = [v for v, _ in values[(common, r["method"])].values()]
        if len(vals) == 1:
            assert_cell(r["final accuracy (95 % interval)"], vals[0], *_wilson(vals[0]))
        else:
            mean, half = (
                statistics.mean(vals),
                T975[len(vals) - 1]
                * math.sqrt(max(statistics.variance(vals), statistics.mean(_test_var(v) for v in vals)) / len(vals)),
            )
            assert_cell(r["final accuracy (95 % interval)"], mean, mean - half, mean + half)


def test_method_differences_per_state(rendered):
    secs, summaries, _ = rendered
    (rows,) = tables(secs["Method differences per state"])
    pairs = 0
    for k in (1, 2, 3):
        done = [m for m in ("dense", "refill", "rsst") if _by(summaries, m, k)]
        pairs += len(done) * (len(done) - 1) // 2
    assert len(rows) == pairs
    for row in rows:
        k = int(row["state"])
        a, b = row["methods"].split(" - ")
        sa, sb = _by(summaries, a, k), _by(summaries, b, k)
        diff, lo, hi = _diff({s["seed"]: s["final_test_acc"] for s in sa}, {s["seed"]: s["final_test_acc"] for s in sb})
        assert_cell(row["difference (95 % interval)"], diff, lo, hi, where=f"{a}-{b} {k}")
        ma, mb = statistics.mean(map(_macs_kept, sa)), statistics.mean(map(_macs_kept, sb))
        assert_cell(row["MACs kept % a / b"], ma, mb)
        # no verdict here: states are not a cost
        assert row["cost"] == (
            "unequal cost: no verdict" if abs(ma - mb) > 0.5 else "matched cost: verdict at matched cost"
        )
        assert "better" not in row["cost"] and row["interval"].startswith("one seed")


def test_rsst_damage_and_budget_tables(rendered):
    secs, summaries, _ = rendered
    _, rsst, budget = tables(secs["Damage and recovery"])
    with_rsst = [s for s in summaries if "rsst" in s]
    assert len(rsst) == len(with_rsst) > 0
    for row in rsst:
        r = _summary_of(summaries, row)["rsst"]
        assert int(row["mask epoch"]) == r["mask_epoch"]
        assert_cell(row["unmasked test"], r["unmasked"]["test_acc"])
        assert_cell(row["masked test"], r["masked"]["test_acc"])
        assert_cell(row["damage (test points)"], r["unmasked"]["test_acc"] - r["masked"]["test_acc"])
        assert_cell(row["penalised norm ratio"], r["penalized_norm_ratio"])
    assert len(budget) == len([s for s in summaries if "budget" in s])
    for row in budget:
        s = _summary_of(summaries, row)
        assert row["budget"] == "macs"
        assert_cell(row["target kept %"], 100 * s["budget"]["target"])
        assert_cell(row["reached kept %"], _macs_kept(s))
        assert_cell(row["reached - target"], _macs_kept(s) - 100 * s["budget"]["target"])


def _summary_of(summaries, row):
    (s,) = [x for x in _by(summaries, row["method"], int(row["state"])) if x["seed"] == int(row["seed"])]
    return s


def test_recovery_table(rendered):
    secs, summaries, metrics = rendered
    rows = tables(secs["Damage and recovery"])[0]
    assert len(rows) == len([s for s in summaries if s["state"] >= 1])
    for row in rows:
        s = _summary_of(summaries, row)
        epoch0 = metrics[(s["experiment"], s["state"])][0]
        assert epoch0["epoch"] == 0
        assert_cell(row["after pruning"], epoch0["test_acc"])
        assert_cell(row["final"], s["final_test_acc"])
        assert_cell(row["recovery"], s["final_test_acc"] - epoch0["test_acc"])


def test_dynamics_table(rendered):
    secs, summaries, metrics = rendered
    (rows,) = tables(secs["Training dynamics"])
    assert len(rows) == len(summaries)
    for row in rows:
        s = _summary_of(summaries, row)
        trained = [r for r in metrics[(s["experiment"], s["state"])] if r["epoch"] >= 1]
        acc = [r["test_acc"] for r in trained]
        w = min(5, len(acc) // 2)
        last, prev = acc[-w:], acc[-2 * w : -w]
        where = f"{s['experiment']} state {s['state']}"
        assert int(row["window"]) == w
        assert_cell(row["last mean"], statistics.mean(last), where=where)
        assert_cell(row["previous mean"], statistics.mean(prev), where=where)
        assert_cell(row["convergence"], statistics.mean(last) - statistics.mean(prev), where=where)
        assert_cell(row["stability (std)"], statistics.stdev(last), where=where)
        assert_cell(row["train - val gap"], trained[-1]["train_acc"] - trained[-1]["val_acc"], where=where)


def test_parameter_tables(rendered):
    secs, summaries, _ = rendered
    kept, slimmed = tables(secs["Parameters and MACs"])
    assert len(kept) == len(summaries)
    for row in kept:
        s = _summary_of(summaries, row)
        heads = sum(v["head"] for v in s["kept"].values())
        neurons = sum(v["neuron"] for v in s["kept"].values())
        assert row["kept"] == f"{heads}/6 heads, {neurons:,}/192 neurons"
        assert_cell(row["density"], _density(s))
        assert_cell(row["MACs kept %"], _macs_kept(s))
        assert_cell(row["params kept %"], 100 * s["cost"]["compact"]["params"] / s["cost"]["dense"]["params"])
        assert_cell(row["params (dense)"], s["params_dense"])
        assert_cell(row["params alive"], s["params_alive"])
        assert_cell(row["compression"], s["params_dense"] / s["params_alive"])
    with_cost = [s for s in summaries if "cost" in s]
    assert len(slimmed) == len(with_cost) > 0
    for row in slimmed:
        c = _summary_of(summaries, row)["cost"]
        d, p = c["dense"], c["compact"]
        for col, key in (("params dense / compact", "params"), ("attention", "params_attention"),
                         ("MLP", "params_mlp"), ("other", "params_other"), ("MACs dense / compact", "macs")):  # fmt: skip
            assert_cell(row[col], d[key], p[key], where=col)
        assert_cell(row["compression"], d["params"] / p["params"])
        assert_cell(row["MACs cut %"], 100 * (1 - p["macs"] / d["macs"]))


def test_time_and_throughput_tables(rendered):
    secs, summaries, _ = rendered
    text = secs["Time and throughput"]
    totals, per_state, tput = tables(text)
    for row in per_state:
        s = _summary_of(summaries, row)
        assert row["device"] == s["device"] + (" (shared)" if s.get("shared_state0") else "")
        assert_cell(row["wall s"], s["wall_seconds"])
        assert_cell(row["s / epoch"], s["wall_seconds"] / s["epochs"])
        assert_cell(row["train img/s"], s["images_per_second"])
        assert_cell(row["hours"], s["wall_seconds"] / 3600)
    for row in totals:
        mine = [s for s in _by(summaries, row["method"]) if s["seed"] == int(row["seed"])]
        assert int(row["states"]) == len(mine)
        assert_cell(row["hours"], sum(s["wall_seconds"] for s in mine) / 3600)
    # overall, a shared state 0 counts once (it ran once); each method's total above includes it
    once = [s for s in summaries if not s.get("shared_state0")]
    once += list({s["shared_state0"]: s for s in summaries if s.get("shared_state0")}.values())
    assert len(once) < len(summaries)
    gpu = sum(s["wall_seconds"] for s in once if s["device"].startswith("cuda")) / 3600
    cpu = sum(s["wall_seconds"] for s in once if s["device"] == "cpu") / 3600
    assert f"{gpu:.4f} GPU-hours" in text and f"{cpu:.4f} CPU-hours" in text
    measured = [s for s in summaries if s.get("throughput")]
    compiled = [s for s in measured if s["throughput"].get("compiled")]
    assert compiled and len(tput) == 2 * len(measured) + 2 * len(compiled)
    assert {r["mode"] for r in tput} == {"eager", "compiled"}
    for row in tput:
        t = _summary_of(summaries, row)["throughput"]
        t = t["compiled"] if row["mode"] == "compiled" else t
        dense, compact = t["dense"][row["batch"]], t["compact"][row["batch"]]
        assert_cell(row["dense img/s"], dense)
        assert_cell(row["compact img/s"], compact)
        # the speedup: the median over the paired rounds, beside its range; "within noise" where it covers 1.0
        pairs = [c / d for d, c in zip(t["passes"]["dense"][row["batch"]], t["passes"]["compact"][row["batch"]])]
        assert_cell(row["speedup"], statistics.median(pairs))
        assert row["speedup"].endswith(" (within noise)") == (min(pairs) <= 1.0 <= max(pairs))
        assert_cell(row["speedup range over rounds"], min(pairs), max(pairs), len(pairs))
    assert any("within noise" in r["speedup"] for r in tput) and not all("within noise" in r["speedup"] for r in tput)


def test_completeness_counts(rendered):
    secs, summaries, _ = rendered
    text = secs["Completeness"]
    assert f"{len(summaries)} of 16 planned states are finished" in text
    (rows,) = tables(text)
    for row in rows:
        done = len([s for s in summaries if s["experiment"] == row["experiment"]])
        assert row["states done"] == f"{done}/4"
