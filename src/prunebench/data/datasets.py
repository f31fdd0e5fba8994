"""Dataset loading: CIFAR-10/100 through torchvision, scikit-learn's digits, and synthetic images.

Every dataset comes back as uint8 tensors of shape (N, 3, H, W) split into train/val/test. The
train/val split is drawn with its own seed, so every experiment sees the same images.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from prunebench.errors import DataError

CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"


@dataclass
class Splits:
    """A dataset split into train/val/test uint8 image tensors and int64 labels."""

    name: str
    num_classes: int
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @property
    def image_size(self) -> int:
        return int(self.train_x.shape[-1])

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train_y), "val": len(self.val_y), "test": len(self.test_y)}


def _split_off(x, y, n_holdout: int, seed: int):
    """Split (x, y) into (rest, holdout) with a seeded permutation."""
    if not 0 < n_holdout < len(y):
        raise DataError(
            f"cannot hold out {n_holdout} of {len(y)} images; choose data.val_size between 1 and {len(y) - 1}"
        )
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    hold, rest = perm[:n_holdout], perm[n_holdout:]
    return x[rest], y[rest], x[hold], y[hold]


def _stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    xf = x.float().div_(255)
    mean = xf.mean(dim=(0, 2, 3))
    std = xf.std(dim=(0, 2, 3)).clamp_min(1e-3)
    return tuple(round(v, 4) for v in mean.tolist()), tuple(round(v, 4) for v in std.tolist())


def _finish(name, num_classes, train_x, train_y, test_x, test_y, val_size, train_limit, split_seed) -> Splits:
    train_x, train_y, val_x, val_y = _split_off(train_x, train_y, val_size, split_seed)
    if train_limit:
        train_x, train_y = train_x[:train_limit], train_y[:train_limit]
    mean, std = _stats(train_x)
    return Splits(name, num_classes, train_x, train_y, val_x, val_y, test_x, test_y, mean, std)


def _cifar(name: str, data_dir: str, download: bool):
    from filelock import FileLock
    from torchvision import datasets

    cls, folder, label = {
        "cifar10": (datasets.CIFAR10, "cifar-10-batches-py", "CIFAR-10"),
        "cifar100": (datasets.CIFAR100, "cifar-100-python", "CIFAR-100"),
    }[name]
    root = Path(data_dir)
    where = root / folder
    if not where.is_dir() and not download:  # checked before anything is created in data_dir
        raise DataError(
            f"{label} not found: looked for {where}/ (data_dir={data_dir!r}; training jobs never download). "
            f"Run `prunebench prepare --config CONFIG` with download: true on a machine with internet (the workflow's "
            f"prepare rule does it before any job, where Snakemake runs), or extract the CIFAR 'python "
            f"version' archive from {CIFAR_URL} into {root}/"
        )
    # Concurrent jobs share data_dir: one downloads, the others wait and then read. Without a
    # download there is nothing to wait for, and data_dir may be read-only.
    if download:
        root.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(root / f".{name}.lock")) if download else contextlib.nullcontext()
    with lock:
        existed = where.is_dir()
        try:
            train = cls(root=str(root), train=True, download=download)
            test = cls(root=str(root), train=False, download=False)
        except Exception as exc:  # torchvision raises RuntimeError, URLError, OSError...
            raise DataError(_cifar_failure(label, where, download, existed or where.is_dir(), exc)) from None

    def to_tensors(ds):
        x = torch.from_numpy(np.ascontiguousarray(ds.data)).permute(0, 3, 1, 2).contiguous()
        return x, torch.as_tensor(ds.targets, dtype=torch.int64)

    return (*to_tensors(train), *to_tensors(test), len(train.classes))


def _cifar_failure(label: str, where: Path, download: bool, present: bool, exc: Exception) -> str:
    """Why CIFAR could not be loaded, and the one fix that applies: deleting a folder only when there
    is one, asking for ``download: true`` only when it is false."""
    why = f"{type(exc).__name__}: {exc}"
    extract = f"extract the CIFAR 'python version' archive from {CIFAR_URL} into {where.parent}/"
    if not present:  # only a download can have failed: there was nothing to read
        return (
            f"{label} could not be downloaded into {where}/ ({why}). Run `prunebench prepare --config CONFIG` on "
            f"a machine that reaches the internet (compute nodes often do not), or {extract}"
        )
    again = "it again (download is already true)" if download else "it again with download: true"
    return (
        f"{label} in {where}/ is incomplete or corrupted ({why}). Delete {where}/ and fetch {again}: "
        f"`prunebench prepare --config CONFIG` where there is internet; or {extract}"
    )


def _digits(seed: int, test_fraction: float = 0.2):
    """scikit-learn's 1,797 shipped 8x8 digits, upscaled to 32x32 RGB uint8."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.from_numpy(bunch.images.astype(np.float32) * (255.0 / 16.0))[:, None]
    x = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)
    x = x.clamp_(0, 255).round_().to(torch.uint8).expand(-1, 3, -1, -1).contiguous()
    y = torch.from_numpy(bunch.target.astype(np.int64))
    train_x, train_y, test_x, test_y = _split_off(x, y, int(round(test_fraction * len(y))), seed + 1)
    return train_x, train_y, test_x, test_y, 10


def _synthetic(seed: int, n_train: int = 1000, n_test: int = 200, num_classes: int = 10, size: int = 32):
    """Learnable random images: each class is a smooth random prototype plus per-image noise."""
    g = torch.Generator().manual_seed(seed + 12345)
    protos = torch.rand(num_classes, 3, 4, 4, generator=g)
    protos = F.interpolate(protos, size=(size, size), mode="bilinear", align_corners=False)

    def draw(n):
        y = torch.arange(n) % num_classes
        x = protos[y] + 0.35 * torch.randn(n, 3, size, size, generator=g)
        return (x.clamp(0, 1) * 255).round().to(torch.uint8), y

    train_x, train_y = draw(n_train)
    test_x, test_y = draw(n_test)
    return train_x, train_y, test_x, test_y, num_classes


DATASETS = ("cifar10", "cifar100", "digits", "synthetic")


def load_dataset(
    name: str,
    data_dir: str = "data",
    download: bool = True,
    val_size: int | None = None,
    train_limit: int | None = None,
    split_seed: int = 0,
) -> Splits:
    """Load ``name`` into memory as train/val/test uint8 tensors (CIFAR: 45k/5k/10k by default)."""
    if name in ("cifar10", "cifar100"):
        *arrays, nc = _cifar(name, data_dir, download)
        default_val = 5000
    elif name == "digits":
        *arrays, nc = _digits(split_seed)
        default_val = int(round(0.1 * 1797))
    elif name == "synthetic":
        *arrays, nc = _synthetic(split_seed)
        default_val = 100
    else:
        raise DataError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    return _finish(name, nc, *arrays, val_size or default_val, train_limit, split_seed)
