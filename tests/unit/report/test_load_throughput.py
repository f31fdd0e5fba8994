"""Reports read a state's throughput from its throughput.json (measure_state), old summaries' field else."""

import json

from prunebench.report.load import read_summary
from prunebench.results.throughput import state_throughput

TPUT = {"device": "cpu", "dense": {"1": 100.0}, "compact": {"1": 150.0}}
OLD = {"device": "cpu", "dense": {"1": 90.0}, "compact": {"1": 95.0}}


def write_state(folder, name, state=1, throughput=None, **extra):
    folder.mkdir(parents=True)
    summary = {
        "experiment": name, "dataset": "synthetic", "model": "tiny_vit", "method": extra.pop("method", "refill"),
        "seed": 0, "state": state, "epoch": 1, "config_hash": "abc", "best_test_acc": 50.0,
        "final_test_acc": 49.0, "throughput": throughput, **extra,
    }  # fmt: skip
    (folder / "summary.json").write_text(json.dumps(summary))
    return folder / "summary.json", summary


def timed(folder, name, state=1, config_hash="abc", throughput=TPUT):
    stamp = {"experiment": name, "state": state, "epoch": 1, "config_hash": config_hash}
    (folder / "throughput.json").write_text(json.dumps({**stamp, "throughput": throughput}))


def test_the_timing_file_of_the_same_checkpoint_is_read(tmp_path):
    path, summary = write_state(tmp_path / "results" / "x" / "state1", "x")
    timed(path.parent, "x")
    assert state_throughput(path, summary) == TPUT
    row = read_summary(path)
    assert (row["tput_dense_1"], row["tput_compact_1"]) == (100.0, 150.0)


def test_results_from_before_the_timing_rule_keep_their_summary_field(tmp_path):
    path, summary = write_state(tmp_path / "results" / "x" / "state1", "x", throughput=OLD)
    assert state_throughput(path, summary) == OLD
    timed(path.parent, "x", config_hash="other")  # a timing of an earlier run of the state
    assert state_throughput(path, summary) == OLD
    assert read_summary(path)["tput_dense_1"] == 90.0


def test_a_copy_of_a_shared_state0_reads_the_shared_runs_timing(tmp_path):
    results = tmp_path / "results"
    shared, _ = write_state(results / "shared" / "t-synthetic-tiny_vit-s0" / "state0", "t-synthetic-tiny_vit-s0",
                            state=0, method="dense")  # fmt: skip
    timed(shared.parent, "t-synthetic-tiny_vit-s0", state=0)
    copy, summary = write_state(results / "t-synthetic-tiny_vit-refill-s0" / "state0", "t-synthetic-tiny_vit-refill-s0",
                                state=0, shared_state0="results/shared/t-synthetic-tiny_vit-s0/state0")  # fmt: skip
    assert state_throughput(copy, summary) == TPUT


def test_a_report_with_some_states_timed_lists_those(results_dir, fixture_plan):
    """measure.states times some states only (by default each method's last): the table has those, and
    the report says which they are."""
    from prunebench.report.load import load_results
    from prunebench.report.render import render_comparison

    from .conftest import DATASET, MODEL, name
    from .markdown import sections, tables

    refill = results_dir / name("main", "refill", 0)
    for k in (1, 2):  # states 0 and 3 keep their timing
        path = refill / f"state{k}" / "summary.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), "throughput": None}))
    paths = sorted(results_dir.glob("**/state*/summary.json"))
    results = load_results(paths, fixture_plan)
    plots = dict.fromkeys(("pareto", "accuracy_vs_state", "accuracy_vs_cost", "training_curves"), "plot.png")
    md = render_comparison(results, DATASET, MODEL, plots)
    text = sections(md)["Time and throughput"]
    timed = tables(text)[-1]
    assert sorted({(r["method"], r["state"]) for r in timed}) == [("refill", "0"), ("refill", "3")]
    assert f"2 of the {len(results.states)} finished states are timed: refill seed 0: states 0, 3" in text
