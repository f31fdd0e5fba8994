"""Throughput is measured per batch size for each model, with the device and versions recorded."""

import torch

from prunebench.export.throughput import measure_throughput


def test_throughput_per_model_and_batch_size():
    models = {"dense": torch.nn.Conv2d(3, 8, 3), "compact": torch.nn.Conv2d(3, 2, 3)}
    out = measure_throughput(models, (3, 16, 16), [1, 4], warmup=1, repeats=2)
    assert set(out["dense"]) == set(out["compact"]) == {"1", "4"}
    assert all(v > 0 for name in ("dense", "compact") for v in out[name].values())
    assert out["device_type"] == "cpu" and out["device"].startswith("cpu")
    assert {"torch", "timm"} <= set(out["versions"])
