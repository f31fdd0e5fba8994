"""Multi-GPU states (train.gpus > 1) as 2-process DDP runs on the CPU (gloo), launched through torchrun.

Tolerance: two processes each average the loss over half of every global batch and DDP averages
their gradients, which is the one-process gradient up to the order of float32 additions; on this
tiny ViT the losses agree to a relative 1e-5 (measured: ~1e-7), accuracies and masks exactly. (The
weights are not compared: AdamW turns the rounding noise of gradients that are zero in exact
arithmetic, such as the attention keys' bias, into steps of the full learning rate.)
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from prunebench.accel.devices import lease_gpus
from prunebench.errors import TrainingError
from prunebench.results.metrics import read_predictions
from tests.conftest import REPO, resolved_experiment
from tests.unit.train.processes import TOL, config_for, metric_rows, train_chain


@pytest.mark.slow
def test_two_processes_train_as_one_process_with_the_same_global_batch(tiny_config, tmp_path):
    import copy

    # RSST: a Taylor ranking (gradients), the penalty on the DDP-averaged gradients, the mask at the end
    tiny_config["experiments"]["t"]["methods"] = ["rsst"]
    one = train_chain(config_for(copy.deepcopy(tiny_config), 1), tmp_path, "one")
    two = train_chain(config_for(copy.deepcopy(tiny_config), 2), tmp_path, "two")
    for k in (0, 1):
        a, b = metric_rows(one / f"state{k}" / "metrics.jsonl"), metric_rows(two / f"state{k}" / "metrics.jsonl")
        assert [r["epoch"] for r in a] == [r["epoch"] for r in b]
        for ra, rb in zip(a, b):
            for key in ("train_loss", "val_loss", "reg_lambda", "penalized_norm_ratio"):
                if ra.get(key) is not None:
                    assert rb[key] == pytest.approx(ra[key], rel=TOL), (k, ra["epoch"], key)
            for key in ("train_acc", "val_acc", "test_acc", "density", "params_alive"):
                if ra.get(key) is not None:
                    assert rb[key] == ra[key], (k, ra["epoch"], key)
        ca = torch.load(one / f"state{k}" / "last.pt", weights_only=True)
        cb = torch.load(two / f"state{k}" / "last.pt", weights_only=True)
        assert ca["masks"].keys() == cb["masks"].keys()
        assert all(torch.equal(ca["masks"][g], cb["masks"][g]) for g in ca["masks"])
        assert any(not bool(m.all()) for m in cb["masks"].values()) or k == 0  # state 1 did prune
        # each rank evaluated its share of the test set; rank 0 wrote all of them, in the test set's order
        pa, pb = (read_predictions(run / f"state{k}" / "predictions.npz") for run in (one, two))
        assert all(np.array_equal(pa[key], pb[key]) for key in pa)
    # the summary says how many processes trained the state
    summary = json.loads((two / "state1" / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["images_per_second"] > 0
    assert json.loads((one / "state1" / "summary.json").read_text())["processes"] == 1


@pytest.mark.slow
def test_two_processes_train_a_slim_state_as_a_masked_one(tiny_config, tmp_path):
    """train.slim with 2 gloo processes: every rank slims alike and DDP wraps the slim model; the
    losses are the masked 2-process run's to 1e-5 relative, accuracies and masks equal."""
    import copy

    tiny_config["experiments"]["t"]["methods"] = ["refill"]
    slim = train_chain(config_for(copy.deepcopy(tiny_config), 2, epochs=2, slim="auto"), tmp_path, "slim")
    masked = train_chain(config_for(copy.deepcopy(tiny_config), 2, epochs=2, slim="off"), tmp_path, "masked")
    assert json.loads((slim / "state1" / "summary.json").read_text())["run"]["training"] == "slim"
    assert json.loads((masked / "state1" / "summary.json").read_text())["run"]["training"] == "masked"
    a, b = metric_rows(slim / "state1" / "metrics.jsonl"), metric_rows(masked / "state1" / "metrics.jsonl")
    for ra, rb in zip(a, b, strict=True):
        if ra.get("train_loss") is not None:
            assert rb["train_loss"] == pytest.approx(ra["train_loss"], rel=TOL), ra["epoch"]
        for key in ("val_acc", "test_acc"):
            assert abs(ra.get(key, 0) - rb.get(key, 0)) <= 0.1, (ra["epoch"], key)
    ca = torch.load(slim / "state1" / "last.pt", weights_only=True)
    cb = torch.load(masked / "state1" / "last.pt", weights_only=True)
    assert all(torch.equal(ca["masks"][g], cb["masks"][g]) for g in ca["masks"])
    assert {k: v.shape for k, v in ca["state_dict"].items()} == {k: v.shape for k, v in cb["state_dict"].items()}


def _processes_with(tag: str, rank: str | None = None) -> list[int]:
    """Pids of the live processes whose environment has the test's tag and RANK=rank (torchrun's workers;
    any rank, the job and torchrun included, when rank is None)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            env = dict(
                item.split("=", 1) for item in (proc / "environ").read_bytes().decode().split("\0") if "=" in item
            )
            zombie = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
        except (OSError, ValueError, IndexError):
            continue
        if env.get("PRUNEBENCH_TEST_TAG") == tag and rank in (None, env.get("RANK")) and not zombie:
            pids.append(int(proc.name))
    return pids


def _twelve_epoch_two_process_state(tiny_config, tmp_path):
    """A 2-process state 0 of 12 epochs: its output and recovery folders, and the command that trains it."""
    config = config_for(tiny_config, 2, epochs=12)
    config["defaults"]["prune"]["states"] = 1
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(config))
    exp = resolved_experiment(config)
    results = tmp_path / "results"
    out, recovery = results / exp["name"] / "state0", results / exp["name"] / "recovery" / "state0"
    cmd = [sys.executable, "-m", "prunebench.cli", "train-state", str(cfg), exp["name"], "0"]
    return out, recovery, [*cmd, "--results", str(results), "--threads", "1"]


@pytest.mark.slow
def test_a_killed_rank_stops_the_state_and_the_rerun_resumes(tiny_config, tmp_path):
    out, recovery, cmd = _twelve_epoch_two_process_state(tiny_config, tmp_path)
    env = {**os.environ, "PRUNEBENCH_TEST_TAG": str(tmp_path)}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (recovery / "resume.pt").exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()
            time.sleep(0.02)
        victims = _processes_with(str(tmp_path), "1")
        assert len(victims) == 1
        os.kill(victims[0], signal.SIGKILL)
        output = proc.communicate(timeout=120)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0, output
    assert "no output was written" in output
    assert not (out / "summary.json").exists() and not (out / "last.pt").exists()
    assert not _processes_with(str(tmp_path), "0"), "rank 0 outlived the failed run"
    done = torch.load(recovery / "resume.pt", weights_only=True)["progress"]["epoch"]
    assert 1 <= done < 12

    rerun = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"resuming state 0 after epoch {done} of 12" in rerun.stderr
    rows = metric_rows(out / "metrics.jsonl")
    assert [r["epoch"] for r in rows] == list(range(13))


@pytest.mark.slow
def test_a_killed_job_takes_its_processes_with_it_and_the_rerun_resumes(tiny_config, tmp_path):
    """kill -9 of the job's process group (a node's job killed, Snakemake's --kill): torchrun starts its
    workers in sessions of their own, out of reach of that kill; they must die with the job anyway."""
    out, recovery, cmd = _twelve_epoch_two_process_state(tiny_config, tmp_path)
    tag = f"{tmp_path}/killed"
    log = (tmp_path / "killed.log").open("w")
    env = {**os.environ, "PRUNEBENCH_TEST_TAG": tag}
    job = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not (recovery / "resume.pt").exists():
            assert job.poll() is None and time.monotonic() < deadline, (tmp_path / "killed.log").read_text()
            time.sleep(0.02)
        assert len(_processes_with(tag, "0")) == len(_processes_with(tag, "1")) == 1
        os.killpg(job.pid, signal.SIGKILL)
        job.wait(10)
        deadline = time.monotonic() + 10
        while _processes_with(tag) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = _processes_with(tag)
    finally:
        for pid in _processes_with(tag):  # only if the test fails: no orphan outlives it
            os.kill(pid, signal.SIGKILL)
    assert not left, f"processes of the killed state still run 10 s after the kill: {left}"
    assert not (out / "summary.json").exists(), "orphaned processes finished the state after the kill"
    done = torch.load(recovery / "resume.pt", weights_only=True)["progress"]["epoch"]
    assert 1 <= done < 12

    rerun = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"resuming state 0 after epoch {done} of 12" in rerun.stderr
    assert [r["epoch"] for r in metric_rows(out / "metrics.jsonl")] == list(range(13))


def test_a_process_whose_job_has_ended_stops_before_it_trains(tmp_path):
    """A worker checks, once it holds the ranks lock, that torchrun (its parent) is still the child of the job
    that launched it; here the test process plays torchrun, and the job is its parent or an ended process."""
    from prunebench.train.distributed import JOB_ENV

    code = "import sys; from prunebench.train.distributed import _tie_to_job; _tie_to_job(sys.argv[1]); print('trains')"
    for job, trains in ((os.getppid(), True), (os.getpid(), False)):
        env = {**os.environ, JOB_ENV: str(job)}
        run = subprocess.run([sys.executable, "-c", code, str(tmp_path)], env=env, capture_output=True, text=True)
        assert (run.stdout.strip() == "trains") == trains, run.stderr
        if not trains:
            assert run.returncode != 0 and f"the job (PID {job}) that started this process has ended" in run.stderr


def test_multi_gpu_leases_take_all_their_gpus_or_none(tmp_path):
    first = lease_gpus(["a", "b", "c"], 2, tmp_path)
    assert [x.gpu_id for x in first] == ["a", "b"]
    with pytest.raises(TrainingError, match="fewer than 2 of the 3 GPUs"):
        lease_gpus(["a", "b", "c"], 2, tmp_path, wait_seconds=0.1, poll=0.05)
    one = lease_gpus(["a", "b", "c"], 1, tmp_path)  # the failed attempt let go of c
    assert one[0].gpu_id == "c"
    for lease in first + one:
        lease.release()
    with pytest.raises(TrainingError, match="needs 4 GPUs, but 3 are visible"):
        lease_gpus(["a", "b", "c"], 4, tmp_path)


def test_batch_size_must_split_into_equal_shards(tiny_config):
    from prunebench.config import resolve_config
    from prunebench.errors import ConfigError

    tiny_config["defaults"]["train"].update(gpus=3, batch_size=64)
    with pytest.raises(ConfigError, match="does not split into 3 equal shards"):
        resolve_config(tiny_config)


def test_a_shard_is_its_slice_of_the_global_batch():
    from prunebench.data.datasets import load_dataset
    from prunebench.data.loader import DeviceData

    splits = load_dataset("synthetic", "data", False, 50, 64, 0)
    whole = DeviceData(splits, "cpu")
    parts = [DeviceData(splits, "cpu", shard=(r, 2)) for r in range(2)]
    batches = list(whole.train_batches(16, torch.Generator().manual_seed(3)))
    halves = [list(p.train_batches(16, torch.Generator().manual_seed(3))) for p in parts]
    assert len(batches) == len(halves[0]) == len(halves[1]) == whole.steps_per_epoch(16)
    for (x, y), (x0, y0), (x1, y1) in zip(batches, *halves):
        assert torch.equal(torch.cat([x0, x1]), x) and torch.equal(torch.cat([y0, y1]), y)


def test_what_a_multi_gpu_state_cannot_run_on_is_said_before_it_starts(tiny_config, monkeypatch):
    from prunebench.accel.devices import acquire_devices
    from prunebench.train import distributed

    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    tiny_config["defaults"]["train"].update(gpus=2, nodes=2)
    with pytest.raises(TrainingError, match="train.nodes: 2 needs a SLURM allocation"):
        distributed._command(resolved_experiment(tiny_config), "{}", 1, {})
    with pytest.raises(TrainingError, match="device: cuda:1 names one GPU"):
        acquire_devices("cuda:1", 2)
    monkeypatch.setenv("SLURM_JOB_ID", "1234")
    env = {}
    cmd = distributed._command(resolved_experiment(tiny_config), "{}", 3, env)
    assert cmd[:6] == [
        "srun",
        "--ntasks=4",
        "--nodes=2",
        "--ntasks-per-node=2",
        "--cpus-per-task=3",
        "--kill-on-bad-exit=1",
    ]
    assert env["MASTER_PORT"] == str(20000 + 1234)


class _Method:
    def __init__(self, value):
        self.value = value

    def state_dict(self):
        return {"value": self.value}

    def load_state_dict(self, state):
        self.value = state["value"]


class _Run:
    """What agreeing reads and sets of a running state (train.runner.StateRunner.agree, with ranks.agree)."""

    def __init__(self, plan, method):
        self.plan, self.method, self.bound = plan, method, 0

    def bind_masks(self):
        self.bound += 1

    def agree(self):
        from prunebench.train.runner import StateRunner

        StateRunner.agree(self)


def _agree_on(rank, init_file, results):
    from prunebench.pruning.plan import StatePlan

    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        mask = torch.tensor([True, rank == 0, True])  # rank 1 broke a tie the other way
        run = _Run(StatePlan(0.5, {"g": mask}, {"g": mask}, {"g": ~mask}), _Method(f"rank {rank}"))
        run.agree()
        results[rank] = (run.plan.final_masks["g"].tolist(), run.method.value, run.bound)
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_every_rank_continues_with_rank_0s_masks_and_method_state(tmp_path):
    import torch.multiprocessing as mp

    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(_agree_on, args=(str(tmp_path / "init"), results), nprocs=2)
        results = dict(results)
    assert results[0] == ([True, True, True], "rank 0", 0)  # rank 0 keeps its own
    assert results[1] == ([True, True, True], "rank 0", 1)  # rank 1 adopted and rebound them
