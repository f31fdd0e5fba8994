"""`prunebench status`: a running state's ETA from its own epochs, the time left of the whole plan,
the shared dense states 0 with their progress."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from prunebench.report.status import format_progress, progress


def _finished(results, exp, k, epochs, wall):
    out = results / exp / f"state{k}"
    out.mkdir(parents=True)
    summary = {"experiment": exp, "method": "refill", "dataset": "d", "model": "m", "seed": 0, "state": k,
               "epochs": epochs, "best_test_acc": 50.0, "final_test_acc": 50.0, "wall_seconds": wall}  # fmt: skip
    (out / "summary.json").write_text(json.dumps(summary))
    (out / "metrics.jsonl").write_text("")


def _running(results, run, k, epoch_walls):
    rec = results / run / "recovery" / f"state{k}"
    rec.mkdir(parents=True)
    rows = [{"epoch": 0, "epoch_seconds": 0.0, "eval_seconds": 5.0}]  # the evaluation before training
    rows += [{"epoch": e, "epoch_seconds": w, "eval_seconds": 0.0} for e, w in enumerate(epoch_walls, 1)]
    (rec / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def _plan(*rows):
    return pd.DataFrame(
        [
            {
                "experiment": e,
                "dataset": "d",
                "model": "m",
                "states": 4,
                "epochs": 10,
                "state0_epochs": 20,
                "state0_run": run,
                "state0_shared": run != e,
            }
            for e, run in rows
        ]  # fmt: skip
    )


def test_the_running_state_is_timed_by_its_own_epochs(tmp_path):
    # the finished states took 127 s per epoch (start-up and compilation of short states included);
    # the running state's log says 39 s per epoch: its ETA is 39 s x the 7 epochs it has left
    _finished(tmp_path, "a", 0, 20, 20 * 127.0)
    _finished(tmp_path, "a", 1, 10, 10 * 127.0)
    _running(tmp_path, "a", 2, [40.0, 38.0, 39.0])
    row = progress(tmp_path, _plan(("a", "a"))).iloc[0]
    assert (row["current"], row["epoch"], row["epochs"]) == (2, 3, 10)
    assert row["running_per_epoch"] == pytest.approx(39.0)
    assert row["state_eta_seconds"] == pytest.approx(7 * 39.0)
    # the state still to come is timed as the latest finished one, start-up included
    assert row["eta_seconds"] == pytest.approx(7 * 39.0 + 10 * 127.0)
    table = format_progress(progress(tmp_path, _plan(("a", "a"))))
    assert table.splitlines()[1].split() == ["a", "2/4", "state", "2", "3/10", "0:00:39", "0:04:33", "0:25:43"]


def test_the_time_left_of_the_plan_is_gpu_time_and_the_longest_chain(tmp_path):
    _finished(tmp_path, "a", 0, 20, 200.0)  # 10 s per epoch; 3 states of 10 epochs left: 300 s
    _finished(tmp_path, "b", 0, 20, 400.0)  # 20 s per epoch: 600 s left
    df = progress(tmp_path, _plan(("a", "a"), ("b", "b")))
    assert df["left_seconds"].tolist() == pytest.approx([300.0, 600.0])
    text = format_progress(df)
    assert "2/8 states done; time left: 0:15:00 of GPU time" in text  # 300 + 600 s one after another
    assert "0:10:00 for the longest chain" in text  # b's, with a GPU per chain


def test_a_shared_state_0_is_shown_running_and_counted_once(tmp_path):
    from prunebench.report.status import shared_progress

    _running(tmp_path, "shared/g-d-m-s0", 0, [30.0, 30.0])  # 18 of its 20 epochs left: 540 s
    exp = {"name": "g-d-m-s0", "dataset": "d", "model_key": "m", "method": "dense", "seed": 0,
           "prune": {"states": 1}, "train": {"epochs": 20, "state0_epochs": 20}}  # fmt: skip
    shared = shared_progress(tmp_path, {"shared/g-d-m-s0": exp})
    assert shared.iloc[0]["state_eta_seconds"] == pytest.approx(540.0)
    df = progress(tmp_path, _plan(("a", "shared/g-d-m-s0"), ("b", "shared/g-d-m-s0")), shared)
    for row in df.itertuples():  # both wait for it: its state 0, then 3 states of 10 epochs at its 30 s
        assert (row.current, row.shared, row.epoch) == (0, True, 2)
        assert row.state_eta_seconds == pytest.approx(540.0)
        assert row.left_seconds == pytest.approx(900.0) and row.eta_seconds == pytest.approx(1440.0)
    text = format_progress(df, shared)
    lines = [line.split() for line in text.splitlines()]
    assert ["a", "0/4", "state", "0", "(shared)", "2/20", "0:00:30", "0:09:00", "0:24:00"] in lines
    assert ["shared/g-d-m-s0", "0/1", "state", "0", "2/20", "0:00:30", "0:09:00", "0:09:00"] in lines
    assert "time left: 0:39:00 of GPU time" in text  # 540 once, plus 900 for each experiment
    assert "0:24:00 for the longest chain" in text


def test_what_has_no_estimate_yet_is_said(tmp_path):
    _finished(tmp_path, "a", 0, 20, 200.0)
    plan = _plan(("a", "a"), ("c", "c"))
    plan.loc[1, "model"] = "other"  # nothing of its dataset and model has finished an epoch
    df = progress(tmp_path, plan)
    assert bool(df.iloc[1]["estimated"]) is False and math.isnan(df.iloc[1]["seconds_per_epoch"])
    text = format_progress(df)
    assert "0:05:00+ of GPU time" in text and "1 runs have states with no estimate yet" in text
    plan.loc[1, "model"] = "m"  # another experiment of its dataset and model has: its time per epoch is taken
    assert progress(tmp_path, plan).iloc[1]["left_seconds"] == pytest.approx(4 * 10.0 * 10 + 10 * 10.0)


def test_a_plan_without_shared_states_0(tmp_path):
    from prunebench.report.status import shared_progress

    _finished(tmp_path, "a", 0, 20, 200.0)
    shared = shared_progress(tmp_path, {})  # share_state0: false
    text = format_progress(progress(tmp_path, _plan(("a", "a")), shared), shared)
    assert "shared dense states 0" not in text and "1/4 states done; time left: 0:05:00 of GPU time" in text
