"""A finished state is never trained again unless what it trains changed (SPEC §4): not for a code update,
a moved folder, another method's setting or another GPU count; and retraining on purpose is one command.

The project (Snakefile, rules, scripts, profiles and the package's source) is copied into a temporary
folder with its files' times, the run's results beside it, as a user's checkout would be.
"""

from __future__ import annotations

import copy
import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, TINY_CONFIG

TRAINING_RULES = ("train_state0", "train_state", "share_state0")
CODE = ("Snakefile", "rules", "workflow", "profiles", "envs", "src")


def config_of(**rsst) -> dict:
    config = copy.deepcopy(TINY_CONFIG)
    config["experiments"]["t"]["methods"] = ["refill", "rsst"]
    config["defaults"]["rsst"] = {"reg_granularity_prune": 1.0, **rsst}
    return config


def copy_project(dest: Path) -> Path:
    dest.mkdir(parents=True)
    for name in CODE:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(src, dest / name)
    return dest


def snakemake(project: Path, *args: str, config: dict | None = None) -> tuple[str, float]:
    """Run the project's own workflow (its Snakefile, its copy of prunebench) in the project folder."""
    if config is not None:
        (project / "config.yaml").write_text(yaml.safe_dump(config))
    env = {**os.environ, "PYTHONPATH": str(project / "src"), "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(project / "Snakefile"), "--directory", str(project)]
    start = time.monotonic()
    proc = subprocess.run([*cmd, "--cores", "2", *args], cwd=project, capture_output=True, text=True, env=env)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-5000:]
    return out, time.monotonic() - start


def planned_rules(out: str) -> dict[str, int]:
    return {rule: int(n) for rule, n in re.findall(r"^(\w+)\s+(\d+)$", out, re.M) if rule != "total"}


def ran_rules(out: str) -> set[str]:
    return set(re.findall(r"^(?:local)?rule (\w+):", out, re.M))


def training_jobs(out: str) -> list[tuple[str, str]]:
    """The (rule, wildcards) of every training job a dry run plans."""
    jobs = re.findall(r"^rule (\w+):\n(?:    (?!wildcards).*\n)*    wildcards: (.*)$", out, re.M)
    return sorted((rule, wildcards) for rule, wildcards in jobs if rule in TRAINING_RULES)


def copy_of(project: Path, dest: Path) -> Path:
    """The finished project copied with its files' times (each test changes its own copy)."""
    subprocess.run(["cp", "-a", str(project), str(dest)], check=True)
    return dest


def state_files(project: Path) -> dict[str, str]:
    """sha256 of every file of every state (and shared state 0) under the project's results."""
    results = project / "results"
    return {
        str(p.relative_to(results)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(results.glob("**/state*/*"))
        if p.is_file() and "recovery" not in p.parts and "retrained" not in p.parts
    }


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    project = copy_project(tmp_path_factory.mktemp("finished") / "project")
    snakemake(project, config=config_of())
    return project


def assert_nothing_trained(project: Path, before: dict[str, str], *args: str) -> None:
    """A dry run plans no training job, and the real run (the same command) trains none, in seconds."""
    out, _ = snakemake(project, "-n", *args)
    assert not set(planned_rules(out)) & set(TRAINING_RULES), out[-3000:]
    out, seconds = snakemake(project, *args)
    assert not ran_rules(out) & set(TRAINING_RULES), out[-3000:]
    assert seconds < 60, f"a run that trains nothing took {seconds:.0f} s"
    assert state_files(project) == before


@pytest.mark.slow
def test_a_code_update_trains_nothing(finished):
    before = state_files(finished)
    assert len([k for k in before if k.endswith("summary.json")]) == 5  # shared state 0, 2 copies, 2 states 1
    now = time.time() + 5  # a `git pull` of every file of the workflow and of prunebench
    for name in CODE:
        paths = [finished / name] if (finished / name).is_file() else (finished / name).rglob("*")
        for path in paths:
            os.utime(path, (now, now))
    out, _ = snakemake(finished, "-n")
    assert "Nothing to be done" in out, out[-3000:]
    assert_nothing_trained(finished, before)
    # the same through the demo profile, which names its own config file: given ours instead
    assert_nothing_trained(finished, before, "--profile", str(finished / "profiles" / "demo"), "--configfile",
                           str(finished / "config.yaml"))  # fmt: skip


@pytest.mark.slow
def test_a_folder_moved_with_its_times_trains_nothing(finished, tmp_path):
    before = state_files(finished)
    assert_nothing_trained(copy_of(finished, tmp_path / "moved"), before)


@pytest.mark.slow
def test_another_gpu_count_trains_nothing(finished, tmp_path):
    project = copy_of(finished, tmp_path / "gpus")
    before = state_files(project)
    config = config_of()
    config["defaults"]["train"]["gpus"] = 2
    (project / "config.yaml").write_text(yaml.safe_dump(config))
    assert_nothing_trained(project, before)


@pytest.mark.slow
def test_an_rsst_setting_trains_the_rsst_states_only(finished, tmp_path):
    project = copy_of(finished, tmp_path / "rsst")
    before = state_files(project)
    out, _ = snakemake(project, "-n", config=config_of(reg_granularity_prune=2.0))
    # RSST's state 1 trains; its copy of the shared dense state 0 is relabelled with RSST's new hash (seconds)
    assert training_jobs(out) == [
        ("share_state0", "experiment=t-synthetic-tiny_vit-rsst-s0"),
        ("train_state", "experiment=t-synthetic-tiny_vit-rsst-s0, state=1"),
    ], out[-3000:]
    out, _ = snakemake(project)
    assert ran_rules(out) & set(TRAINING_RULES) == {"train_state", "share_state0"}
    after = state_files(project)
    changed = {k for k in before if before[k] != after.get(k)}
    assert any(k.startswith("t-synthetic-tiny_vit-rsst-s0/state1/") for k in changed), changed
    assert all(k.startswith("t-synthetic-tiny_vit-rsst-s0/") for k in changed), changed  # Refill, shared: untouched


@pytest.mark.slow
def test_retraining_on_purpose_is_one_command(finished, tmp_path):
    project = copy_of(finished, tmp_path / "retrain")
    before = state_files(project)
    exp = "t-synthetic-tiny_vit-refill-s0"
    env = {**os.environ, "PYTHONPATH": str(project / "src")}
    cli = [sys.executable, "-m", "prunebench.cli"]
    # the documented command that trains one state by hand says a finished state is finished
    proc = subprocess.run([*cli, "train-state", "config.yaml", exp, "1"], cwd=project, env=env, capture_output=True,
                          text=True)  # fmt: skip
    assert proc.returncode == 0 and "is finished" in proc.stderr and "prunebench retrain" in proc.stderr, proc.stderr
    # ...and so does it for a state 0 copied from the shared run: nothing is rewritten, nothing downstream planned
    proc = subprocess.run([*cli, "train-state", "config.yaml", exp, "0"], cwd=project, env=env, capture_output=True,
                          text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out, _ = snakemake(project, "-n")
    assert "Nothing to be done" in out, out[-3000:]
    proc = subprocess.run([*cli, "retrain", "--config", "config.yaml", exp, "--from-state", "1"], cwd=project,
                          env=env, capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert f"set aside results/{exp}/state1" in proc.stdout
    kept = sorted((project / "results" / exp / "retrained").glob("*/state1/last.pt"))
    assert len(kept) == 1  # nothing is deleted
    out, _ = snakemake(project, "-n")
    assert training_jobs(out) == [("train_state", f"experiment={exp}, state=1")]
    snakemake(project)
    after = state_files(project)
    assert {k for k in before if before[k] != after.get(k)} <= {f"{exp}/state1/{n}" for n in os.listdir(kept[0].parent)}
    assert after[f"{exp}/state1/summary.json"] != before[f"{exp}/state1/summary.json"]
    # Snakemake's own --forcerun keeps its meaning: the forced state trains again, and the states after it
    out, _ = snakemake(project, "-n", "--forcerun", f"results/{exp}/state0/summary.json")
    assert training_jobs(out) == [
        ("share_state0", f"experiment={exp}"),
        ("train_state", f"experiment={exp}, state=1"),
    ], out[-3000:]
