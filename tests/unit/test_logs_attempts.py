"""Every attempt's log is kept, although Snakemake deletes a job's log before each rerun."""

import os

from prunebench.logs import attempts_log_path, log_every_attempt


def test_two_attempts_both_keep_their_lines(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    log = "logs/train_state/exp/state1.log"
    os.makedirs("logs/train_state/exp")
    first = log_every_attempt(log)
    first.write("epoch 2 done\nTraceback: killed here\n")  # the lines that explain a crash
    os.remove(log)  # what Snakemake does before it reruns the job
    second = log_every_attempt(log)
    second.write("resuming state 1 after epoch 2 of 6\n")
    attempts = (tmp_path / "logs/attempts/train_state/exp/state1.log").read_text()
    assert attempts.count("=== attempt ") == 2
    assert attempts.index("Traceback: killed here") < attempts.index("=== attempt 2 started")
    assert attempts.endswith("resuming state 1 after epoch 2 of 6\n")
    rerun_log = (tmp_path / log).read_text()  # this attempt only, and where to find the others
    assert "Traceback" not in rerun_log and "resuming state 1" in rerun_log
    assert "attempt 2 of this job; the log of every attempt, the earlier ones included, is logs/attempts/" in rerun_log


def test_the_attempts_log_sits_in_logs_attempts():
    assert str(attempts_log_path("logs/train_state/e/state0.log")) == "logs/attempts/train_state/e/state0.log"
    assert str(attempts_log_path("/x/y.log")) == "/x/y.log.attempts"
