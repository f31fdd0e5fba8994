"""Crash recovery: SIGKILL a running workflow mid-state, rerun it, and get the uninterrupted result."""

import json
import re
import subprocess
import time
from base64 import urlsafe_b64encode

import pytest

from prunebench.results.metrics import read_rows
from tests.conftest import SNAKEMAKE_ENV, TINY_CONFIG, run_snakemake, snakemake_command
from tests.workflow.crashes import EXP, crash_config, kill_mid_state, without_timing


@pytest.mark.slow
def test_a_killed_workflow_resumes_mid_state_and_matches_an_uninterrupted_run(tmp_path):
    config = crash_config()
    reference = tmp_path / "reference"
    run_snakemake(reference, config)

    crashed = tmp_path / "crashed"
    done = kill_mid_state(crashed, config, state=1, after_epochs=2)
    state0, state1 = crashed / "results" / EXP / "state0", crashed / "results" / EXP / "state1"
    assert 2 <= done < 6, f"killed after {done} epochs: not mid-state"
    assert (
        not (state1 / "summary.json").exists()
        and (crashed / "results" / EXP / "recovery" / "state1" / "resume.pt").is_file()
    )
    finished = {p.name: p.stat().st_mtime_ns for p in state0.iterdir()}

    # Snakemake's own lock outlives a SIGKILL: the same command says so and names the fix ...
    proc = run_snakemake(crashed, config, check=False)
    assert proc.returncode != 0 and "--unlock" in proc.stdout + proc.stderr
    # ... which the README gives: unlock, then the same command again.
    run_snakemake(crashed, config, "--unlock")
    proc = run_snakemake(crashed, config)

    assert {p.name: p.stat().st_mtime_ns for p in state0.iterdir()} == finished  # state 0 not rerun
    out = proc.stdout + proc.stderr
    assert "train_state0" not in out and "train_state " in out.split("Job stats:")[1]  # only state 1 ran
    log = (crashed / "logs" / "train_state" / EXP / "state1.log").read_text()
    epochs = [int(e) for e in re.findall(r"resuming state 1 after epoch (\d+) of 6", log)]
    # The kill can land between an epoch's metrics row and its resume.pt; then that epoch reruns.
    assert epochs and epochs[-1] in (done - 1, done) and epochs[-1] >= 1, log
    for k in (0, 1):
        ref_rows = read_rows(reference / "results" / EXP / f"state{k}" / "metrics.jsonl")
        rows = read_rows(crashed / "results" / EXP / f"state{k}" / "metrics.jsonl")
        assert [r["epoch"] for r in rows] == list(range(len(ref_rows)))  # no epoch twice, none missing
        assert without_timing(rows) == without_timing(ref_rows)
    ref_summary = json.loads((reference / "results" / EXP / "state1" / "summary.json").read_text())
    summary = json.loads((state1 / "summary.json").read_text())
    for key in ("best_epoch", "best_val_acc", "best_test_acc", "final_test_acc", "params_alive", "density"):
        assert summary[key] == ref_summary[key], key
    assert not (crashed / "results" / EXP / "recovery" / "state1").exists()


STATE_FILES = ("last.pt", "best.pt", "metrics.jsonl", "summary.json")


@pytest.mark.slow
def test_a_state_finished_while_snakemake_died_is_adopted_not_trained_again(tmp_path):
    """Snakemake killed after a job wrote its outputs and before it recorded the job: the rerun
    (rerun-incomplete deletes the outputs) adopts the finished state instead of training it again."""
    config = json.loads(json.dumps(TINY_CONFIG))
    config["defaults"]["train"]["epochs"] = 2
    exp = "t-synthetic-tiny_vit-refill-s0"
    final = f"results/{exp}/state1"
    run_snakemake(tmp_path, config, f"{final}/summary.json")  # the final state, not yet exported
    written = {name: (tmp_path / final / name).read_bytes() for name in STATE_FILES}
    # what Snakemake leaves when it dies while the job ends: the outputs still marked incomplete
    for name in STATE_FILES:
        marker = tmp_path / ".snakemake" / "incomplete" / urlsafe_b64encode(f"{final}/{name}".encode()).decode()
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text('{"external_jobid": null}')

    proc = run_snakemake(tmp_path, config)

    out = proc.stdout + proc.stderr
    assert re.search(r"^train_state\s+1$", out, re.M), out  # Snakemake did rerun the job ...
    log = (tmp_path / "logs" / "train_state" / exp / "state1.log").read_text()
    assert "adopted the finished state from" in log  # ... which took the finished outputs back
    assert len(re.findall(r"state 1 epoch 2/2 loss", log)) <= 1 and "resuming" not in log  # no epoch again
    assert {name: (tmp_path / final / name).read_bytes() for name in STATE_FILES} == written  # timings too
    assert (tmp_path / "results" / exp / "compact" / "model.pt").is_file()
    assert not (tmp_path / "results" / exp / "recovery" / "state1").exists()  # released by the export


@pytest.mark.slow
def test_snakemake_killed_while_its_job_finishes_the_state_is_not_trained_again(tmp_path):
    """The issue's case: Snakemake dies, its running job finishes as an orphan, then `--unlock` and
    the same command. The rerun adopts the orphan's finished state and trains no epoch of it."""
    config = crash_config()
    state1 = tmp_path / "results" / EXP / "state1"
    proc = subprocess.Popen(
        snakemake_command(tmp_path, config), cwd=tmp_path, env=SNAKEMAKE_ENV,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    progress = tmp_path / "results" / EXP / "recovery" / "state1" / "metrics.jsonl"
    deadline = time.monotonic() + 600
    while len(read_rows(progress)) < 2:  # state 1 is training
        assert proc.poll() is None and time.monotonic() < deadline, "state 1 never started"
        time.sleep(0.05)
    proc.kill()  # Snakemake only: its job runs on, orphaned
    proc.wait()
    lock = tmp_path / "results" / EXP / "recovery" / "state1" / "trainer.lock"
    while not (state1 / "summary.json").is_file() or _locked(lock):  # the orphan finishes and exits
        assert time.monotonic() < deadline, "the orphaned job never finished"
        time.sleep(0.1)
    written = {name: (state1 / name).read_bytes() for name in STATE_FILES}

    run_snakemake(tmp_path, config, "--unlock")
    proc = run_snakemake(tmp_path, config)

    log = (tmp_path / "logs" / "train_state" / EXP / "state1.log").read_text()
    assert "adopted the finished state from" in log, proc.stdout + proc.stderr
    assert len(re.findall(r"state 1 epoch 6/6 loss", log)) <= 1 and "resuming" not in log  # no epoch again
    assert {name: (state1 / name).read_bytes() for name in STATE_FILES} == written
    assert (tmp_path / "results" / EXP / "compact" / "model.pt").is_file()


def _locked(path) -> bool:
    """Whether a process holds the state lock ``path``."""
    import fcntl

    with open(path, "rb") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        return False
