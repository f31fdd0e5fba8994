"""What a settings change makes Snakemake redo after a finished run: training only for a training
setting, and only the states it concerns; timing only for a measure setting; nothing for a runtime one."""

import copy
import json
import re

import pytest
import yaml

from tests.conftest import TINY_CONFIG, run_snakemake
from tests.workflow.plans import TRAINING_RULES


def two_groups() -> dict:
    """Groups a and b, each Refill over 2 states of 1 epoch, with a quick throughput timing."""
    config = copy.deepcopy(TINY_CONFIG)
    config["defaults"]["measure"] = {"enabled": True, "batch_sizes": [1], "warmup": 0, "repeats": 1}
    config["experiments"] = {g: copy.deepcopy(TINY_CONFIG["experiments"]["t"]) for g in ("a", "b")}
    return config


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("triggers")
    run_snakemake(workdir, two_groups())
    return workdir


def planned(workdir, config, *args) -> tuple[dict[str, int], list[tuple[str, str]], str]:
    """Dry run: jobs per rule, the (rule, wildcards) of every job, and the whole output."""
    proc = run_snakemake(workdir, config, "-n", *args)
    out = proc.stdout + proc.stderr
    counts = {rule: int(n) for rule, n in re.findall(r"^(\w+)\s+(\d+)$", out, re.M) if rule != "total"}
    jobs = re.findall(r"^rule (\w+):\n(?:    (?!wildcards).*\n)*    wildcards: (.*)$", out, re.M)
    return counts, jobs, out


@pytest.mark.slow
def test_the_finished_run_timed_every_state_apart(finished):
    exp = finished / "results" / "a-synthetic-tiny_vit-refill-s0"
    timed = json.loads((exp / "state1" / "throughput.json").read_text())
    summary = json.loads((exp / "state1" / "summary.json").read_text())
    assert timed["throughput"]["compact"]["1"] > 0 and summary["throughput"] is None
    assert (timed["experiment"], timed["state"], timed["config_hash"]) == (exp.name, 1, summary["config_hash"])
    assert (finished / "results" / "shared" / "a-synthetic-tiny_vit-s0" / "state0" / "throughput.json").is_file()
    assert not (exp / "state0" / "throughput.json").exists()  # the copy of a shared state 0 is not timed again
    report = (finished / "results" / "reports" / "synthetic_tiny_vit.md").read_text()
    assert "Time and throughput" in report


def job_events(log: str) -> list[tuple[str, str]]:
    """("start" or "end", rule) of every job, in the order Snakemake's log has them."""
    starts = list(re.finditer(r"^(?:local)?rule (\w+):\n(?:    .*\n)*?    jobid: (\d+)$", log, re.M))
    rule_of = {m.group(2): m.group(1) for m in starts}
    events = [(m.start(), "start", m.group(2)) for m in starts]
    events += [(m.start(), "end", m.group(1)) for m in re.finditer(r"^Finished jobid: (\d+)", log, re.M)]
    return [(kind, rule_of[job]) for _, kind, job in sorted(events)]


@pytest.mark.slow
def test_the_timing_jobs_ran_alone(finished):
    """--cores 2 ran two training jobs at once, but nothing beside a measure_state job."""
    logs = sorted((finished / ".snakemake" / "log").glob("*.log"))  # by start time: the run's first
    log = next(text for text in (p.read_text() for p in logs) if "Finished jobid" in text)
    running, most, timed = [], 0, 0
    for kind, rule in job_events(log):
        if kind == "end":
            running.remove(rule)
            continue
        running.append(rule)
        most, timed = max(most, len(running)), timed + (rule == "measure_state")
        assert "measure_state" not in running or len(running) == 1, f"ran at once: {running}"
    assert timed == 4 and most == 2  # the two groups' training did run side by side


@pytest.mark.slow
def test_measure_settings_rerun_the_timing_only(finished):
    config = two_groups()
    config["defaults"]["measure"]["repeats"] = 2
    counts, jobs, out = planned(finished, config)
    assert not set(counts) & set(TRAINING_RULES), out[-3000:]
    assert counts["measure_state"] == 4  # the two shared states 0 and the two states 1


@pytest.mark.slow
def test_timing_more_states_retimes_none_already_timed(finished):
    config = two_groups()
    config["defaults"]["measure"]["states"] = "all"  # states 0 and 1: the default timed both already
    counts, _, out = planned(finished, config)
    assert not set(counts) & {*TRAINING_RULES, "measure_state"}, out[-3000:]


@pytest.mark.slow
def test_runtime_settings_rerun_nothing(finished):
    config = two_groups()
    config.update(device="auto", data_dir="elsewhere", download=True)
    _, _, out = planned(finished, config)
    assert "Nothing to be done" in out, out[-3000:]
    # the same on the command line, over the finished run's config file
    _, _, out = planned(finished, two_groups(), "--config", "device=auto", "download=false", "data_dir=other")
    assert "Nothing to be done" in out, out[-3000:]


@pytest.mark.slow
def test_a_learning_rate_change_retrains_its_group_only(finished):
    config = two_groups()
    config["experiments"]["b"]["overrides"] = {"train": {"lr": 0.001}}
    counts, jobs, out = planned(finished, config)
    trained = sorted((rule, wc) for rule, wc in jobs if rule in TRAINING_RULES)
    assert trained == [
        ("share_state0", "experiment=b-synthetic-tiny_vit-refill-s0"),
        ("train_state", "experiment=b-synthetic-tiny_vit-refill-s0, state=1"),
        ("train_state0", "run=shared/b-synthetic-tiny_vit-s0"),
    ], out[-3000:]
    assert "Params have changed" in out or "params" in out.lower()
    assert "'lr'" not in out  # the reason names a hash, not the whole experiment twice


@pytest.mark.slow
def test_command_line_config_overrides_the_config_file(finished):
    # no --configfile: the workflow reads config.yaml of the working directory, --config goes on top
    (finished / "config.yaml").write_text(yaml.safe_dump(two_groups()))
    proc = run_snakemake(finished, None, "-n", "--config", "share_state0=false")
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", proc.stdout, re.M))
    # without sharing, each experiment trains its own state 0 (and its states 1 follow)
    assert counts["train_state0"] == "2" and "share_state0" not in counts, proc.stdout[-3000:]
    proc = run_snakemake(finished, None, "-n", "--config", "share_state0=true")
    assert "Nothing to be done" in proc.stdout + proc.stderr
