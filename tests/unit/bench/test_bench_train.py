"""bench/bench_train.py runs all four variants side by side and reports images/s and overheads."""

import importlib.util
import json

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
    args = ["--model", "small_cnn", "--batch", "8", "--steps", "2", "--rounds", "2", "--workers", "0"]
    result = bench.main([*args, "--device", "cpu", "--json", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert set(result["images_per_second"]) == {"reference", "dense", "refill", "rsst"}
    assert all(len(v) == 2 and min(v) > 0 for v in result["images_per_second_all"].values())
    assert set(result["ratios"]) == {
        "dense_vs_reference",
        "refill_overhead_percent",
        "refill_ops_percent_of_dense_step",
        "rsst_overhead_percent",
        "rsst_ops_percent_of_dense_step",
    }
    assert result["ratios"]["dense_vs_reference"] > 0 and result["host_syncs_per_epoch"] is None


def test_reference_loader_yields_normalised_cifar_batches_from_pil_images():
    bench = load_bench()
    splits = bench.synthetic_splits(16)
    x, y = next(iter(bench.reference_loader(splits, 32, 8, 0, False)))
    assert x.shape == (8, 3, 32, 32) and x.dtype == torch.float32 and y.shape == (8,)
    assert -3 < float(x.mean()) < 3
    x224, _ = next(iter(bench.reference_loader(splits, 224, 4, 0, False)))
    assert x224.shape == (4, 3, 224, 224)
