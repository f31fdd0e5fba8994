"""Throughput is measured per batch size for each model, with the device and versions recorded."""

import pytest
import torch

from prunebench.export.throughput import compile_enabled, measure_throughput


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


def _eager_backend(model, dev):
    return torch.compile(model, backend="eager", dynamic=False)  # dynamo only: seconds, no C++ build


def test_compiled_timing_is_reported_beside_the_eager_one():
    models = {"dense": torch.nn.Conv2d(3, 8, 3), "compact": torch.nn.Conv2d(3, 2, 3)}
    out = measure_throughput(models, (3, 16, 16), [1, 2], warmup=1, repeats=2, compile=True, compiler=_eager_backend)
    assert out["mode"] == "eager" and set(out["dense"]) == {"1", "2"}
    compiled = out["compiled"]
    assert compiled["mode"] == "compiled" and "error" not in compiled
    for name in models:
        assert set(compiled[name]) == {"1", "2"} and all(v > 0 for v in compiled[name].values())
        assert len(compiled["passes"][name]["2"]) == 2 and compiled["compile_seconds"][name] > 0


def test_compile_auto_is_eager_only_on_the_cpu():
    models = {"dense": torch.nn.Conv2d(3, 8, 3), "compact": torch.nn.Conv2d(3, 2, 3)}
    out = measure_throughput(models, (3, 8, 8), [1], warmup=0, repeats=1, compile="auto")
    assert "compiled" not in out and out["mode"] == "eager"
    assert compile_enabled("auto", "cuda") and not compile_enabled("auto", "cpu")
    with pytest.raises(ValueError, match="measure.compile"):
        compile_enabled("yes", "cpu")


def test_a_failed_compile_keeps_the_eager_figures_unless_compile_was_asked_for():
    def broken(model, dev):
        raise RuntimeError("no compiler here")

    models = {"dense": torch.nn.Conv2d(3, 8, 3), "compact": torch.nn.Conv2d(3, 2, 3)}
    with pytest.raises(RuntimeError, match="compiled timing failed.*measure.compile"):
        measure_throughput(models, (3, 8, 8), [1], warmup=0, repeats=1, compile=True, compiler=broken)
    # "auto" on a GPU: the failure is recorded, the eager timing stands (simulated on the CPU)
    from prunebench.export import throughput as T

    out = T._measure_compiled(models, (3, 8, 8), [1], torch.device("cpu"), torch.contiguous_format, 0, 1, False,
                              broken, strict=False)  # fmt: skip
    assert out == {"mode": "compiled", "how": "torch.compile()", "error": "RuntimeError: no compiler here"}
