"""Throughput is timed per batch size in paired rounds (torch.utils.benchmark), with the speedup's spread."""

import pytest
import torch

from prunebench.export.throughput import MIN_ROUNDS, compile_enabled, measure_throughput, speedup_spread, speedup_text

QUICK = 0.005  # seconds per model and round: these tests check structure, not speed


@pytest.fixture(autouse=True)
def one_thread():
    """One CPU thread: on a shared, oversubscribed CPU a multi-threaded forward waits on its threads'
    barriers for 100x its run time (tests here check structure, not speed)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def convs():
    return {"dense": torch.nn.Conv2d(3, 8, 3), "compact": torch.nn.Conv2d(3, 2, 3)}


def test_throughput_per_model_and_batch_size():
    out = measure_throughput(convs(), (3, 16, 16), [1, 4], warmup=1, repeats=2, round_seconds=QUICK)
    assert set(out["dense"]) == set(out["compact"]) == {"1", "4"}
    assert all(v > 0 for name in ("dense", "compact") for v in out[name].values())
    assert out["device_type"] == "cpu" and out["device"].startswith("cpu")
    assert {"torch", "timm"} <= set(out["versions"])
    assert "blocked_autorange" in out["timer"] and out["round_seconds"] == QUICK


def test_every_round_is_kept_and_the_speedup_comes_with_its_spread():
    out = measure_throughput(convs(), (3, 16, 16), [2], warmup=1, repeats=8, round_seconds=QUICK)
    assert out["rounds"] == 8
    for name in ("dense", "compact"):
        rounds = out["passes"][name]["2"]
        assert len(rounds) == 8 and all(p > 0 for p in rounds)
        assert min(rounds) <= out[name]["2"] <= max(rounds)  # the reported figure is the median round
    s = out["speedup"]["2"]
    assert set(s) == {"median", "q1", "q3", "min", "max", "rounds", "within_noise"} and s["rounds"] == 8
    # the spread is over the paired rounds: round i of compact over round i of dense
    ratios = [c / d for d, c in zip(out["passes"]["dense"]["2"], out["passes"]["compact"]["2"])]
    assert s["min"] == pytest.approx(min(ratios)) and s["max"] == pytest.approx(max(ratios))
    assert s["min"] <= s["q1"] <= s["median"] <= s["q3"] <= s["max"]
    assert s["within_noise"] == (s["min"] <= 1.0 <= s["max"])


def test_too_few_rounds_are_raised_to_the_fewest_that_can_tell_a_speedup_from_noise():
    out = measure_throughput(convs(), (3, 8, 8), [1], warmup=0, repeats=1, round_seconds=QUICK)
    assert out["rounds"] == MIN_ROUNDS == len(out["passes"]["dense"]["1"])
    assert 2 / 2**MIN_ROUNDS < 0.05  # all rounds agreeing by chance, for identical models: a sign test


def test_a_model_many_times_smaller_is_faster_beyond_the_noise():
    def net(width):
        return torch.nn.Sequential(torch.nn.Conv2d(3, width, 3), torch.nn.ReLU(), torch.nn.Conv2d(width, width, 3))

    out = measure_throughput({"dense": net(64), "compact": net(4)}, (3, 32, 32), [4], warmup=1, repeats=6,
                             round_seconds=0.02)  # fmt: skip
    s = out["speedup"]["4"]  # ~150x fewer MACs: every round agrees, however loaded the CPU
    assert s["min"] > 1.0 and not s["within_noise"] and out["compact"]["4"] > out["dense"]["4"]


def test_speedup_spread_by_hand():
    # dense seconds over compact seconds, round by round: 2, 3, 4, 5 (numpy's linear quartiles)
    s = speedup_spread([2.0, 3.0, 4.0, 5.0], [1.0, 1.0, 1.0, 1.0])
    assert s == {"median": 3.5, "q1": 2.75, "q3": 4.25, "min": 2.0, "max": 5.0, "rounds": 4, "within_noise": False}
    assert speedup_text(s) == "3.50x (2.00-5.00 over 4 rounds)"
    # one round in which the compact model was slower: the range covers 1.0
    s = speedup_spread([1.0, 1.2, 0.9], [1.0, 1.0, 1.0])
    assert s["within_noise"] and s["median"] == 1.0 and (s["min"], s["max"]) == (0.9, 1.2)
    assert speedup_text(s).endswith("over 3 rounds, within noise)")


class Recorder(torch.nn.Module):
    """Notes which model ran, and with how many CPU threads."""

    def __init__(self, name, log):
        super().__init__()
        self.name, self.log = name, log

    def forward(self, x):
        self.log.append((self.name, torch.get_num_threads()))
        return x + 1  # too small for a parallel region: quick with any number of threads


def test_rounds_alternate_the_order_and_time_with_the_jobs_threads(monkeypatch):
    from prunebench.export import throughput as T

    calls, order = [], []
    real = T._timer

    def spy(model, x, graphs):
        timer = real(model, x, graphs)
        autorange = timer.blocked_autorange

        def recorded(**kwargs):
            order.append(model.name)
            return autorange(**kwargs)

        timer.blocked_autorange = recorded
        return timer

    monkeypatch.setattr(T, "_timer", spy)
    torch.set_num_threads(2)
    models = {"dense": Recorder("dense", calls), "compact": Recorder("compact", calls)}
    measure_throughput(models, (3, 8, 8), [1], warmup=1, repeats=MIN_ROUNDS, round_seconds=QUICK)
    # drift between rounds hits both models alike: dense, compact | compact, dense | dense, compact ...
    assert order == ["dense", "compact", "compact", "dense"] * (MIN_ROUNDS // 2)
    assert {t for _, t in calls} == {2}  # the job's threads, not torch.utils.benchmark's default of 1


def _eager_backend(model, dev):
    return torch.compile(model, backend="eager", dynamic=False)  # dynamo only: seconds, no C++ build


def test_compiled_timing_is_reported_beside_the_eager_one():
    out = measure_throughput(convs(), (3, 16, 16), [1, 2], warmup=1, repeats=2, compile=True, compiler=_eager_backend,
                             round_seconds=QUICK)  # fmt: skip
    assert out["mode"] == "eager" and set(out["dense"]) == {"1", "2"}
    compiled = out["compiled"]
    assert compiled["mode"] == "compiled" and "error" not in compiled
    for name in ("dense", "compact"):
        assert set(compiled[name]) == {"1", "2"} and all(v > 0 for v in compiled[name].values())
        assert len(compiled["passes"][name]["2"]) == MIN_ROUNDS and compiled["compile_seconds"][name] > 0
    assert compiled["speedup"]["2"]["rounds"] == MIN_ROUNDS


def test_compile_auto_is_eager_only_on_the_cpu():
    out = measure_throughput(convs(), (3, 8, 8), [1], warmup=0, repeats=1, compile="auto", round_seconds=QUICK)
    assert "compiled" not in out and out["mode"] == "eager"
    assert compile_enabled("auto", "cuda") and not compile_enabled("auto", "cpu")
    with pytest.raises(ValueError, match="measure.compile"):
        compile_enabled("yes", "cpu")


def test_a_failed_compile_keeps_the_eager_figures_unless_compile_was_asked_for():
    def broken(model, dev):
        raise RuntimeError("no compiler here")

    with pytest.raises(RuntimeError, match="compiled timing failed.*measure.compile"):
        measure_throughput(convs(), (3, 8, 8), [1], warmup=0, repeats=1, compile=True, compiler=broken,
                           round_seconds=QUICK)  # fmt: skip
    # "auto" on a GPU: the failure is recorded, the eager timing stands (simulated on the CPU)
    from prunebench.export import throughput as T

    out = T._measure_compiled(convs(), (3, 8, 8), [1], torch.device("cpu"), torch.contiguous_format, 0, 1, False,
                              broken, strict=False)  # fmt: skip
    assert out == {"mode": "compiled", "how": "torch.compile()", "error": "RuntimeError: no compiler here"}
