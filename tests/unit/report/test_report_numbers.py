"""Every number in a rendered comparison report equals the value recomputed from the fixture files.

The expected values are recomputed here with plain Python from the JSON files, independently of
prunebench.report's pandas code, and compared with the numbers parsed back from the Markdown.
"""

from __future__ import annotations

import copy
import json
import statistics
from pathlib import Path

import pytest

from .conftest import DATASET, FIXTURE_CONFIG, MODEL, write_results
from .markdown import assert_cell, sections, tables


def _mean_std(values):
    return (statistics.mean(values), statistics.stdev(values)) if len(values) > 1 else (values[0],)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """Built once for this module: rendering draws the plots, which takes seconds."""
    from prunebench.config import resolve_config
    from prunebench.report.comparison import build_reports
    from prunebench.report.load import plan_from_experiments

    results_dir = write_results(tmp_path_factory.mktemp("report"))
    build_reports(results_dir, plan_from_experiments(resolve_config(copy.deepcopy(FIXTURE_CONFIG)).experiments))
    md = (results_dir / "reports" / f"{DATASET}_{MODEL}.md").read_text()
    summaries = [json.loads(p.read_text()) for p in sorted(Path(results_dir).glob("*/state*/summary.json"))]
    metrics = {}
    for p in Path(results_dir).glob("*/state*/metrics.jsonl"):
        rows = [json.loads(line) for line in p.read_text().splitlines()]
        metrics[(rows[0]["experiment"], rows[0]["state"])] = rows
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
                assert_cell(row[f"{method} density"], found[0]["density"], where=f"{method} density {k}")
        assert "dense density" not in row
        for method in ("dense", "refill", "rsst"):
            found = _by(summaries, method, k)
            for kind in ("best", "final"):
                cell = row[f"{method} {kind}"]
                if not found:
                    assert cell == "missing"
                    continue
                assert_cell(cell, *_mean_std([s[f"{kind}_test_acc"] for s in found]), where=f"{method} {kind} {k}")
                checked += 1
    assert checked == 2 * (4 * 3 - 1)  # 4 states x 3 methods, less the missing rsst state 3


def test_summary_and_retention(rendered):
    secs, summaries, _ = rendered
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
        base = {s["seed"]: s["final_test_acc"] for s in _by(summaries, m, 0)}
        ret = [100 * s["final_test_acc"] / base[s["seed"]] for s in per_state[last]]
        assert_cell(row["retention at last state %"], statistics.mean(ret), where=m)

    (rows,) = tables(secs["Retention vs the dense state 0"])
    for row in rows:
        k = int(row["state"])
        for m in ("dense", "refill", "rsst"):
            found = _by(summaries, m, k)
            if not found:
                assert row[f"{m} retention %"] == "missing"
                continue
            base = {s["seed"]: s["final_test_acc"] for s in _by(summaries, m, 0)}
            ret = [100 * s["final_test_acc"] / base[s["seed"]] for s in found]
            assert_cell(row[f"{m} retention %"], *_mean_std(ret), where=f"{m} {k}")


def _summary_of(summaries, row):
    (s,) = [x for x in _by(summaries, row["method"], int(row["state"])) if x["seed"] == int(row["seed"])]
    return s


def test_recovery_table(rendered):
    secs, summaries, metrics = rendered
    (rows,) = tables(secs["Damage and recovery"])
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


def test_seed_separation_table(rendered):
    secs, summaries, _ = rendered
    (rows,) = tables(secs["Method differences vs seed spread"])
    assert rows, "refill has two seeds: its differences to the other methods must be judged"
    for row in rows:
        k = int(row["state"])
        a, b = row["methods"].split(" - ")
        fa = [s["final_test_acc"] for s in _by(summaries, a, k)]
        fb = [s["final_test_acc"] for s in _by(summaries, b, k)]
        diff = statistics.mean(fa) - statistics.mean(fb)
        spread = sum(statistics.stdev(f) if len(f) > 1 else 0.0 for f in (fa, fb))
        assert_cell(row["difference"], diff)
        assert_cell(row["seed spread"], spread)
        assert row["exceeds spread"] == ("yes" if abs(diff) > spread else "no")


def test_parameter_tables(rendered):
    secs, summaries, _ = rendered
    kept, slimmed = tables(secs["Parameters and MACs"])
    assert len(kept) == len(summaries)
    for row in kept:
        s = _summary_of(summaries, row)
        heads = sum(v["head"] for v in s["kept"].values())
        neurons = sum(v["neuron"] for v in s["kept"].values())
        assert row["kept"] == f"{heads}/6 heads, {neurons:,}/192 neurons"
        assert_cell(row["density"], s["density"])
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
    assert len(tput) == 2 * len(measured)
    for row in tput:
        t = _summary_of(summaries, row)["throughput"]
        dense, compact = t["dense"][row["batch"]], t["compact"][row["batch"]]
        assert_cell(row["dense img/s"], dense)
        assert_cell(row["compact img/s"], compact)
        assert_cell(row["speedup"], compact / dense)


def test_completeness_counts(rendered):
    secs, summaries, _ = rendered
    text = secs["Completeness"]
    assert f"{len(summaries)} of 16 planned states are finished" in text
    (rows,) = tables(text)
    for row in rows:
        done = len([s for s in summaries if s["experiment"] == row["experiment"]])
        assert row["states done"] == f"{done}/4"
