"""Log lines go to sys.stderr as it is when they are logged (a swapped, since closed stream breaks nothing)."""

import io
import logging
import sys

from prunebench.logs import configure_logging


def test_lines_follow_the_current_stderr_after_the_one_at_setup_closed(monkeypatch):
    first = io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    configure_logging()
    logging.getLogger("prunebench").info("one")
    assert first.getvalue().endswith("INFO one\n")
    first.close()  # what a finished test's captured stderr is
    second = io.StringIO()
    monkeypatch.setattr(sys, "stderr", second)
    logging.getLogger("prunebench").info("two")
    assert second.getvalue().endswith("INFO two\n")
