"""Every state keeps the predicted class of every test image (predictions.npz), so that methods can be
compared per image: at its final evaluation and at its best epoch's."""

import json

import numpy as np
import pytest

from prunebench.results.metrics import read_predictions
from prunebench.train.job import train_state
from tests.unit.train.chains import paths, run_chain


def accuracy(predicted, targets) -> float:
    return 100.0 * float(np.mean(predicted == targets))


@pytest.mark.parametrize("method", ["refill", "rsst"])  # RSST: evaluated under its final mask
def test_a_states_predictions_give_its_final_and_best_test_accuracy(tiny_config, tmp_path, method):
    _, summaries = run_chain(tiny_config, tmp_path, method, train={"epochs": 3})
    for k, summary in enumerate(summaries):
        with np.load(tmp_path / f"state{k}/predictions.npz", allow_pickle=False) as data:
            assert sorted(data.files) == ["best", "final", "targets"]
            arrays = {name: data[name] for name in data.files}
        assert all(a.dtype == np.int16 and a.shape == (summary["test_size"],) for a in arrays.values())
        assert accuracy(arrays["final"], arrays["targets"]) == pytest.approx(summary["final_test_acc"], abs=1e-9)
        assert accuracy(arrays["best"], arrays["targets"]) == pytest.approx(summary["best_test_acc"], abs=1e-9)
    assert np.array_equal(read_predictions(tmp_path / "state0/predictions.npz")["targets"], arrays["targets"])
    manifest = json.loads((tmp_path / "recovery/state1/finished/manifest.json").read_text())  # state 0's is released
    assert "predictions.npz" in manifest["files"]  # sealed and verified like the declared outputs


def test_a_bundle_sealed_before_predictions_were_kept_is_adopted_without_them(tiny_config, tmp_path, caplog):
    exp, _ = run_chain(tiny_config, tmp_path, "refill")
    bundle = tmp_path / "recovery/state1/finished"
    manifest = json.loads((bundle / "manifest.json").read_text())
    del manifest["files"]["predictions.npz"]  # as an older prunebench sealed it
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    (bundle / "predictions.npz").unlink()
    for name in ("last.pt", "best.pt", "metrics.jsonl", "summary.json"):  # Snakemake's rerun-incomplete
        (tmp_path / "state1" / name).unlink()
    caplog.set_level("INFO", logger="prunebench")
    train_state(exp, 1, paths(tmp_path, 1), device="cpu", threads=1)
    assert "adopted the finished state" in caplog.text
    assert (tmp_path / "state1/summary.json").is_file()
    assert not (tmp_path / "state1/predictions.npz").exists()  # not the bundle's: an earlier file goes
