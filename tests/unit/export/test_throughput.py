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


def test_every_timed_pass_is_kept_for_the_spread():
    models = {"dense": torch.nn.Conv2d(3, 8, 3), "compact": torch.nn.Conv2d(3, 2, 3)}
    out = measure_throughput(models, (3, 16, 16), [2], warmup=1, repeats=3)
    for name in models:
        passes = out["passes"][name]["2"]
        assert len(passes) == 3 and all(p > 0 for p in passes)
        assert out[name]["2"] == max(passes)  # the reported figure is the fastest pass
