"""The tiny workflow submitted to a real SLURM cluster through profiles/slurm.

Runs when a cluster answers (CI starts one with .ci/slurm/up.sh and sets PRUNEBENCH_REQUIRE_SLURM=1,
which turns a missing cluster into a failure instead of a skip).
"""

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, TINY_CONFIG, run_snakemake

JOBCOMP = Path(os.environ.get("PRUNEBENCH_SLURM_DIR", "/tmp/prunebench-slurm")) / "jobcomp.log"


def cluster_is_up() -> bool:
    if not shutil.which("sinfo"):
        return False
    proc = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=20)
    return proc.returncode == 0 and ("idle" in proc.stdout or "mix" in proc.stdout)


@pytest.fixture
def slurm():
    if not cluster_is_up():
        if os.environ.get("PRUNEBENCH_REQUIRE_SLURM"):
            pytest.fail("PRUNEBENCH_REQUIRE_SLURM is set but no SLURM cluster answers (start one with .ci/slurm/up.sh)")
        pytest.skip("no SLURM cluster (start one with .ci/slurm/up.sh)")


@pytest.mark.slow
def test_every_state_runs_as_a_slurm_job_with_a_gpu_request(slurm, tmp_path):
    config = json.loads(json.dumps(TINY_CONFIG))
    config["experiments"]["t"]["methods"] = ["refill", "rsst"]
    before = JOBCOMP.read_text().count("\n") if JOBCOMP.exists() else 0
    slurm_args = (
        "--profile", str(REPO / "profiles" / "slurm"),
        # a CI cluster has no accounting database: ask squeue, and soon
        "--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "2",
        "--set-resources", "train_state0:mem_mb=3000", "train_state:mem_mb=3000",
        "--set-threads", "train_state0=1", "train_state=1",
    )  # fmt: skip
    proc = run_snakemake(tmp_path, config, *slurm_args, timeout=1200)
    # the states ran as SLURM jobs, their lines reach Snakemake's own console all the same
    assert len(re.findall(r"^prunebench: \S+ state \d done in", proc.stdout, re.M)) == 3, proc.stdout[-3000:]
    for method in ("refill", "rsst"):
        for k in (0, 1):
            sdir = tmp_path / "results" / f"t-synthetic-tiny_vit-{method}-s0" / f"state{k}"
            assert all((sdir / f).is_file() for f in ("last.pt", "best.pt", "metrics.jsonl", "summary.json"))
    jobs = JOBCOMP.read_text().splitlines()[before:]
    ours = [j for j in jobs if f"WorkDir={tmp_path}" in j]
    # each trained state a SLURM job: the shared state 0 and state 1 of both methods; the copies of
    # state 0, reports and exports run locally
    assert len(ours) == 3, "\n".join(jobs)
    assert all("JobState=COMPLETED" in j and "Partition=gpu" in j for j in ours)
    # Each state's log names its SLURM job, and the GPU SLURM granted it from the cluster's fake
    # GPUs: the rule's gpu=1 became a GPU request (without slurmdbd, the completion log has no GRES).
    job_ids = {re.search(r"JobId=(\d+)", j).group(1) for j in ours}
    logs = list((tmp_path / "logs" / "train_state").rglob("*.log"))
    placements = [re.search(r"placement: SLURM_JOB_ID=(\d+) .*CUDA_VISIBLE_DEVICES=(\d)", p.read_text()) for p in logs]
    assert len(logs) == 3 and all(placements), "\n".join(p.read_text()[:500] for p in logs)
    assert {m.group(1) for m in placements} == job_ids

    # A code update (every file of the workflow and of prunebench newer than the results, as after a
    # `git pull`) trains nothing through the slurm profile either: no job is submitted, no file changes.
    states = sorted((tmp_path / "results").glob("*/state*/*.*"))
    before = {p: p.read_bytes() for p in states}
    now = time.time() + 5
    for name in ("Snakefile", "rules", "workflow", "profiles", "src"):
        for path in [REPO / name] if (REPO / name).is_file() else (REPO / name).rglob("*"):
            os.utime(path, (now, now))
    before_jobs = JOBCOMP.read_text().count("\n")
    for dry in (["-n"], []):
        proc = run_snakemake(tmp_path, config, *dry, *slurm_args, timeout=600)
        out = proc.stdout + proc.stderr
        assert not re.search(r"^(train_state0|train_state|share_state0)\s+\d+$", out, re.M), out[-3000:]
    time.sleep(2)
    assert JOBCOMP.read_text().count("\n") == before_jobs
    assert {p: p.read_bytes() for p in states} == before


@pytest.mark.slow
def test_a_two_gpu_state_is_one_slurm_job_granted_two_gpus(slurm, tmp_path):
    """train.gpus: 2 under the slurm profile: one job of two tasks (one per GPU, started by srun inside
    the allocation, gloo on the CPU here), granted 2 of the cluster's fake GPUs."""
    config = json.loads(json.dumps(TINY_CONFIG))
    config["defaults"]["train"]["gpus"] = 2
    config["defaults"]["prune"]["states"] = 1
    before = JOBCOMP.read_text().count("\n") if JOBCOMP.exists() else 0
    run_snakemake(
        tmp_path, config,
        "--profile", str(REPO / "profiles" / "slurm"),
        "--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "2",
        "--set-resources", "train_state0:mem_mb=3000", "--set-threads", "train_state0=1",
        timeout=900,
    )  # fmt: skip
    assert (tmp_path / "results" / "t-synthetic-tiny_vit-refill-s0" / "state0" / "summary.json").is_file()
    ours = [j for j in JOBCOMP.read_text().splitlines()[before:] if f"WorkDir={tmp_path}" in j]
    assert len(ours) == 1 and "JobState=COMPLETED" in ours[0] and "ProcCnt=2" in ours[0], ours
    job_id = re.search(r"JobId=(\d+)", ours[0]).group(1)
    (log,) = (tmp_path / "logs" / "train_state").rglob("*.log")
    text = log.read_text()
    assert "srun --ntasks=2 --nodes=1 --ntasks-per-node=2" in text, text[-3000:]
    for rank in (0, 1):  # each task saw the job's two GPUs (it takes the one of its local rank)
        assert re.search(rf"rank {rank} of 2 on .*SLURM_JOB_ID={job_id} CUDA_VISIBLE_DEVICES=0,1\n", text), text
    # the controller keeps a finished job's record for MinJobAge (600 s on the CI cluster)
    job = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True).stdout
    assert "gres:gpu:2" in job and "NumTasks=2" in job, job
