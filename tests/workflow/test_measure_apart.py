"""A timing job runs alone: measure_state holds every core of --cores, so the local scheduler starts
nothing beside it (training jobs above all); under a cluster executor each job has its own allocation."""

import copy
import re
import subprocess
import sys

from tests.conftest import REPO, SNAKEMAKE_ENV, TINY_CONFIG, run_snakemake


def planned_threads(out: str) -> dict[str, set[int]]:
    """{rule: the threads of its planned jobs} from a dry run's output (which omits "threads: 1")."""
    threads: dict[str, set[int]] = {}
    for rule, block in re.findall(r"^rule (\w+):\n((?:    .*\n)*)", out, re.M):
        n = re.search(r"^    threads: (\d+)$", block, re.M)
        threads.setdefault(rule, set()).add(int(n.group(1)) if n else 1)
    return threads


def test_measure_state_asks_for_every_core(tmp_path):
    config = copy.deepcopy(TINY_CONFIG)
    config["defaults"]["measure"] = {"enabled": True, "batch_sizes": [1], "warmup": 0, "repeats": 1}
    for cores in (3, 1):
        proc = run_snakemake(tmp_path / f"c{cores}", config, "-n", "--cores", str(cores))
        threads = planned_threads(proc.stdout)
        assert threads["measure_state"] == {cores}, proc.stdout[-3000:]
        assert threads["train_state"] == {1}  # training keeps its one thread per state


def test_the_demo_profile_times_with_its_two_cores(tmp_path):
    cmd = [sys.executable, "-m", "snakemake", "--directory", str(tmp_path), "--profile", "profiles/demo", "-n"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300, env=SNAKEMAKE_ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert planned_threads(proc.stdout)["measure_state"] == {2}
