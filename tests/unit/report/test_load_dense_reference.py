"""A CNN group with Refill and REPrune: every dense figure is the shared dense state 0's, never
REPrune's state 0 (already pruned) nor a method's own copy; REPrune's events are reported."""

from __future__ import annotations

import html
import json

import pytest

from prunebench.report.build import build_reports
from prunebench.report.plots import PLOTS

from .conftest import CNN, CNN_REFERENCE, CNN_RUNS, write_cnn_results
from .markdown import assert_cell, sections, tables


@pytest.fixture(scope="module")
def cnn_report(tmp_path_factory):
    results = write_cnn_results(tmp_path_factory.mktemp("cnn"))
    build_reports(results)
    return results, sections((results / "reports" / f"{CNN[0]}_{CNN[1]}.md").read_text())


def test_without_a_dense_chain_retention_uses_the_shared_dense_state0_and_says_so(cnn_report):
    _, secs = cnn_report
    best_ref, final_ref = CNN_REFERENCE
    assert "No dense control chain ran in this comparison" in secs["Dense reference"]
    assert "under-trained reference (state 0 only)" in secs["Dense reference"]
    (rows,) = tables(secs["Retention vs the dense reference"])
    for row in rows:
        k = int(row["state"])
        for method, states in CNN_RUNS.items():
            cell = row[f"{method} retention %"]
            assert cell.endswith("(dense start)")
            assert_cell(cell, 100 * states[k][0] / final_ref, where=f"{method} {k}")
    # REPrune's state 0 is pruned: its retention is below 100 %, not 100 % by construction
    assert float(rows[0]["reprune retention %"].split()[0]) < 70
    (summary,) = tables(secs["Summary per method"])
    for row in summary:
        last = CNN_RUNS[row["method"]][-1]
        assert_cell(row["vs dense at last state"], last[0] - final_ref)
        assert_cell(row["MACs kept % at last state"], 100 * last[1])
    (ref,) = tables(secs["Dense reference"])[0]
    assert ref["dense state 0"] == "cnn-cifar10-resnet_t-s0"
    assert ref["final"].startswith(f"{final_ref:.2f} (") and ref["best"].startswith(f"{best_ref:.2f} (")


def test_matched_cost_compares_refill_and_reprune_at_their_pruned_costs(cnn_report):
    _, secs = cnn_report
    table, diffs = tables(secs["Accuracy at matched cost"])
    by_level = {float(r["MACs kept %"]): r for r in table}
    # the levels: the pruned states' costs (Refill 60, 40; REPrune 45, 35), not REPrune's state 0 (50)
    assert list(by_level) == [60.0, 45.0, 40.0, 35.0]
    # 40 %: Refill measured (state 2); REPrune interpolated between 45 % (90.0) and 35 % (88.0)
    assert_cell(by_level[40.0]["refill final"], 89.0)
    assert by_level[40.0]["reprune final"] == "89.00 (interp.)"
    assert by_level[60.0]["reprune final"] == "-"  # above its pruned states: never through its state 0
    assert {r["methods"] for r in diffs} == {"refill - reprune"}
    assert {html.unescape(r["verdict"]) for r in diffs} == {"one seed: no verdict; run >= 3 seeds"}


def test_reprune_events_and_the_pareto_plot(cnn_report):
    results, secs = cnn_report
    events = tables(secs["Damage and recovery"])[1]
    assert [(r["state"], r["event epochs"]) for r in events] == [("0", "1, 3"), ("1", "2")]
    assert [r["best trained after the last event"] for r in events] == ["no", "yes"]
    plot_dir = results / "reports" / f"{CNN[0]}_{CNN[1]}"
    assert (plot_dir / PLOTS["pareto"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"]({CNN[0]}_{CNN[1]}/pareto.png)" in secs["Decision"]
    # the events logged no accuracy right after them: "after pruning" is before the event, and says so
    recovery = {(r["method"], r["state"]): r for r in tables(secs["Damage and recovery"])[0]}
    assert recovery[("reprune", "1")]["measured"] == "before the event (epoch 0; not recorded after them)"
    assert recovery[("refill", "1")]["measured"] == "epoch 0, right after the state's pruning"


def test_a_method_in_two_groups_is_two_rows_not_two_seeds(tmp_path):
    import shutil

    from prunebench.report.load import load_results
    from prunebench.results.layout import find_summaries

    results = write_cnn_results(tmp_path)
    for state_dir in (results / "cnn-cifar10-resnet_t-reprune-s0").iterdir():
        out = results / "abl-cifar10-resnet_t-reprune-s0" / state_dir.name
        shutil.copytree(state_dir, out)
        s = json.loads((out / "summary.json").read_text())
        s.update(experiment="abl-cifar10-resnet_t-reprune-s0", final_test_acc=s["final_test_acc"] - 5)
        (out / "summary.json").write_text(json.dumps(s))
        text = (out / "metrics.jsonl").read_text().replace("cnn-cifar10-resnet_t-reprune-s0", s["experiment"])
        (out / "metrics.jsonl").write_text(text)
    res = load_results(find_summaries(results))
    assert set(res.states["method"]) == {"refill", "reprune (cnn)", "reprune (abl)"}
    assert set(res.epochs["method"]) == {"refill", "reprune (cnn)", "reprune (abl)"}
    assert len(res.references) == 1  # abl's reference (its own shared run) has not run: never REPrune's state 0
    build_reports(results)
    (rows,) = tables(sections((results / "reports" / "cifar10_resnet_t.md").read_text())["Summary per method"])
    assert [(r["method"], r["seeds"]) for r in rows] == [
        ("refill", "1"),
        ("reprune (abl)", "1"),
        ("reprune (cnn)", "1"),
    ]
