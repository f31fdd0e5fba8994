"""Image folders (ImageNet-1k, or any folder of class subfolders) streamed from disk by worker processes.

The same data source reads WebDataset-style tar shards (``kind: webdataset``, prunebench.data.shards).

Layout: ``root/train/<class>/<image>`` and ``root/val/<class>/<image>`` (and optionally ``root/test/``),
the classes being the subfolders of ``train/`` in sorted order. The images never sit on the device:
worker processes (a ``DataLoader`` that keeps them between epochs, pinned memory, several batches
prefetched) decode them with torchvision, crop and flip them, and hand uint8 batches to the device,
where they are normalised.

Augmentation is seeded per image: every epoch draws, from the state's generator, a permutation of the
training images and one seed per image, and each image is cropped and flipped with a generator of its
own seed. So a run is reproducible whatever the number of workers, and a process of a multi-GPU state
(a shard) gets exactly its slice of the undivided global batch, crops and flips included.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

from prunebench.data.batches import EvalBatch, pad_batch
from prunebench.data.shards import ShardMember, read_member, scan_shards
from prunebench.errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
EVAL_RESIZE_RATIO = 256 / 224  # resize the shorter side to img_size x 256/224, then center-crop img_size
CROP_SCALE = (0.08, 1.0)  # RandomResizedCrop's area range and aspect-ratio range (Inception, torchvision)
CROP_RATIO = (3 / 4, 4 / 3)
LAYOUT_HINT = (
    "a dataset folder holds train/ and val/ (and optionally test/), each with one subfolder of images per "
    "class (for ImageNet's val/, sort the 50,000 images into class folders first, e.g. with the usual "
    "valprep.sh)"
)


@dataclass
class FolderSplits:
    """The samples (path, label) of an image folder's splits, found by scanning it; nothing is decoded."""

    name: str
    root: str
    classes: list[str]
    samples: dict[str, list[tuple]] = field(default_factory=dict)  # (file path or ShardMember, class index)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    sources: dict[str, str] = field(default_factory=dict)  # split -> the folder (and part) it comes from

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def sizes(self) -> dict[str, int]:
        return {split: len(self.samples[split]) for split in ("train", "val", "test")}


def _scan_split(name: str, folder: Path, classes: list[str] | None) -> tuple[list[str], list[tuple[str, int]]]:
    where = f"dataset {name!r}"
    if not folder.is_dir():
        raise DataError(f"{where}: no {folder.name}/ split in {folder.parent} ({folder} is missing); {LAYOUT_HINT}")
    found = sorted(d.name for d in os.scandir(folder) if d.is_dir() and not d.name.startswith("."))
    if not found:
        raise DataError(f"{where}: {folder} has no class subfolders; {LAYOUT_HINT}")
    if classes is None:
        classes = found
    else:
        extra = sorted(set(found) - set(classes))
        if extra:
            raise DataError(
                f"{where}: {folder} has class folders that train/ lacks ({', '.join(extra[:5])}"
                f"{' ...' if len(extra) > 5 else ''}); every class of a split must be a class of train/: "
                "rename or remove them"
            )
    index = {c: i for i, c in enumerate(classes)}
    samples = []
    for cls in found:
        files = sorted(
            e.path for e in os.scandir(folder / cls) if e.is_file() and e.name.lower().endswith(IMAGE_EXTENSIONS)
        )
        if not files:
            raise DataError(
                f"{where}: class folder {folder / cls} holds no images ({', '.join(IMAGE_EXTENSIONS)}); "
                "add its images or remove the folder"
            )
        samples += [(path, index[cls]) for path in files]
    return classes, samples


def _scan_shard_splits(name: str, path: Path, has_test: bool):
    """train/val/test samples of a folder of tar shards; the classes are the indices 0..max of train/."""
    train = scan_shards(name, path / "train", IMAGE_EXTENSIONS)
    classes = [str(i) for i in range(max(label for _, label in train) + 1)]
    val = scan_shards(name, path / "val", IMAGE_EXTENSIONS)
    test = scan_shards(name, path / "test", IMAGE_EXTENSIONS) if has_test else val
    for split, samples in (("val", val), ("test", test)):
        bad = next((m for m, label in samples if label >= len(classes)), None)
        if bad is not None:
            raise DataError(
                f"dataset {name!r}: {bad} of {split}/ has a class index that no training sample has "
                f"(train/ has classes 0..{len(classes) - 1}); fix its .cls member"
            )
    return classes, train, val, test


def scan_folder(
    name: str,
    root: str | Path,
    val_size: int | None = None,
    train_limit: int | None = None,
    split_seed: int = 0,
    kind: str = "imagefolder",
) -> FolderSplits:
    """Find the images of ``root``'s splits and check the layout (one DataError naming the path and fix).

    ``kind`` ``imagefolder``: one subfolder of images per class; ``webdataset``: tar shards of images
    and class indices (prunebench.data.shards).

    Without ``val_size``, ``val/`` is the validation split and ``test/`` the test split, or ``val/`` again
    when there is no ``test/`` (ImageNet's labelled val set is what papers report). With ``val_size``,
    that many images held out of ``train/`` (drawn with ``split_seed``) validate and ``val/`` (or
    ``test/``) is the test split. ``train_limit`` keeps that many training images (drawn likewise).
    """
    path = Path(root)
    if not path.is_dir():
        raise DataError(
            f"dataset {name!r}: root {path} does not exist or is not a folder; set datasets.{name}.root to "
            f"the folder that holds train/ and val/ ({LAYOUT_HINT})"
        )
    has_test = (path / "test").is_dir()
    if kind == "webdataset":
        classes, train, val, test = _scan_shard_splits(name, path, has_test)
    else:
        classes, train = _scan_split(name, path / "train", None)
        _, val = _scan_split(name, path / "val", classes)
        test = _scan_split(name, path / "test", classes)[1] if has_test else val
    test_from = "test/" if has_test else "val/"
    sources = {"train": "train/", "val": "val/", "test": test_from}
    g = torch.Generator().manual_seed(split_seed)
    if val_size:
        if not 0 < val_size < len(train):
            raise DataError(
                f"dataset {name!r}: cannot hold out {val_size} of the {len(train)} images of {path / 'train'}; "
                f"choose data.val_size between 1 and {len(train) - 1}, or null to validate on val/"
            )
        perm = torch.randperm(len(train), generator=g).tolist()
        val, test = [train[i] for i in sorted(perm[:val_size])], val if not has_test else test
        train = [train[i] for i in sorted(perm[val_size:])]
        test_from = "test/" if has_test else "val/"
        sources = {"train": "train/ less val_size", "val": f"{val_size} held out of train/", "test": test_from}
    if train_limit and train_limit < len(train):
        keep = sorted(torch.randperm(len(train), generator=g)[:train_limit].tolist())
        train = [train[i] for i in keep]
    return FolderSplits(name, str(path), classes, {"train": train, "val": val, "test": test}, sources=sources)


def crop_box(height: int, width: int, g: torch.Generator) -> tuple[int, int, int, int]:
    """(top, left, h, w) of a random resized crop: an area of CROP_SCALE x the image's, an aspect ratio
    log-uniform in CROP_RATIO; after 10 draws that do not fit, the largest center crop within CROP_RATIO."""
    area = height * width
    log_lo, log_hi = math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1])
    for _ in range(10):
        u = torch.rand(4, generator=g).tolist()
        target = area * (CROP_SCALE[0] + u[0] * (CROP_SCALE[1] - CROP_SCALE[0]))
        ratio = math.exp(log_lo + u[1] * (log_hi - log_lo))
        w = int(round(math.sqrt(target * ratio)))
        h = int(round(math.sqrt(target / ratio)))
        if 0 < w <= width and 0 < h <= height:
            return int(u[2] * (height - h + 1)), int(u[3] * (width - w + 1)), h, w
    ratio = width / height
    if ratio < CROP_RATIO[0]:
        w, h = width, int(round(width / CROP_RATIO[0]))
    elif ratio > CROP_RATIO[1]:
        h, w = height, int(round(height * CROP_RATIO[1]))
    else:
        h, w = height, width
    return (height - h) // 2, (width - w) // 2, h, w


def decode(path) -> torch.Tensor:
    """The image at ``path`` (a file, or a member of a tar shard) as a uint8 RGB tensor (3, H, W); a
    DataError names a file it cannot read."""
    from torchvision.io import ImageReadMode, decode_image, read_file

    try:
        with warnings.catch_warnings():  # torchvision 0.29 points to TorchCodec, which decodes no still images
            warnings.filterwarnings("ignore", "The image decoding", DeprecationWarning)
            if isinstance(path, ShardMember):
                data = torch.frombuffer(bytearray(read_member(path)), dtype=torch.uint8)
            else:
                data = read_file(path)
            return decode_image(data, mode=ImageReadMode.RGB)
    except DataError:
        raise
    except Exception as exc:  # torchvision raises RuntimeError for corrupt files, OSError for unreadable ones
        raise DataError(
            f"cannot read image {path} ({type(exc).__name__}: {exc}); replace or delete the file "
            "(a truncated download or a file that is not an image)"
        ) from None


class _FolderImages(torch.utils.data.Dataset):
    """Decodes and transforms one image per item ``(split, index, seed)`` (in a worker process).

    ``seed`` None: the evaluation transform (shorter side resized, center crop); else the training
    transform: RandomResizedCrop (``crop`` in ``augment``, else the evaluation crop) and a horizontal flip
    (``flip`` in ``augment``) drawn from a generator seeded with it."""

    def __init__(self, samples: dict[str, list[tuple[str, int]]], img_size: int, augment=("crop", "flip")):
        self.samples, self.img_size, self.augment = samples, img_size, tuple(augment)
        self.eval_size = int(round(img_size * EVAL_RESIZE_RATIO))

    def __len__(self) -> int:
        return sum(len(v) for v in self.samples.values())

    def __getitem__(self, item: tuple[str, int, int | None]) -> tuple[torch.Tensor, int]:
        from torchvision.transforms.v2 import functional as TF

        split, index, seed = item
        path, label = self.samples[split][index]
        img = decode(path)
        size = [self.img_size, self.img_size]
        g = torch.Generator().manual_seed(seed) if seed is not None else None
        if g is not None and "crop" in self.augment:
            top, left, h, w = crop_box(img.shape[-2], img.shape[-1], g)
            img = TF.resized_crop(img, top, left, h, w, size, antialias=True)
        else:
            img = TF.center_crop(TF.resize(img, self.eval_size, antialias=True), size)
        if g is not None and "flip" in self.augment and torch.rand(1, generator=g).item() < 0.5:
            img = img.flip(-1)
        return img.contiguous(), label


class _Batches(torch.utils.data.Sampler):
    """The batches of items a loader's workers decode next, set by the data source before each pass (the
    loader keeps its workers between passes and asks this sampler, in the main process, for each pass)."""

    def __init__(self):
        super().__init__()
        self.batches: list[list[tuple]] = []

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def train_items(
    n: int, batch_size: int, generator: torch.Generator, rank: int = 0, world: int = 1
) -> list[list[tuple[str, int, int]]]:
    """One epoch of a folder's training batches as ``(split, index, augmentation seed)`` items: a
    shuffled order of the ``n`` images, the last incomplete global batch dropped, each global batch
    cut into ``world`` equal shards of which this is ``rank``'s."""
    bs = min(batch_size, n)
    if bs % world:
        raise ValueError(f"a global batch of {bs} does not split into {world} equal shards")
    steps = max(1, n // batch_size)
    perm = torch.randperm(n, generator=generator, device=generator.device).tolist()
    seeds = torch.randint(0, 2**62, (steps * bs,), generator=generator, device=generator.device).tolist()
    per = bs // world
    lo = rank * per
    return [[("train", perm[i * bs + j], seeds[i * bs + j]) for j in range(lo, lo + per)] for i in range(steps)]


def eval_items(
    samples: FolderSplits, splits: str | tuple[str, ...], batch_size: int, shard: tuple[int, int] | None = None
) -> tuple[list[list[tuple[str, int, None]]], list[tuple[str, ...]]]:
    """Evaluation batches of ``splits`` as items, and the splits each batch is scored for: a split that
    is another one's images (``test`` when the folder has no test/) is listed once, for both."""
    rank, world = shard or (0, 1)
    aliases: dict[int, list[str]] = {}  # the splits that share one sample list
    for split in (splits,) if isinstance(splits, str) else splits:
        aliases.setdefault(id(samples.samples[split]), []).append(split)
    batches, owners = [], []
    for split, *others in aliases.values():
        n = len(samples.samples[split])
        lo, hi = n * rank // world, n * (rank + 1) // world
        for i in range(lo, hi, batch_size):
            batches.append([(split, j, None) for j in range(i, min(i + batch_size, hi))])
            owners.append((split, *others))
    return batches, owners


class FolderData:
    """An image folder served in float batches on ``device`` (the data-source interface of data.batches)."""

    def __init__(
        self,
        splits: FolderSplits,
        device: torch.device,
        img_size: int | None = None,
        workers: int = 8,
        channels_last: bool = False,
        shard: tuple[int, int] = (0, 1),
        prefetch: int = 4,
        augment: tuple[str, ...] = ("crop", "flip"),
    ):
        self.splits = splits
        self.rank, self.world = shard
        self.device = torch.device(device)
        self.img_size = img_size or 224
        self.workers, self.prefetch, self.channels_last = workers, prefetch, channels_last
        self.mean = torch.tensor(splits.mean, device=self.device).view(1, 3, 1, 1) * 255
        self.std = torch.tensor(splits.std, device=self.device).view(1, 3, 1, 1) * 255
        self.images = _FolderImages(splits.samples, self.img_size, augment)
        self._loaders: dict[str, tuple[torch.utils.data.DataLoader, _Batches]] = {}

    def __len__(self) -> int:
        return len(self.splits.samples["train"])

    def steps_per_epoch(self, batch_size: int) -> int:
        return max(1, len(self) // batch_size)

    def _loader(self, purpose: str) -> tuple[torch.utils.data.DataLoader, _Batches]:
        """The loader for training or evaluation, each with its own workers, kept between passes."""
        if purpose not in self._loaders:
            sampler = _Batches()
            workers = self.workers if purpose == "train" else max(1, self.workers // 2) if self.workers else 0
            loader = torch.utils.data.DataLoader(
                self.images,
                batch_sampler=sampler,
                num_workers=workers,
                pin_memory=self.device.type == "cuda",
                persistent_workers=workers > 0,
                prefetch_factor=self.prefetch if workers > 0 else None,
            )
            self._loaders[purpose] = (loader, sampler)
        return self._loaders[purpose]

    def _stream(self, purpose: str, batches: list[list[tuple]]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        loader, sampler = self._loader(purpose)
        sampler.batches = batches
        try:
            for x, y in loader:
                yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        except DataError as exc:  # raised in a worker: the loader adds the worker's traceback to the message
            raise DataError(str(exc).strip().splitlines()[-1].removeprefix("prunebench.errors.DataError: ")) from None

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float().sub_(self.mean).div_(self.std)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def train_batches(self, batch_size: int, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One epoch of shuffled, augmented batches (the last incomplete batch dropped); ``batch_size`` is
        global, and with a shard each batch is this process's equal slice of it."""
        batches = train_items(len(self), batch_size, generator, self.rank, self.world)
        for x, y in self._stream("train", batches):
            yield self._prepare(x), y

    def eval_batches(
        self,
        splits: str | tuple[str, ...],
        batch_size: int,
        shard: tuple[int, int] | None = None,
        pad: bool = True,
    ) -> Iterator[EvalBatch]:
        """Un-augmented batches (resize, center crop) of ``splits``; ``shard`` and ``pad`` as for the
        device-resident data (data.loader.DeviceData.eval_batches).

        A split that is another one's images (``test`` when the folder has no test/: it is ``val``) is
        decoded once: each of its batches is yielded for both splits in turn."""
        batches, owners = eval_items(self.splits, splits, batch_size, shard)
        for both, (x, y) in zip(owners, self._stream("eval", batches), strict=True):
            if pad:
                x, y = pad_batch(x, y, batch_size)
            x = self._prepare(x)
            for split in both:
                yield EvalBatch(x, y, split)

    def close(self) -> None:
        """Stop the worker processes (they also stop when the data source is garbage-collected)."""
        self._loaders.clear()
