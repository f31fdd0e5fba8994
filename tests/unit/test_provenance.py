"""Provenance probes on a GPU node and without git, checked with stand-ins (this machine has no GPU)."""

from __future__ import annotations

import os
import types

import torch

from prunebench import provenance


def test_gpu_device_driver_and_peak_memory(monkeypatch, tmp_path):
    smi = tmp_path / "nvidia-smi"
    smi.write_text('#!/bin/sh\necho "570.86.15"\necho "570.86.15"\n')
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    props = types.SimpleNamespace(name="NVIDIA H200", major=9, minor=0, total_memory=141 * 2**30)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda dev: props)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda dev: 3 * 2**30)
    monkeypatch.setattr(torch.cuda, "max_memory_reserved", lambda dev: 4 * 2**30)
    dev = torch.device("cuda", 0)
    info = provenance.device_info(dev)
    assert info == {
        "type": "cuda", "name": "NVIDIA H200", "driver": "570.86.15", "capability": "9.0", "memory_mb": 141 * 1024,
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }  # fmt: skip
    peak = provenance.peak_memory(dev)
    assert (peak["peak_gpu_mb"], peak["peak_gpu_reserved_mb"]) == (3072.0, 4096.0) and peak["peak_host_mb"] > 0


def test_cpu_device_records_the_instruction_set_of_atens_kernels(monkeypatch):
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    info = provenance.device_info(torch.device("cpu"))
    assert info["type"] == "cpu" and info["capability"] == "AVX2" and info["driver"] is None and info["name"]


def test_no_nvidia_smi_gives_no_driver(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert provenance._driver_version() is None


def test_failing_git_gives_no_commit(monkeypatch, tmp_path):
    """git present but refusing (e.g. "dubious ownership" of a shared checkout): no commit, no error."""
    git = tmp_path / "git"
    git.write_text("#!/bin/sh\necho 'fatal: detected dubious ownership' >&2\nexit 128\n")
    git.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    info = provenance.source_info()
    assert info["git_commit"] is None and info["git_dirty"] is None and info["version"]


def test_package_versions_include_the_data_packages_and_none_for_an_absent_one():
    from importlib.metadata import version

    packages = provenance.package_versions()
    assert packages["scikit-learn"] == version("scikit-learn") and packages["pillow"] == version("pillow")
    assert provenance._installed("no-such-package-prunebench") is None
