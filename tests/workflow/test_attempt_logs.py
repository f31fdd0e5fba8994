"""A state killed mid-way and rerun: the killed attempt's log lines are kept beside the rerun's."""

import pytest

from tests.conftest import run_snakemake
from tests.workflow.crashes import EXP, crash_config, kill_mid_state


@pytest.mark.slow
def test_the_log_of_a_killed_attempt_survives_the_rerun(tmp_path):
    config = crash_config()
    config["defaults"]["train"]["epochs"] = 3
    attempts_log = tmp_path / "logs" / "attempts" / "train_state" / EXP / "state1.log"

    def logged_epoch_1() -> bool:  # the log line comes a moment after the metrics row: kill after both
        return attempts_log.is_file() and "state 1 epoch 1/3 loss" in attempts_log.read_text()

    kill_mid_state(tmp_path, config, state=1, after_epochs=1, until=logged_epoch_1)
    run_snakemake(tmp_path, config, "--unlock")
    run_snakemake(tmp_path, config)

    log = (tmp_path / "logs" / "train_state" / EXP / "state1.log").read_text()
    attempts = attempts_log.read_text()
    first, second = attempts.split("=== attempt 2 started")
    assert first.startswith("=== attempt 1 started") and "=== attempt 3" not in attempts
    assert "state 1 epoch 1/3 loss" in first and "resuming" not in first  # the killed attempt's lines
    assert "state 1 epoch 3/3 loss" in second  # the rerun (resumed, or from the start if killed before resume.pt)
    killed_line = next(line for line in first.splitlines() if "state 1 epoch 1/3 loss" in line)
    assert killed_line not in log  # Snakemake's log holds the rerun only...
    assert f"the log of every attempt, the earlier ones included, is logs/attempts/train_state/{EXP}/state1.log" in log
    assert log.split("\n", 1)[1] in second  # ...which is the attempts log's last part
