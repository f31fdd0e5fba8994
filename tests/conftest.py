"""Shared fixtures: tiny models and configs, and a runner for real Snakemake workflows."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]

TINY_VIT = {
    "arch": "vit_tiny_patch16_224",
    "img_size": 32,
    "patch_size": 8,
    "kwargs": {"embed_dim": 48, "depth": 2, "num_heads": 3, "mlp_ratio": 2.0},
}

TINY_CONFIG = {
    "data_dir": "data",
    "download": False,
    "device": "cpu",
    "defaults": {
        "train": {
            "epochs": 1,
            "batch_size": 64,
            "eval_batch_size": 256,
            "optimizer": "adamw",
            "lr": 0.002,
            "weight_decay": 0.01,
            "warmup_epochs": 0,
        },
        "prune": {"states": 2, "target_sparsity": 0.5, "groups": ["heads", "neurons"]},
        "data": {"train_limit": 256},
        "measure": {"enabled": False},  # throughput timing has its own tests (tests/unit/export)
    },
    "models": {"tiny_vit": TINY_VIT},
    # dense_control off: a test that wants the dense control chain lists `dense` or turns it on
    "experiments": {
        "t": {
            "datasets": ["synthetic"],
            "models": ["tiny_vit"],
            "methods": ["refill"],
            "seeds": [0],
            "dense_control": False,
        }
    },
}


@pytest.fixture
def tiny_config() -> dict:
    """A valid config: a 2-block ViT, synthetic data, 2 states of 1 epoch (edit freely)."""
    return copy.deepcopy(TINY_CONFIG)


@pytest.fixture
def tiny_vit():
    """A 2-block timm ViT (3 heads of 16 dims, MLP width 96) for 10 classes at 32 px."""
    from prunebench.models import build_model, model_spec

    torch.manual_seed(0)
    return build_model(model_spec(TINY_VIT, 10))


def resolved_experiment(config: dict, method: str | None = None) -> dict:
    """The first experiment of ``config``, optionally with another method."""
    from prunebench.config import resolve_config

    config = copy.deepcopy(config)
    if method:
        for group in config["experiments"].values():
            group["methods"] = [method]
    return next(iter(resolve_config(config).experiments.values()))


def snakemake_command(workdir: Path, config: dict | None, *args: str) -> list[str]:
    """The command line that runs the real workflow in ``workdir`` (``config`` goes to workdir/config.yaml)."""
    workdir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir)]
    if config is not None:
        (workdir / "config.yaml").write_text(yaml.safe_dump(config))
        cmd += ["--configfile", str(workdir / "config.yaml")]
    return [*cmd, "--cores", "2", *args]


SNAKEMAKE_ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def run_snakemake(
    workdir: Path, config: dict | None, *args: str, check: bool = True, timeout: int = 900, env: dict | None = None
):
    """Run the real workflow in ``workdir`` with ``config`` written to workdir/config.yaml."""
    cmd = snakemake_command(workdir, config, *args)
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=timeout, env=env or SNAKEMAKE_ENV)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}")
    return proc


def write_image_folder(root: Path, classes: int = 3, train: int = 4, val: int = 2, test: int = 0) -> Path:
    """A tiny ImageFolder of JPEGs written with PIL (train/ and val/, optionally test/, ``classes``
    subfolders each), images of several sizes and aspect ratios whose colour depends on the class."""
    from PIL import Image

    g = torch.Generator().manual_seed(0)
    sizes = [(40, 30), (32, 48), (64, 64), (50, 36)]
    for split, n in (("train", train), ("val", val), ("test", test)):
        for c in range(classes):
            if not n:
                continue
            folder = root / split / f"class_{c}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                w, h = sizes[i % len(sizes)]
                base = torch.tensor([(80 * c) % 256, (200 - 60 * c) % 256, (40 + 90 * c) % 256]).view(1, 1, 3)
                noise = torch.randint(-30, 31, (h, w, 3), generator=g)
                pixels = (base + noise).clamp(0, 255).to(torch.uint8).numpy()
                Image.fromarray(pixels).save(folder / f"img_{i}.jpg", quality=90)
    return root
