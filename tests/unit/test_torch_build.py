"""The torch build install.sh picks for a machine's NVIDIA driver, and the jobs' conda environment."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from prunebench import torch_build
from prunebench.torch_build import BuildError, choose, conda_env
from tests.conftest import REPO


@pytest.mark.parametrize(
    ("driver", "build"),
    [
        (None, "cu130"),  # no GPU: PyPI's build, which runs on the CPU too and which every machine reaches
        ("580.65.06", "cu130"),
        ("590.1", "cu130"),
        ("579.99", "cu126"),  # a CUDA 12 driver
        ("535.104.05", "cu126"),
        ("525.60.13", "cu126"),
    ],
)
def test_the_build_follows_the_driver(driver, build):
    assert choose(driver).name == build


def test_a_driver_too_old_for_every_build_is_one_clear_error():
    with pytest.raises(BuildError, match=r"driver 470\.1 is older than any torch 2\.14\.1 build.*--torch cpu"):
        choose("470.1")


def test_a_forced_build_wins_and_an_unknown_one_is_named():
    assert choose("590.1", "cu126").name == "cu126" and choose(None, "cpu").name == "cpu"
    with pytest.raises(BuildError, match="unknown torch build 'cu118': choose one of auto, cu130, cu126, cpu"):
        choose(None, "cu118")


def test_pip_arguments_of_each_build():
    assert torch_build.BUILDS["cu130"].pip_args() == ["torch==2.14.1", "torchvision==0.29.1"]
    assert torch_build.BUILDS["cu126"].pip_args() == [
        "torch==2.14.1+cu126", "torchvision==0.29.1+cu126",
        "--extra-index-url", "https://download.pytorch.org/whl/cu126",
    ]  # fmt: skip
    assert torch_build.BUILDS["cpu"].pip_args()[:2] == ["torch==2.14.1+cpu", "torchvision==0.29.1+cpu"]


def test_install_sh_and_the_conda_files_pin_the_versions_of_the_table():
    install = (REPO / "install.sh").read_text()
    assert "src/prunebench/torch_build.py" in install  # install.sh asks the table, it holds no version
    for name, env_file in torch_build.CONDA_ENVS.items():
        env = yaml.safe_load((REPO / "envs" / env_file).read_text())
        pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
        build = torch_build.BUILDS[name]
        assert [line for line in pip if line.startswith(("torch==", "torchvision=="))] == build.requirements()
        assert (f"--extra-index-url {build.index}" in pip) == (build.index is not None)
    # apart from torch's build, the two environments are the same
    envs = [yaml.safe_load((REPO / "envs" / f).read_text()) for f in torch_build.CONDA_ENVS.values()]
    plain = [
        [d for d in e["dependencies"] if isinstance(d, str)]
        + [
            x
            for d in e["dependencies"]
            if isinstance(d, dict)
            for x in d["pip"]
            if "torch" not in x and "index" not in x
        ]
        for e in envs
    ]
    assert plain[0] == plain[1]
    # each has its post-deploy script (Snakemake looks beside the env file, by its name)
    for env_file in torch_build.CONDA_ENVS.values():
        assert (REPO / "envs" / env_file.replace(".yaml", ".post-deploy.sh")).is_file()


def test_dali_extras_match_the_cuda_of_the_torch_build():
    tomllib = pytest.importorskip("tomllib")
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for build in torch_build.BUILDS.values():
        if build.dali_extra:
            (dali,) = extras[build.dali_extra]
            assert dali.startswith(f"nvidia-dali-cuda{build.cuda}0")


def test_conda_env_of_the_variable():
    assert conda_env("auto") == conda_env("cu130") == "prunebench.yaml"
    assert conda_env("cu126") == "prunebench-cu126.yaml"
    with pytest.raises(BuildError, match="PRUNEBENCH_TORCH='cpu'"):
        conda_env("cpu")


def test_driver_version_is_read_from_the_proc_file_without_nvidia_smi(monkeypatch, tmp_path):
    proc = tmp_path / "version"
    proc.write_text(
        "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  Tue Mar  5 19:15:31 UTC 2024\nGCC version: gcc 12\n"
    )
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(torch_build, "Path", lambda p: proc if "nvidia" in str(p) else Path(p))
    assert torch_build.detect_driver() == "550.54.15"


def test_the_script_runs_without_prunebench_installed(tmp_path):
    """install.sh runs it before torch (or anything) is installed: standard library only."""
    script = REPO / "src" / "prunebench" / "torch_build.py"
    run = [sys.executable, "-I", "-S", str(script)]  # isolated: no site-packages, no PYTHONPATH
    proc = subprocess.run([*run, "--driver", "535.104.05"], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == torch_build.BUILDS["cu126"].pip_args()
    assert "torch build: cu126" in proc.stderr
    proc = subprocess.run([*run, "--driver", "400.1"], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.startswith("torch_build: NVIDIA driver 400.1 is older")
    proc = subprocess.run([*run, "--torch", "cpu", "--print", "dali-extra"], capture_output=True, text=True)
    assert proc.returncode == 2 and "DALI needs a CUDA build" in proc.stderr


def test_install_sh_refuses_dali_without_cuda_before_installing_anything(tmp_path):
    proc = subprocess.run(
        ["bash", str(REPO / "install.sh"), "--torch", "cpu", "--dali"], capture_output=True, text=True, timeout=300,
        env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable},
    )  # fmt: skip
    assert proc.returncode == 2 and "--dali needs a CUDA build of torch, not --torch cpu" in proc.stderr
    proc = subprocess.run(["bash", str(REPO / "install.sh"), "--bogus"], capture_output=True, text=True)
    assert proc.returncode == 2 and "unknown option --bogus" in proc.stderr
