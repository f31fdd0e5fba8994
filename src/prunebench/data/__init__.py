"""Training data: datasets held on the device as uint8 tensors (CIFAR, digits, synthetic), and image
folders streamed from disk (ImageNet-1k) by torchvision worker processes or by NVIDIA DALI.

:func:`open_dataset` finds an experiment's images, :func:`make_data` serves them on a device; both kinds of
data source serve the batches that prunebench.data.batches describes.
"""

from __future__ import annotations

import logging

import torch

from prunebench.data.dali import DALI_HINT, DaliData, dali_available  # nvidia.dali: imported only when chosen
from prunebench.data.datasets import DATASETS, Splits, load_dataset
from prunebench.data.folder import FolderData, FolderSplits, scan_folder
from prunebench.data.loader import DeviceData
from prunebench.errors import DataError

__all__ = [
    "DATASETS", "DeviceData", "FolderData", "FolderSplits", "Splits", "choose_loader", "load_dataset",
    "make_data", "open_dataset",
]  # fmt: skip

LOADERS = ("auto", "torchvision", "dali")
log = logging.getLogger("prunebench")


def open_dataset(experiment: dict, data_dir: str = "data", download: bool = True) -> Splits | FolderSplits:
    """The experiment's dataset: a built-in one loaded into memory, or an image folder (its
    ``dataset_source``, from the config's `datasets` section) scanned for its images."""
    dcfg, source = experiment["data"], experiment.get("dataset_source")
    if source is None:
        return load_dataset(
            experiment["dataset"], data_dir, download, dcfg["val_size"], dcfg["train_limit"], dcfg["split_seed"]
        )
    return scan_folder(
        experiment["dataset"], source["root"], dcfg["val_size"], dcfg["train_limit"], dcfg["split_seed"],
        kind=source["kind"],
    )  # fmt: skip


def choose_loader(name: str, loader: str, device: torch.device) -> str:
    """``torchvision`` or ``dali`` for an image folder: ``auto`` takes DALI on a GPU where it is installed;
    ``dali`` where it cannot run is a DataError naming the fix."""
    if loader not in LOADERS:
        raise DataError(f"datasets.{name}.loader = {loader!r}: must be one of {', '.join(LOADERS)}")
    on_gpu = torch.device(device).type == "cuda"
    if loader == "auto":
        return "dali" if on_gpu and dali_available() else "torchvision"
    if loader == "dali" and not on_gpu:
        raise DataError(
            f"datasets.{name}.loader = dali decodes on a GPU, but this state runs on {device}; "
            "set loader: auto or torchvision"
        )
    if loader == "dali" and not dali_available():
        raise DataError(
            f"datasets.{name}.loader = dali, but NVIDIA DALI is not installed; {DALI_HINT}, or set loader: auto"
        )
    return loader


def make_data(
    dataset: Splits | FolderSplits,
    experiment: dict,
    device: torch.device,
    img_size: int | None,
    *,
    channels_last: bool = False,
    shard: tuple[int, int] = (0, 1),
):
    """The data source serving ``dataset`` on ``device`` for ``experiment`` (this process's ``shard``)."""
    tcfg = experiment["train"]
    if isinstance(dataset, Splits):
        return DeviceData(
            dataset, device, img_size, tcfg["augment"], tcfg["crop_padding"], channels_last=channels_last, shard=shard
        )
    source = experiment["dataset_source"]
    kind = choose_loader(dataset.name, source.get("loader", "auto"), device)
    log.info(
        "image folder %s (%s): decoded by %s, %d workers per process",
        dataset.name,
        dataset.root,
        kind,
        source["workers"],
    )
    if kind == "dali":
        return DaliData(
            dataset, device, img_size, source["workers"], channels_last=channels_last, shard=shard,
            augment=tcfg["augment"],
        )  # fmt: skip
    return FolderData(
        dataset, device, img_size, source["workers"], channels_last=channels_last, shard=shard, augment=tcfg["augment"]
    )
