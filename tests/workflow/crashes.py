"""Helpers of the workflow crash tests: a config that crashes mid-state, killing a running state."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable

from prunebench.results.metrics import TIMING_FIELDS, read_rows
from tests.conftest import SNAKEMAKE_ENV, TINY_CONFIG, snakemake_command

EXP = "t-synthetic-tiny_vit-rsst-s0"


TIMING = set(TIMING_FIELDS)  # the only fields allowed to differ between runs


def crash_config() -> dict:
    config = json.loads(json.dumps(TINY_CONFIG))
    config["experiments"]["t"]["methods"] = ["rsst"]  # RSST: its regulariser state must resume too
    config["models"]["tiny_vit"]["patch_size"] = 4  # 64 tokens: epochs long enough to kill one mid-state
    config["defaults"]["train"].update(state0_epochs=1, epochs=6)
    config["defaults"]["data"] = {}  # all 1000 synthetic images
    return config


def without_timing(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


def kill_mid_state(
    workdir, config, state: int, after_epochs: int, timeout: float = 600, until: Callable[[], bool] | None = None
) -> int:
    """Start the workflow in its own process group; SIGKILL the whole group once ``state`` has
    finished ``after_epochs`` epochs (its recovery metrics show them) and ``until()``, if given, is
    true (the epoch's log line follows its metrics row). Returns the epochs done."""
    progress = workdir / "results" / EXP / "recovery" / f"state{state}" / "metrics.jsonl"
    proc = subprocess.Popen(
        snakemake_command(workdir, config), cwd=workdir, env=SNAKEMAKE_ENV, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + timeout
    try:
        while len(read_rows(progress)) < after_epochs + 1 or (until and not until()):  # + epoch 0's row
            assert proc.poll() is None, f"the workflow ended (rc {proc.returncode}) before it could be killed"
            assert time.monotonic() < deadline, "state never reached the epoch to kill at"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # snakemake and its job: like a node going down
        proc.wait()
    return len(read_rows(progress)) - 1
