"""A finished state is never trained again, and one state has one trainer at a time."""

import io
import json
import os
import signal
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch

import prunebench.train.recovery as recovery
from prunebench.errors import CheckpointError, StateBusyError
from prunebench.results.metrics import read_predictions, read_rows
from prunebench.train.job import train_state
from tests.conftest import resolved_experiment
from tests.unit.train.chains import paths

OUTPUTS = ("last.pt", "best.pt", "metrics.jsonl", "summary.json")
TRAINED_AN_EPOCH = "state 1 epoch 1/"  # the log line of a trained epoch


def killed_at(monkeypatch, where: str):
    """Make the end of a state die (as a kill would) at ``where``."""

    def die(*args, **kwargs):
        raise KeyboardInterrupt

    if where == "before_seal":  # every file in the bundle, no manifest yet
        monkeypatch.setattr(recovery, "_seal", die)
    elif where == "before_outputs":  # sealed, nothing linked into place
        monkeypatch.setattr(recovery, "_publish", die)
    else:  # every output in place: Snakemake has yet to record the job
        monkeypatch.setattr(recovery, "drop_progress", die)


@pytest.mark.parametrize("where", ["before_seal", "before_outputs", "after_outputs"])
def test_a_state_killed_after_its_last_epoch_is_not_trained_again(tiny_config, tmp_path, monkeypatch, caplog, where):
    tiny_config["defaults"]["train"]["epochs"] = 2
    exp = resolved_experiment(tiny_config)
    train_state(exp, 0, paths(tmp_path, 0), device="cpu", threads=1)
    with monkeypatch.context() as m:
        killed_at(m, where)
        with pytest.raises(KeyboardInterrupt):
            train_state(exp, 1, paths(tmp_path, 1), device="cpu", threads=1)
    bundle = tmp_path / "recovery/state1/finished"
    written = {name: (bundle / name).read_bytes() for name in OUTPUTS}
    predictions = read_predictions(bundle / "predictions.npz")
    # what Snakemake's rerun-incomplete does to the outputs of a job it has not recorded
    for name in OUTPUTS:
        (tmp_path / "state1" / name).unlink(missing_ok=True)

    caplog.set_level("INFO", logger="prunebench")
    caplog.clear()  # only the rerun's records
    summary = train_state(exp, 1, paths(tmp_path, 1), device="cpu", threads=1)
    assert TRAINED_AN_EPOCH not in caplog.text  # no epoch trained again ...
    rows = read_rows(tmp_path / "state1/metrics.jsonl")
    assert [r["epoch"] for r in rows] == [0, 1, 2]
    assert rows == [json.loads(line) for line in written["metrics.jsonl"].decode().splitlines()]  # ... timings too
    if where == "before_seal":  # unsealed: resumed after its last epoch, only the outputs written again
        assert "resuming state 1 after epoch 2 of 2" in caplog.text
        again, before = (torch.load(io.BytesIO(b), weights_only=True) for b in (
            (tmp_path / "state1/last.pt").read_bytes(), written["last.pt"]))  # fmt: skip
        assert all(torch.equal(v, before["state_dict"][k]) for k, v in again["state_dict"].items())
    else:
        assert "adopted the finished state from" in caplog.text and "resuming" not in caplog.text
        assert {name: (tmp_path / "state1" / name).read_bytes() for name in OUTPUTS} == written
        assert summary == json.loads(written["summary.json"])
    assert not (tmp_path / "recovery/state1/resume.pt").exists()
    assert not [r for r in caplog.records if r.levelname == "WARNING"]
    again = read_predictions(tmp_path / "state1/predictions.npz")  # kept in resume.pt, or adopted
    assert all(np.array_equal(again[k], predictions[k]) for k in predictions)


@pytest.mark.parametrize("change", ["config", "contents", "previous"])
def test_a_finished_copy_that_no_longer_fits_is_set_aside(tiny_config, tmp_path, monkeypatch, caplog, change):
    exp = resolved_experiment(tiny_config)
    train_state(exp, 0, paths(tmp_path, 0), device="cpu", threads=1)
    with monkeypatch.context() as m:
        killed_at(m, "before_outputs")
        with pytest.raises(KeyboardInterrupt):
            train_state(exp, 1, paths(tmp_path, 1), device="cpu", threads=1)
    bundle = tmp_path / "recovery/state1/finished"
    if change == "config":
        exp = {**exp, "train": {**exp["train"], "lr": 0.5}}
    elif change == "contents":
        (bundle / "best.pt").write_bytes((bundle / "best.pt").read_bytes()[:-10] + b"0123456789")
    else:
        previous = tmp_path / "state0/last.pt"
        previous.write_bytes(previous.read_bytes() + b"\0")  # as after state 0 was trained again ...
        summary = json.loads((tmp_path / "state0/summary.json").read_text())
        summary["files"] = recovery.file_digests(tmp_path / "state0", ("init.pt", "last.pt", "best.pt"))
        (tmp_path / "state0/summary.json").write_text(json.dumps(summary))  # ... which records its new files
    caplog.set_level("INFO", logger="prunebench")
    caplog.clear()  # only the rerun's records
    if change == "config":
        with pytest.raises(CheckpointError, match="trained under other settings"):  # state 0 is of the old config
            train_state(exp, 1, paths(tmp_path, 1), device="cpu", threads=1)
    else:
        train_state(exp, 1, paths(tmp_path, 1), device="cpu", threads=1)
        if change == "contents":  # its recovery checkpoint is still there: the outputs are written anew from it
            assert "resuming state 1 after epoch 1 of 1" in caplog.text
        else:  # it started from another state 0: it trains again from it
            assert TRAINED_AN_EPOCH in caplog.text
        assert (tmp_path / "state1/summary.json").is_file()
    expected = {
        "config": "was trained under other settings",
        "contents": "has a best.pt whose contents changed",
        "previous": "started from another",
    }[change]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert expected in warnings[0] and "setting them aside" in warnings[0], warnings
    assert "adopted" not in caplog.text


def test_the_finished_copy_goes_once_the_next_state_starts(tiny_config, tmp_path):
    tiny_config["defaults"]["prune"]["states"] = 3
    exp = resolved_experiment(tiny_config)
    for k in range(3):
        train_state(exp, k, paths(tmp_path, k), device="cpu", threads=1)
    assert sorted(p.name for p in (tmp_path / "recovery").iterdir()) == ["state2"]
    assert (tmp_path / "recovery/state2/finished/manifest.json").is_file()
    for k in range(3):  # the outputs outlive the copies they were linked from
        assert (tmp_path / f"state{k}/summary.json").is_file()
    recovery.release_finished(tmp_path / "state2")  # what the export of the final state does
    assert not (tmp_path / "recovery/state2").exists() and (tmp_path / "state2/last.pt").is_file()


HOLD_LOCK = """
import sys, time
from prunebench.train.recovery import lock_state
lock_state(sys.argv[1], "state 1 of a test")
print("locked", flush=True)
time.sleep(120)
"""


def test_a_second_trainer_of_a_state_stops_with_one_message_naming_the_first(tiny_config, tmp_path):
    exp = resolved_experiment(tiny_config)
    train_state(exp, 0, paths(tmp_path, 0), device="cpu", threads=1)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(tmp_path / "recovery/state1")], stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(StateBusyError) as err:
            train_state(exp, 1, paths(tmp_path, 1), device="cpu", threads=1)
        msg = str(err.value)
        assert f"PID {holder.pid} on host {socket.gethostname()}" in msg and "trainer.lock" in msg
        assert "Let that one finish" in msg and not (tmp_path / "state1").exists()
    finally:
        holder.send_signal(signal.SIGKILL)  # however the holder dies, the kernel drops its lock
        holder.wait()
    summary = train_state(exp, 1, paths(tmp_path, 1), device="cpu", threads=1)
    assert summary["state"] == 1 and (tmp_path / "state1/summary.json").is_file()


def test_the_lock_excludes_a_second_holder_in_the_same_process_until_released(tmp_path):
    first = recovery.lock_state(tmp_path / "rec", "state 3 of x")
    with pytest.raises(StateBusyError, match=rf"state 3 of x is already being trained by PID {os.getpid()}"):
        recovery.lock_state(tmp_path / "rec", "state 3 of x")
    first.release()
    recovery.lock_state(tmp_path / "rec", "state 3 of x").release()


def test_a_symlinked_lock_file_is_refused_and_its_target_untouched(tmp_path):
    target = tmp_path / "precious.txt"
    target.write_text("keep me")
    (tmp_path / "rec").mkdir()
    (tmp_path / "rec" / recovery.LOCK_NAME).symlink_to(target)
    with pytest.raises(Exception, match="is a symbolic link"):
        recovery.lock_state(tmp_path / "rec", "state 0 of x")
    assert target.read_text() == "keep me"


def test_a_shared_state0_is_adopted_too_and_its_copy_releases_it(tiny_config, tmp_path, caplog):
    from prunebench.config import resolve_config
    from prunebench.results.layout import StatePaths
    from prunebench.train.share import adopt_state0

    tiny_config["experiments"]["t"]["methods"] = ["refill", "rsst"]
    resolved = resolve_config(tiny_config)
    run = "shared/t-synthetic-tiny_vit-s0"
    shared = StatePaths.under(tmp_path, run, 0)  # the workflow's layout
    train_state(resolved.state0_runs[run], 0, shared, device="cpu", threads=1)
    written = {name: (shared.out_dir / name).read_bytes() for name in ("init.pt", *OUTPUTS)}
    for name in written:  # Snakemake died before recording the shared run
        (shared.out_dir / name).unlink()
    caplog.set_level("INFO", logger="prunebench")
    caplog.clear()  # only the rerun's records
    train_state(resolved.state0_runs[run], 0, shared, device="cpu", threads=1)
    assert "adopted the finished state from" in caplog.text and "state 0 epoch 1/" not in caplog.text
    assert {name: (shared.out_dir / name).read_bytes() for name in written} == written
    for name in ("refill", "rsst"):  # each copy runs once Snakemake has recorded the shared run
        exp = resolved.experiments[f"t-synthetic-tiny_vit-{name}-s0"]
        adopt_state0(shared.out_dir, tmp_path / exp["name"] / "state0", exp)
        assert not shared.recovery_dir.exists()


def test_a_job_waits_for_the_last_process_of_an_earlier_attempt_and_keeps_its_folder(tmp_path, caplog):
    import threading

    rec = tmp_path / "recovery/state0"
    rec.mkdir(parents=True)
    (rec / "finished").mkdir()
    rank = recovery.hold_ranks_lock(rec)  # a process of a killed attempt, still leaving
    recovery.release_finished(tmp_path / "state0")
    assert rec.is_dir(), "the folder (and the lock the process holds) went while the process lived"
    caplog.set_level("INFO", logger="prunebench")
    rerun = threading.Thread(target=recovery.wait_for_ranks, args=(rec, "state 0 of x"))
    rerun.start()
    rerun.join(1.0)
    assert rerun.is_alive(), "the rerun's job did not wait for the earlier attempt's process"
    assert "processes of an earlier attempt still hold" in caplog.text
    os.close(rank)  # the process ends
    rerun.join(10)
    assert not rerun.is_alive() and "have ended" in caplog.text
    os.close(recovery.hold_ranks_lock(rec))  # the rerun's own processes then take it
