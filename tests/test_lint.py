"""Formatting and lint gates: ruff, snakefmt and `snakemake --lint` are clean."""

import subprocess
import sys

import pytest

from tests.conftest import REPO


def run(*cmd):
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(
    "cmd",
    [
        (sys.executable, "-m", "ruff", "check", "."),
        (sys.executable, "-m", "ruff", "format", "--check", "."),
        (sys.executable, "-m", "snakefmt", "--check", "."),
    ],
    ids=["ruff-check", "ruff-format", "snakefmt"],
)
def test_code_is_clean(cmd):
    proc = run(*cmd)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_snakemake_lint_is_clean():
    proc = run(sys.executable, "-m", "snakemake", "--lint", "--cores", "1")
    assert "Congratulations, your workflow is in a good condition!" in proc.stdout + proc.stderr, (
        proc.stdout + proc.stderr
    )
