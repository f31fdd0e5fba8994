"""Logging: the log line format of every process, and every attempt's log kept.

:func:`configure_logging` gives every prunebench process (a command, a workflow job, a rank of a
multi-GPU state) the same timestamped lines on stderr.

Snakemake deletes a job's ``log:`` file before it runs the job again (``Job.remove_existing_output``
removes outputs and logs alike), so after a crash the rerun would replace the lines that explain
the crash. A training job therefore writes each line twice: to its Snakemake log (this attempt
only) and, appended, to the state's attempts log under ``logs/attempts/``, which Snakemake does not
know about and never deletes. Each attempt starts there with a header line.
"""

from __future__ import annotations

import io
import json
import logging
import os
import socket
import sys
import time
from pathlib import Path
from typing import TextIO

from prunebench.io import atomic_write_text

ATTEMPT_HEADER = "=== attempt "


class _StderrHandler(logging.StreamHandler):
    """A handler that writes to ``sys.stderr`` as it is when a line is logged, not as it was when the
    handler was made: a command run inside another program (a test's captured output, a tool that
    swaps the stream) would otherwise leave logging bound to a stream that has since been closed."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass  # always the current sys.stderr


def configure_logging(level: int = logging.INFO) -> None:
    """Log lines with a timestamp to stderr (a Snakemake job's stderr is its log file)."""
    logging.basicConfig(
        level=level, handlers=[_StderrHandler()], format="%(asctime)s %(levelname)s %(message)s", force=True
    )


def attempts_log_path(log_path: str | os.PathLike) -> Path:
    """The attempts log of a job log: ``logs/X/Y.log`` -> ``logs/attempts/X/Y.log``."""
    log_path = Path(log_path)
    parts = log_path.parts
    if "logs" in parts:
        i = parts.index("logs")
        return Path(*parts[: i + 1], "attempts", *parts[i + 1 :])
    return log_path.with_name(f"{log_path.name}.attempts")


class _Tee(io.TextIOBase):
    """A text stream that writes to several line-buffered files (a kill loses no finished line)."""

    def __init__(self, *streams: TextIO):
        self.streams = streams

    def write(self, text: str) -> int:
        for stream in self.streams:
            stream.write(text)
        return len(text)

    def flush(self) -> None:
        for stream in self.streams:
            stream.flush()

    def fileno(self) -> int:
        return self.streams[0].fileno()

    def writable(self) -> bool:
        return True

    @property
    def encoding(self) -> str:
        return "utf-8"


def previous_attempts(attempts_log: str | os.PathLike) -> int:
    """How many attempts the attempts log records."""
    try:
        with open(attempts_log, encoding="utf-8", errors="replace") as fh:
            return sum(line.startswith(ATTEMPT_HEADER) for line in fh)
    except FileNotFoundError:
        return 0


def log_every_attempt(log_path: str | os.PathLike) -> TextIO:
    """A stream for a job's stderr: its Snakemake log plus the attempts log that outlives reruns."""
    attempts = attempts_log_path(log_path)
    attempts.parent.mkdir(parents=True, exist_ok=True)
    number = previous_attempts(attempts) + 1
    log = open(log_path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115 (open for the job's life)
    keep = open(attempts, "a", buffering=1, encoding="utf-8")  # noqa: SIM115
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    keep.write(f"{ATTEMPT_HEADER}{number} started {started} on {socket.gethostname()}, pid {os.getpid()} ===\n")
    if number > 1:
        log.write(f"attempt {number} of this job; the log of every attempt, the earlier ones included, is {attempts}\n")
    return _Tee(log, keep)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds} s" if seconds < 100 else f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def state_done_line(summary: dict) -> str:
    """The console line of a finished state: its accuracies and wall time (from its summary.json)."""
    return (
        f"prunebench: {summary['experiment']} state {summary['state']} done in {_duration(summary['wall_seconds'])}: "
        f"test {summary['final_test_acc']:.1f} % at its end, {summary['best_test_acc']:.1f} % at its best "
        f"validation epoch ({summary['best_epoch']})"
    )


def announce_state(summary_path: str | os.PathLike, out: str | os.PathLike) -> None:
    """Print a finished state's line on this process's console (a local job's: Snakemake's own) and
    keep it in ``out``."""
    line = state_done_line(json.loads(Path(summary_path).read_text(encoding="utf-8")))
    print(line, flush=True)
    atomic_write_text(out, line + "\n")
