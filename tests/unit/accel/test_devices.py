"""GPU leases: concurrent jobs get different GPUs, and a killed job frees its GPU."""

import multiprocessing as mp
import os
import signal
import time
from pathlib import Path

import pytest
import torch

from prunebench import torch_build
from prunebench.accel import devices
from prunebench.accel.devices import acquire_device, lease_gpu, visible_gpu_ids
from prunebench.errors import TrainingError


def hold(gpu_ids, lock_dir, queue, seconds):
    lease = lease_gpu(gpu_ids, lock_dir, wait_seconds=30, poll=0.05)
    queue.put(lease.gpu_id)
    time.sleep(seconds)


def start(gpu_ids, lock_dir, queue, seconds=30):
    proc = mp.get_context("fork").Process(target=hold, args=(gpu_ids, lock_dir, queue, seconds))
    proc.start()
    return proc


def test_two_concurrent_jobs_get_different_gpus_and_a_killed_job_frees_its_gpu(tmp_path):
    queue = mp.get_context("fork").Queue()
    ids = ["0", "1"]  # a simulated 2-GPU machine
    first, second = start(ids, tmp_path, queue), start(ids, tmp_path, queue)
    got = {queue.get(timeout=20), queue.get(timeout=20)}
    assert got == {"0", "1"}
    with pytest.raises(TrainingError, match="stayed leased"):  # both GPUs are held: a third job waits
        lease_gpu(ids, tmp_path, wait_seconds=0.2, poll=0.05)
    os.kill(first.pid, signal.SIGKILL)  # a killed job cannot keep its GPU
    first.join()
    lease_gpu(ids, tmp_path, wait_seconds=20, poll=0.05).release()
    second.kill()
    second.join()


def test_lease_gives_up_with_a_clear_error(tmp_path):
    held = lease_gpu(["7"], tmp_path)
    with pytest.raises(TrainingError, match=r"all 1 GPUs \(7\) stayed leased by other jobs"):
        lease_gpu(["7"], tmp_path, wait_seconds=0.2, poll=0.05)
    held.release()
    lease_gpu(["7"], tmp_path, wait_seconds=0.2).release()


def test_visible_devices_set_by_slurm_or_the_user_are_respected(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,5")
    assert visible_gpu_ids(2) == ["2", "5"]
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert visible_gpu_ids(3) == ["0", "1", "2"]


def test_without_a_gpu_auto_runs_on_the_cpu_and_says_so(caplog, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # also on a machine with GPUs
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    caplog.set_level("INFO", logger="prunebench")
    assert acquire_device("auto").device.type == "cpu"
    assert "no GPU in use: training on the CPU" in caplog.text
    assert any(r.levelname == "WARNING" for r in caplog.records)
    with pytest.raises(TrainingError, match="no usable CUDA GPU for device: cuda"):
        acquire_device("cuda")


def test_a_slurm_job_without_a_usable_gpu_stops_at_once_naming_driver_and_torch_build(monkeypatch):
    """A CUDA 13 torch on a node whose driver runs CUDA 12 at most: stop, and say what to install."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    monkeypatch.setattr(devices, "driver_version", lambda: "535.104.05")
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    with pytest.raises(TrainingError) as info:
        acquire_device("auto")
    msg = str(info.value)
    assert "SLURM job (4242)" in msg and "CUDA_VISIBLE_DEVICES=0" in msg
    assert "driver: 535.104.05" in msg and "CUDA build 13.0" in msg and "needs driver >= 580" in msg
    assert "./install.sh --torch cu126" in msg and "PRUNEBENCH_TORCH=cu126" in msg and "device: cpu" in msg
    assert "torch==2.14.1+cu126" in msg and "https://download.pytorch.org/whl/cu126" in msg
    # the explicit opt-out keeps working under SLURM (the CI cluster's fake GPUs have no CUDA)
    assert acquire_device("cpu").device.type == "cpu"


def test_a_node_without_a_driver_is_named_as_such(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi
    monkeypatch.setattr(torch_build, "Path", lambda p: tmp_path / "no-proc-file" if "nvidia" in str(p) else Path(p))
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    assert devices.driver_version() is None
    with pytest.raises(TrainingError, match="No NVIDIA driver on this node.*partition"):
        acquire_device("cuda")


def test_acquire_device_on_a_simulated_machine_of_4_gpus_with_visible_devices(monkeypatch, tmp_path, caplog):
    caplog.set_level("INFO", logger="prunebench")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6,7")  # set by the user (no UUIDs to ask for here)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setattr(torch.cuda, "set_device", lambda index: None)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index: f"FakeGPU{index}")
    a, b = acquire_device("auto", tmp_path), acquire_device("auto", tmp_path)
    assert (str(a.device), a.gpu_id, str(b.device), b.gpu_id) == ("cuda:0", "4", "cuda:1", "5")
    assert "leased GPU 4 (cuda:0, FakeGPU0)" in caplog.text
    a.release()
    c = acquire_device("auto", tmp_path)  # the released GPU is free again
    assert (str(c.device), c.gpu_id) == ("cuda:0", "4")
    with pytest.raises(TrainingError, match=r"device 'cuda:9' does not exist: 4 GPUs are visible"):
        acquire_device("cuda:9", tmp_path)
    b.release()
    c.release()


def test_gpus_are_named_by_uuid_so_jobs_confined_by_slurm_do_not_collide(monkeypatch, tmp_path):
    """Under SLURM cgroups each job sees its own GPU as CUDA_VISIBLE_DEVICES=0; the UUID tells them apart."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: type("P", (), {"uuid": "GPU-aaaa"})())
    assert visible_gpu_ids(1) == ["GPU-aaaa"]
    first = lease_gpu(visible_gpu_ids(1), tmp_path, wait_seconds=0)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: type("P", (), {"uuid": "GPU-bbbb"})())
    second = lease_gpu(visible_gpu_ids(1), tmp_path, wait_seconds=0)  # another job's GPU 0: not blocked
    assert (first.gpu_id, second.gpu_id) == ("GPU-aaaa", "GPU-bbbb")
    first.release()
    second.release()
