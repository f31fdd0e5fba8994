"""`prunebench prepare` fetches data and weights where there is internet; training jobs never download."""

import json
import subprocess
import sys

import pytest
import torch
import yaml
from torchvision import datasets

from prunebench.cli import main
from prunebench.errors import DataError, ModelError
from prunebench.prepare import prepare
from tests.conftest import TINY_VIT, run_snakemake
from tests.unit.data.cifar_files import write_cifar

# A training job in a fresh process, with every network connection refused and CIFAR's checksums
# pointed at the files the test wrote (as the fake_cifar fixture does in-process).
OFFLINE_JOB = """
import json, socket, sys
def refuse(*args, **kwargs):
    raise OSError("network blocked by the test")
socket.socket.connect = refuse
socket.create_connection = refuse
socket.getaddrinfo = refuse
from torchvision import datasets
md5 = json.loads(sys.argv[1])
cls = datasets.CIFAR10
cls.train_list = [[f, md5[f]] for f, _ in cls.train_list]
cls.test_list = [[f, md5[f]] for f, _ in cls.test_list]
cls.meta = {**cls.meta, "md5": md5[cls.meta["filename"]]}
from prunebench.cli import main
code = main(sys.argv[2:])
import os
print("HF_HUB_OFFLINE=" + os.environ.get("HF_HUB_OFFLINE", ""))
raise SystemExit(code)
"""


@pytest.fixture(autouse=True)
def hub_online_after(monkeypatch):
    """Train-state and prepare switch the hub to offline mode in this process: switch it back."""
    from prunebench.prepare.fetch import WEIGHTS_DIR_ENV, _set_hub_offline

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.delenv(WEIGHTS_DIR_ENV, raising=False)
    yield
    _set_hub_offline(False)


@pytest.fixture
def cifar_config(tmp_path, monkeypatch, tiny_config):
    """tiny_config on small CIFAR-10 files in tmp_path/data, the tiny ViT from a local weights file."""
    cls, md5, _ = write_cifar(tmp_path / "data")
    monkeypatch.setattr(cls, "train_list", [[f, md5[f]] for f, _ in cls.train_list])
    monkeypatch.setattr(cls, "test_list", [[f, md5[f]] for f, _ in cls.test_list])
    monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": md5[cls.meta["filename"]]})
    from prunebench.models import build_model, model_spec

    torch.save(build_model(model_spec(TINY_VIT, 10)).state_dict(), tmp_path / "tiny_vit.pth")
    tiny_config.update(data_dir=str(tmp_path / "data"), download=True)
    tiny_config["models"]["tiny_vit"]["pretrained"] = str(tmp_path / "tiny_vit.pth")
    tiny_config["experiments"]["t"]["datasets"] = ["cifar10"]
    tiny_config["defaults"]["data"] = {"train_limit": 64, "val_size": 20}
    tiny_config["defaults"]["train"]["batch_size"] = 32
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(tiny_config))
    monkeypatch.chdir(tmp_path)
    return tmp_path, tiny_config, md5


def test_prepare_then_a_training_job_runs_with_the_network_blocked(cifar_config, capsys):
    tmp_path, config, md5 = cifar_config
    assert main(["prepare", "--config", "config.yaml", "--results", "results"]) == 0
    assert "cifar10\ttiny_vit\tweights: " in capsys.readouterr().out
    marker = json.loads((tmp_path / "results/.prepared/cifar10-tiny_vit.json").read_text())
    assert marker["dataset"]["sizes"] == {"train": 64, "val": 20, "test": 50}
    assert marker["weights"]["pretrained"] == str(tmp_path / "tiny_vit.pth")

    name = "t-cifar10-tiny_vit-refill-s0"
    argv = ["train-state", "--config", "config.yaml", name, "0", "--results", "results"]
    proc = subprocess.run(
        [sys.executable, "-c", OFFLINE_JOB, json.dumps(md5), *argv],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "HF_HUB_OFFLINE=1" in proc.stdout  # the hub, too, is read from its cache only
    summary = json.loads((tmp_path / "results" / name / "state0" / "summary.json").read_text())
    assert summary["state"] == 0


def test_a_training_job_never_downloads_and_names_prepare(cifar_config, monkeypatch):
    tmp_path, config, _ = cifar_config
    config["data_dir"] = str(tmp_path / "empty")  # download: true, but a job does not download
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.setattr(datasets.CIFAR10, "download", lambda self: pytest.fail("a training job downloaded"))
    name = "t-cifar10-tiny_vit-refill-s0"
    assert main(["train-state", "--config", "config.yaml", name, "0", "--results", "results"]) == 2
    assert not (tmp_path / "empty").exists()


def test_a_missing_dataset_with_download_false_names_the_path_and_the_fix(tmp_path, tiny_config):
    tiny_config.update(data_dir=str(tmp_path / "nowhere"), download=False)
    tiny_config["experiments"]["t"]["datasets"] = ["cifar100"]
    with pytest.raises(DataError) as info:
        prepare(tiny_config)
    msg = str(info.value)
    assert "nowhere/cifar-100-python" in msg and "prunebench prepare" in msg and "download: true" in msg


def test_hub_weights_missing_from_the_cache_with_download_false_name_prepare(tmp_path, tiny_config, monkeypatch):
    import socket

    monkeypatch.setattr(socket.socket, "connect", lambda *a: pytest.fail("prepare used the network"))
    tiny_config.update(download=False, weights_dir=str(tmp_path / "weights"))
    tiny_config["models"]["tiny_vit"]["pretrained"] = True
    with pytest.raises(ModelError) as info:
        prepare(tiny_config)
    msg = str(info.value)
    assert "models.tiny_vit" in msg and "not in the cache" in msg and str(tmp_path / "weights") in msg
    assert "prunebench prepare" in msg and "download: true" in msg


def test_prepare_builds_the_models_that_the_workflow_parse_does_not(tiny_config):
    tiny_config["models"]["tiny_vit"]["kwargs"]["num_heads"] = 5
    with pytest.raises(Exception, match="not a multiple of\\s+num_heads"):
        prepare(tiny_config)


@pytest.mark.slow
def test_the_workflow_prepares_before_any_state(tmp_path, tiny_config):
    proc = run_snakemake(tmp_path, tiny_config, "-n")
    assert "rule prepare:" in proc.stdout
    assert "input: results/.prepared/synthetic-tiny_vit.json" in proc.stdout
    # a model the prepare rule cannot build stops the workflow before any training job
    tiny_config["models"]["tiny_vit"]["kwargs"]["num_heads"] = 5
    proc = run_snakemake(tmp_path, tiny_config, check=False)
    assert proc.returncode != 0
    log = (tmp_path / "logs/prepare/synthetic-tiny_vit.log").read_text()
    assert "not a multiple of" in log and "Traceback" not in log
    assert not (tmp_path / "results/shared").exists() and not list((tmp_path / "results").glob("t-*"))


def test_prepare_checks_an_image_folder_instead_of_downloading(tmp_path, tiny_config):
    from tests.conftest import write_image_folder

    root = write_image_folder(tmp_path / "folder", classes=3, train=2, val=1)
    tiny_config["download"] = True  # an image folder is never downloaded, whatever `download` says
    tiny_config["datasets"] = {"tiny": {"kind": "imagefolder", "root": str(root)}}
    tiny_config["experiments"]["t"]["datasets"] = ["tiny"]
    (marker,) = prepare(tiny_config, markers=tmp_path / "markers")
    assert marker["dataset"]["num_classes"] == 3 and marker["dataset"]["sizes"] == {"train": 6, "val": 3, "test": 3}
    assert json.loads((tmp_path / "markers" / "tiny-tiny_vit.json").read_text())["dataset"]["root"] == str(root)
    (root / "val" / "class_2" / "img_0.jpg").write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(DataError, match=r"cannot read image .*val/class_2/img_0\.jpg"):
        prepare(tiny_config)
    tiny_config["datasets"]["tiny"]["root"] = str(tmp_path / "elsewhere")
    with pytest.raises(DataError, match=r"root .*elsewhere does not exist.*datasets\.tiny\.root"):
        prepare(tiny_config)
