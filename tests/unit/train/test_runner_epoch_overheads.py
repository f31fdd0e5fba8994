"""Per-epoch overheads (issue 13): compile settings, train.eval_every, background checkpoint writes,
and the timing split of metrics.jsonl and summary.json."""

import csv
import io
import itertools
import json
import os
import threading
import time

import pytest
import torch

from prunebench.accel.settings import GRAPH_MAX_PX, compile_mode_for, compiles, use_compile_cache
from prunebench.errors import WriteError
from prunebench.report.analysis import anomalies, dynamics
from prunebench.report.load import load_results, read_epochs
from prunebench.report.plots import training_curve_series
from prunebench.report.status import progress
from prunebench.results.checkpoint import load_checkpoint
from prunebench.results.layout import StatePaths
from prunebench.results.metrics import TIMING_FIELDS, read_rows
from prunebench.train.job import train_state
from prunebench.train.tracking import csv_text
from prunebench.train.writer import CheckpointWriter, snapshot
from tests.conftest import resolved_experiment

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


# --- compile settings ---------------------------------------------------------------------------


def test_compile_auto_compiles_on_cuda_only():
    assert compiles("auto", CUDA) and not compiles("auto", CPU)
    assert compiles(True, CPU) and compiles(True, CUDA)
    assert not compiles(False, CUDA)


def test_compile_mode_auto_graphs_small_inputs_on_cuda():
    assert compile_mode_for("auto", 32, CUDA) == "reduce-overhead"  # CIFAR: launch-bound even compiled
    assert compile_mode_for("auto", GRAPH_MAX_PX, CUDA) == "reduce-overhead"
    assert compile_mode_for("auto", 224, CUDA) == "default"
    assert compile_mode_for("auto", 32, CPU) == "default"  # CUDA graphs need CUDA
    assert compile_mode_for("max-autotune", 32, CUDA) == "max-autotune"


def test_compile_cache_dir_is_set_unless_the_environment_names_one(tmp_path, monkeypatch):
    for name in ("TORCHINDUCTOR_CACHE_DIR", "TORCHINDUCTOR_FX_GRAPH_CACHE", "TORCHINDUCTOR_AUTOGRAD_CACHE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    folder = use_compile_cache("~/cache/inductor")
    assert folder == str(tmp_path / "cache" / "inductor") == os.environ["TORCHINDUCTOR_CACHE_DIR"]
    assert os.path.isdir(folder)
    assert os.environ["TORCHINDUCTOR_FX_GRAPH_CACHE"] == os.environ["TORCHINDUCTOR_AUTOGRAD_CACHE"] == "1"
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", "/the/users/own")
    assert use_compile_cache(str(tmp_path / "other")) == "/the/users/own"
    assert not (tmp_path / "other").exists()


# --- the background checkpoint writer -----------------------------------------------------------


def test_a_write_is_of_the_tensors_as_they_were_when_saved(tmp_path):
    w = torch.zeros(1000)
    with CheckpointWriter(background=True) as writer:
        writer.save(tmp_path / "a.pt", {"w": w, "nested": [w, (w,)], "n": 3})
        w += 1  # training goes on at once
    got = torch.load(tmp_path / "a.pt", weights_only=True)
    assert torch.equal(got["w"], torch.zeros(1000)) and torch.equal(got["nested"][1][0], torch.zeros(1000))
    assert got["n"] == 3
    assert [p.name for p in tmp_path.iterdir()] == ["a.pt"]  # no temp file left
    assert writer.written == 1
    s = snapshot({"w": w})
    assert s["w"].data_ptr() != w.data_ptr()


def test_writes_and_tasks_run_in_order_and_a_file_waits_for_its_previous_write(tmp_path):
    order, gate = [], threading.Event()

    def slow_save(path, obj):
        gate.wait(5)
        order.append((path.name, obj["v"]))
        path.write_text(str(obj["v"]))

    writer = CheckpointWriter(background=True, save=slow_save)
    writer.save(tmp_path / "best.pt", {"v": 1})
    writer.save(tmp_path / "resume.pt", {"v": 2})
    writer.then(lambda: order.append(("drop", 0)))
    assert order == []  # nothing blocked the caller
    threading.Timer(0.2, gate.set).start()
    start = time.perf_counter()
    writer.save(tmp_path / "resume.pt", {"v": 3})  # waits for the resume.pt in flight, not longer
    assert time.perf_counter() - start >= 0.1 and writer.blocked_seconds >= 0.1
    writer.close()
    assert order == [("best.pt", 1), ("resume.pt", 2), ("drop", 0), ("resume.pt", 3)]
    assert (tmp_path / "resume.pt").read_text() == "3"


def test_a_failed_background_write_is_raised_in_the_training_thread_and_stops_later_writes(tmp_path):
    gate = threading.Event()

    def save(path, obj):
        gate.wait(5)
        if path.name == "best.pt":
            raise WriteError(f"cannot write {path}: no space left on device")
        path.write_text("x")

    writer = CheckpointWriter(background=True, save=save)
    writer.save(tmp_path / "best.pt", {})
    writer.save(tmp_path / "resume.pt", {})  # queued behind the failing write
    gate.set()
    with pytest.raises(WriteError, match="no space left"):
        writer.wait()
    assert not (tmp_path / "resume.pt").exists()  # nothing naming the missing best reached the disk
    with pytest.raises(WriteError):
        writer.save(tmp_path / "later.pt", {})
    writer.close(quiet=True)


def test_a_failure_while_another_exception_stops_the_state_is_logged(tmp_path, caplog):
    def save(path, obj):
        raise WriteError("cannot write: disk full")

    with pytest.raises(KeyboardInterrupt), CheckpointWriter(background=True, save=save) as writer:
        writer.save(tmp_path / "a.pt", {})
        raise KeyboardInterrupt
    assert "disk full" in caplog.text


def test_the_atomic_write_leaves_the_old_file_when_the_background_write_fails(tmp_path, monkeypatch):
    target = tmp_path / "resume.pt"
    torch.save({"v": 1}, target)
    real_save = torch.save

    def failing_save(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", failing_save)
    writer = CheckpointWriter(background=True)
    writer.save(target, {"v": torch.ones(3)})
    with pytest.raises(WriteError, match="no space left on device"):
        writer.close()
    monkeypatch.undo()
    assert torch.load(target, weights_only=True) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["resume.pt"]


# --- eval_every, the timing split, and the readers of metrics.jsonl -------------------------------


def state_paths(root, k):
    return StatePaths(
        root / f"state{k}", root / "recovery" / f"state{k}", root / f"state{k - 1}/last.pt" if k else None,
        root / "state0/init.pt",
    )  # fmt: skip


@pytest.fixture(scope="module")
def every_third(tmp_path_factory):
    """A 5-epoch state 0 evaluated every third epoch (epochs 0, 3 and 5)."""
    from tests.conftest import TINY_CONFIG

    root = tmp_path_factory.mktemp("every3")
    config = json.loads(json.dumps(TINY_CONFIG))
    config["data_dir"] = str(root / "data")
    config["defaults"]["train"].update(epochs=5, eval_every=3, lr=0.01)
    exp = resolved_experiment(config)
    summary = train_state(exp, 0, state_paths(root, 0), device="cpu", threads=1)
    return root, exp, summary


def test_unevaluated_epochs_have_no_val_or_test_fields(every_third):
    root, _, summary = every_third
    rows = read_rows(root / "state0/metrics.jsonl")
    assert [r["evaluated"] for r in rows] == [True, False, False, True, False, True]
    for r in rows:
        assert all((k in r) == r["evaluated"] for k in ("val_loss", "val_acc"))
        assert all(k in r for k in ("train_seconds", "eval_seconds", "checkpoint_seconds"))
        assert r["eval_seconds"] > 0 if r["evaluated"] else r["eval_seconds"] == 0
    assert summary["best_epoch"] in (3, 5) and summary["evaluated_epochs"] == 2
    # train.eval_test: best_and_final: test at epoch 0, the last and the best epoch only
    assert [r["epoch"] for r in rows if "test_acc" in r] == sorted({0, summary["best_epoch"], 5})
    best = load_checkpoint(root / "state0/best.pt")
    assert best["epoch"] == summary["best_epoch"] and best["metrics"]["evaluated"]
    assert summary["max_test_acc"] == max(r["test_acc"] for r in rows[1:] if "test_acc" in r)


def test_the_summary_splits_the_wall_time(every_third):
    root, _, summary = every_third
    split = summary["time_split"]
    assert set(split) == {"train", "eval", "checkpoint", "other"}
    assert sum(split.values()) == pytest.approx(1.0)
    assert all(0 <= v <= 1 for v in split.values())
    assert split["train"] == pytest.approx(summary["train_seconds"] / summary["wall_seconds"])
    rows = read_rows(root / "state0/metrics.jsonl")
    assert summary["eval_seconds"] == pytest.approx(sum(r["eval_seconds"] for r in rows))
    assert summary["checkpoint_seconds"] >= sum(r["checkpoint_seconds"] for r in rows) - 1e-9
    assert summary["compile"] == {
        "setting": "auto",
        "compiled": False,
        "mode": None,
        "backend": None,
        "cache_dir": None,
    }
    assert set(TIMING_FIELDS) <= set(rows[-1])


def test_reports_tracking_and_status_read_unevaluated_epochs(every_third):
    root, exp, _ = every_third
    lines = csv.DictReader(io.StringIO(csv_text(exp, read_rows(root / "state0/metrics.jsonl"))))
    line = next(itertools.islice(lines, 1, 2))
    assert [line[k] for k in ("eval_loss", "eval_top1", "test_top1")] == ["", "", ""]  # epoch 1: not evaluated
    results = load_results([root / "state0/summary.json"])
    epochs = results.epochs
    assert list(epochs["evaluated"]) == [True, False, False, True, False, True]
    assert not anomalies(results.states, epochs)  # a skipped evaluation is not a NaN
    dyn = dynamics(epochs)
    assert dyn["last_mean"].notna().all() and dyn["gap"].notna().all()
    series = training_curve_series(epochs)
    assert list(series["val_acc"][epochs["method"].iloc[0]]["x"]) == [0, 3, 5]  # joined, no gaps
    tested = [r["epoch"] for r in read_rows(root / "state0/metrics.jsonl") if "test_acc" in r]
    assert list(series["test_acc"][epochs["method"].iloc[0]]["x"]) == tested  # best_and_final: those with test
    assert dyn["metric"].tolist() == ["val_acc"]
    assert len(series["train_loss"][epochs["method"].iloc[0]]) == 6
    assert all(r["evaluated"] is not None for r in read_epochs(root / "state0/metrics.jsonl"))


def test_status_eta_counts_eval_and_checkpoint_time(tmp_path):
    import pandas as pd

    rec = tmp_path / "x" / "recovery" / "state0"
    rec.mkdir(parents=True)
    rows = [
        {"epoch": 0, "epoch_seconds": 0.0, "eval_seconds": 1.0, "checkpoint_seconds": 0.0, "evaluated": True},
        {"epoch": 1, "epoch_seconds": 10.0, "eval_seconds": 0.0, "checkpoint_seconds": 1.0, "evaluated": False},
        {"epoch": 2, "epoch_seconds": 10.0, "eval_seconds": 2.0, "checkpoint_seconds": 0.0, "evaluated": True},
    ]
    (rec / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    plan = pd.DataFrame([{"experiment": "x", "states": 1, "epochs": 4, "state0_epochs": 4}])
    got = progress(tmp_path, plan).iloc[0]
    # the mean of its trained epochs (11 s, 12 s), each with its evaluation and checkpoint; not epoch 0
    assert got["epoch"] == 2 and got["eta_seconds"] == pytest.approx(2 * 23.0 / 2)
    (rec / "metrics.jsonl").write_text('{"epoch": 0, "epoch_seconds": 0.0}\n{"epoch": 1, "epoch_seconds": 10.0}\n')
    assert progress(tmp_path, plan).iloc[0]["eta_seconds"] == pytest.approx(30.0)  # an older file: training only


def test_rsst_evaluates_its_mask_epoch_whatever_eval_every(tiny_config, tmp_path):
    tiny_config["data_dir"] = str(tmp_path / "data")
    tiny_config["defaults"]["train"].update(epochs=4, state0_epochs=1, eval_every=50)
    tiny_config["defaults"]["rsst"] = {"peak_at": 0.5}
    exp = resolved_experiment(tiny_config, "rsst")
    train_state(exp, 0, state_paths(tmp_path, 0), device="cpu", threads=1)
    summary = train_state(exp, 1, state_paths(tmp_path, 1), device="cpu", threads=1)
    rows = read_rows(tmp_path / "state1/metrics.jsonl")
    mask_epoch = summary["rsst"]["mask_epoch"]
    assert mask_epoch < 4
    assert [r["epoch"] for r in rows if r["evaluated"]] == [0, mask_epoch, 4]
    assert summary["rsst"]["masked"]["val_acc"] == rows[mask_epoch]["val_acc"]


def test_sync_and_background_checkpoints_train_the_same_state(tiny_config, tmp_path):
    tiny_config["data_dir"] = str(tmp_path / "data")
    tiny_config["defaults"]["train"]["epochs"] = 2
    out = {}
    for background in (False, True):
        tiny_config["defaults"]["train"]["background_checkpoints"] = background
        root = tmp_path / str(background)
        out[background] = train_state(
            resolved_experiment(tiny_config), 0, state_paths(root, 0), device="cpu", threads=1
        )
        assert not list((root / "recovery" / "state0").glob(".*.tmp"))
    rows = {b: read_rows(tmp_path / str(b) / "state0/metrics.jsonl") for b in out}
    strip = {b: [{k: v for k, v in r.items() if k not in TIMING_FIELDS} for r in rows[b]] for b in rows}
    assert strip[False] == strip[True]
    a, b = (load_checkpoint(tmp_path / str(x) / "state0/last.pt")["state_dict"] for x in (False, True))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_evaluation_is_padded_to_one_shape_only_when_compiled(tiny_config, tmp_path, monkeypatch):
    import prunebench.train.runner as runner_module

    seen, real = [], runner_module.evaluate

    def spy(*args, **kwargs):
        seen.append((args[3], kwargs["pad"]))
        return real(*args, **kwargs)

    monkeypatch.setattr(runner_module, "evaluate", spy)
    monkeypatch.setattr(torch, "compile", lambda model, **kwargs: model)  # compiled, as far as the runner knows
    tiny_config["data_dir"] = str(tmp_path / "data")
    tiny_config["defaults"]["train"]["eval_batch_size"] = 1024  # synthetic-tiny: val 100, test 200
    for setting in (False, True):
        tiny_config["defaults"]["train"]["compile"] = setting
        train_state(resolved_experiment(tiny_config), 0, state_paths(tmp_path / str(setting), 0), device="cpu")
    # eager on the CPU: the leftover batch as it is; compiled: one shape, no larger than the largest split
    assert set(seen) == {(200, False), (200, True)}


def test_a_state_killed_after_an_epoch_resumes_under_other_runtime_settings(tiny_config, tmp_path, monkeypatch, caplog):
    """The background write of the last resume.pt is on disk when the state dies (joined on the way
    out), and a rerun with other compile/checkpoint settings (not in the training hash) resumes it."""
    import prunebench.train.runner as runner_module

    real = runner_module.save_resume

    def save_then_die(paths, run, prog):
        real(paths, run, prog)
        if prog.epoch == 1:
            raise KeyboardInterrupt

    tiny_config["data_dir"] = str(tmp_path / "data")
    tiny_config["defaults"]["train"]["epochs"] = 2
    with monkeypatch.context() as m:
        m.setattr(runner_module, "save_resume", save_then_die)
        with pytest.raises(KeyboardInterrupt):
            train_state(resolved_experiment(tiny_config), 0, state_paths(tmp_path, 0), device="cpu", threads=1)
    recovery = tmp_path / "recovery" / "state0"
    assert torch.load(recovery / "resume.pt", weights_only=True)["progress"]["epoch"] == 1
    assert not list(recovery.glob(".*.tmp"))
    tiny_config["defaults"]["train"].update(background_checkpoints=False, compile_mode="max-autotune")
    caplog.set_level("INFO", logger="prunebench")
    train_state(resolved_experiment(tiny_config), 0, state_paths(tmp_path, 0), device="cpu", threads=1)
    assert "resuming state 0 after epoch 1 of 2" in caplog.text
    assert [r["epoch"] for r in read_rows(tmp_path / "state0/metrics.jsonl")] == [0, 1, 2]


def test_the_next_copy_of_a_file_reuses_the_memory_of_the_last_once_it_is_written(tmp_path):
    w = torch.arange(6.0)
    writer = CheckpointWriter(background=True)
    writer.save(tmp_path / "r.pt", {"w": w, "opt": [w * 2]})
    first = writer._copies[tmp_path / "r.pt"]["w"]
    w += 10
    writer.save(tmp_path / "r.pt", {"w": w, "opt": [w * 2]})  # waits for the first write, then reuses
    assert writer._copies[tmp_path / "r.pt"]["w"].data_ptr() == first.data_ptr()
    writer.save(tmp_path / "other.pt", {"w": w})  # another file: its own copy
    assert writer._copies[tmp_path / "other.pt"]["w"].data_ptr() != first.data_ptr()
    writer.close()
    got = torch.load(tmp_path / "r.pt", weights_only=True)
    assert torch.equal(got["w"], torch.arange(6.0) + 10) and torch.equal(got["opt"][0], 2 * (torch.arange(6.0) + 10))
    assert snapshot({"a": torch.ones(2)}, {"a": torch.zeros(3)})["a"].shape == (2,)  # a shape change: a new tensor
