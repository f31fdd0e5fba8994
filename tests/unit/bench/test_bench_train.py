"""bench/bench_train.py runs every variant side by side and reports images/s, ratios and overheads."""

import importlib.util
import json

import pytest
import torch

from tests.conftest import REPO


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_train", REPO / "bench" / "bench_train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tiny_benchmark_reports_every_variant_and_the_ratios(tmp_path):
    bench = load_bench()
    out = tmp_path / "train.json"
    args = ["--model", "small_cnn", "--batch", "8", "--steps", "2", "--epochs", "2", "--rounds", "2", "--workers", "1"]
    result = bench.main([*args, "--device", "cpu", "--json", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    # no bf16 reference on the CPU (prunebench trains fp32 there)
    assert set(result["images_per_second"]) == {"reference", "reference_w0", "dense", "refill", "rsst"}
    assert all(len(v) == 2 and min(v) > 0 for v in result["images_per_second_all"].values())
    assert result["workers"] == 1 and result["epochs_per_round"] == 2
    assert set(result["ratios"]) == {
        "dense_vs_reference",
        "dense_vs_reference_w0",
        "dense_vs_reference_w0_cpu_time",
        "reference_vs_reference_w0",
        "refill_overhead_percent",
        "refill_ops_percent_of_dense_step",
        "rsst_overhead_percent",
        "rsst_ops_percent_of_dense_step",
    }
    assert result["ratios"]["dense_vs_reference"] > 0 and result["host_syncs_per_epoch"] is None
    r = result["ratio_ranges"]["dense_vs_reference"]
    assert r["min"] <= r["median"] <= r["max"]


def test_bf16_reference_needs_cuda():
    bench = load_bench()
    with pytest.raises(SystemExit):
        bench.main(["--model", "small_cnn", "--device", "cpu", "--variants", "reference_bf16"])


def test_reference_loader_keeps_its_workers_across_epochs():
    bench = load_bench()
    loader = bench.reference_loader(bench.synthetic_splits(16), 32, 8, 1, False)
    assert loader.persistent_workers
    list(loader)
    first = loader._iterator
    list(loader)
    assert loader._iterator is first  # the same workers served the second epoch
    assert not bench.reference_loader(bench.synthetic_splits(16), 32, 8, 0, False).persistent_workers


def test_reference_loader_yields_normalised_cifar_batches_from_pil_images():
    bench = load_bench()
    splits = bench.synthetic_splits(16)
    x, y = next(iter(bench.reference_loader(splits, 32, 8, 0, False)))
    assert x.shape == (8, 3, 32, 32) and x.dtype == torch.float32 and y.shape == (8,)
    assert -3 < float(x.mean()) < 3
    x224, _ = next(iter(bench.reference_loader(splits, 224, 4, 0, False)))
    assert x224.shape == (4, 3, 224, 224)
