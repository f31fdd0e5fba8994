"""The loader: one row per state, costs flattened, NaN read back, bad files named."""

from __future__ import annotations

import json
import math

import pytest

from prunebench.report.load import ReportError, find_summaries, load_results

from .conftest import MISSING, NAN_EPOCH


def test_states_and_epochs(results_dir):
    res = load_results(find_summaries(results_dir))
    assert len(res.states) == 15 and res.states["experiment"].nunique() == 4
    refill0 = res.states[(res.states["method"] == "refill") & (res.states["seed"] == 0)]
    assert refill0["cost_compact_macs"].notna().all() and refill0["tput_compact_32"].notna().all()
    assert res.states[res.states["method"] == "rsst"]["cost_compact_macs"].isna().all()
    exp, state, epoch = NAN_EPOCH
    row = res.epochs[
        (res.epochs["experiment"] == exp) & (res.epochs["state"] == state) & (res.epochs["epoch"] == epoch)
    ]
    assert math.isnan(row["val_loss"].iloc[0])
    # the running state's recovery metrics are not a finished state
    assert not ((res.epochs["experiment"] == MISSING[0]) & (res.epochs["state"] == MISSING[1])).any()


def test_old_summary_without_optional_fields(results_dir):
    from prunebench.report.analysis import costs

    paths = find_summaries(results_dir)
    for p in paths:
        s = json.loads(p.read_text())
        del s["wall_seconds"], s["images_per_second"]
        p.write_text(json.dumps(s))
    c = costs(load_results(paths).states)
    assert c["wall_seconds"].isna().all() and c["images_per_second"].isna().all()


def test_summary_missing_identity_is_named(results_dir):
    path = find_summaries(results_dir)[0]
    s = json.loads(path.read_text())
    del s["final_test_acc"]
    path.write_text(json.dumps(s))
    with pytest.raises(ReportError, match=f"{path}.*lacks final_test_acc"):
        load_results([path])
