"""The loader: one row per state, costs flattened, NaN read back, bad files named."""

from __future__ import annotations

import json
import math

import pytest

from prunebench.report.load import ReportError, load_results
from prunebench.results.layout import find_summaries

from .conftest import CNN_REFERENCE, DENSE_REFERENCE, MISSING, NAN_EPOCH, TEST_SIZE, write_cnn_results


def test_states_and_epochs(results_dir):
    res = load_results(find_summaries(results_dir))
    assert len(res.states) == 15 and res.states["experiment"].nunique() == 4
    refill0 = res.states[(res.states["method"] == "refill") & (res.states["seed"] == 0)]
    assert refill0["cost_compact_macs"].notna().all() and refill0["tput_compact_32"].notna().all()
    assert res.states[res.states["method"] == "rsst"]["tput_compact_32"].isna().all()
    assert (res.states["test_size"] == TEST_SIZE).all()  # from `test_size`, or `data_sizes` (seed 1)
    # one meaning of density: the measured fraction of groups kept, from kept / group_sizes
    s = res.states.iloc[5]
    assert s["density"] == pytest.approx((s["kept_head"] + s["kept_neuron"]) / (s["groups_head"] + s["groups_neuron"]))
    assert (res.states["macs_kept"] == 100 * res.states["cost_compact_macs"] / res.states["cost_dense_macs"]).all()
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
        s.pop("wall_seconds"), s.pop("images_per_second", None)
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


def test_the_dense_references_are_the_shared_runs(results_dir):
    res = load_results(find_summaries(results_dir))
    assert "dense" not in set(res.states["experiment"])  # the shared runs are no method's states
    refs = res.references.set_index("reference")
    assert sorted(refs.index) == ["shared/main-cifar10-vit_s-s0", "shared/seeds-cifar10-vit_s-s1"]
    for seed, (best, final) in DENSE_REFERENCE.items():
        (ref,) = refs[refs["seed"] == seed].itertuples()
        assert (ref.best_test_acc, ref.final_test_acc) == (best, final)
    assert set(res.states["reference"]) == set(refs.index)


def test_reprune_is_compared_with_the_dense_model_not_its_pruned_state0(tmp_path):
    res = load_results(find_summaries(write_cnn_results(tmp_path)))
    (ref,) = res.references.itertuples()
    assert (ref.best_test_acc, ref.final_test_acc) == CNN_REFERENCE and ref.source == "cnn-cifar10-resnet_t-s0"
    # without the shared run's summary, the dense state 0 copy of Refill stands in, never REPrune's
    paths = [p for p in find_summaries(tmp_path / "results") if "shared" not in p.parts]
    (ref,) = load_results(paths).references.itertuples()
    assert ref.source == "cnn-cifar10-resnet_t-refill-s0"
    only_reprune = [p for p in paths if p.parent.parent.name.endswith("-reprune-s0")]
    assert load_results(only_reprune).references.empty


def test_a_results_folder_named_shared_holds_experiments(tmp_path):
    results = write_cnn_results(tmp_path).rename(tmp_path / "shared")
    res = load_results(find_summaries(results))
    assert set(res.states["method"]) == {"refill", "reprune"} and len(res.states) == 6
    assert list(res.references["source"]) == ["cnn-cifar10-resnet_t-s0"]
