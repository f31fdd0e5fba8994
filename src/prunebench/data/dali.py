"""Image folders decoded on the GPU by NVIDIA DALI (the `dali` extra): JPEG decode, crop, resize, flip, normalise.

``nvidia.dali`` is imported only when a dataset's ``loader`` chooses DALI (prunebench.data.choose_loader). The samples,
the per-image seeds and the crop boxes are those of the torchvision path (prunebench.data.folder): the
boxes are drawn on the host from each image's seed and size (its header, read with PIL), and DALI
decodes only that region (``decoders.image_slice``), so the two paths crop the same regions and a
shard of a multi-GPU state gets its slice of the global batch. The pixels may differ slightly (DALI's
JPEG decoder and resampling are not torchvision's).

Not exercised in prunebench's tests (DALI needs an NVIDIA GPU); written from DALI's documentation.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from prunebench.data.batches import EvalBatch, pad_batch
from prunebench.data.folder import EVAL_RESIZE_RATIO, FolderSplits, crop_box, eval_items, train_items
from prunebench.data.shards import ShardMember, read_member
from prunebench.errors import DataError

DALI_HINT = "install the `dali` extra (`pip install 'prunebench[dali]'`, NVIDIA DALI for CUDA 12) on the GPU nodes"


def dali_available() -> bool:
    """Whether NVIDIA DALI can be imported here."""
    import importlib.util

    try:
        return importlib.util.find_spec("nvidia.dali") is not None
    except ModuleNotFoundError:  # no `nvidia` namespace package at all
        return False


def _image_size(path, data: np.ndarray) -> tuple[int, int]:
    """(height, width) of the image ``data`` read from ``path``, from its header (PIL reads no pixels)."""
    import io

    from PIL import Image

    try:
        with Image.open(io.BytesIO(data.tobytes())) as img:
            width, height = img.size
    except Exception as exc:
        raise DataError(f"cannot read image {path} ({type(exc).__name__}: {exc}); replace or delete the file") from None
    return height, width


class DaliData:
    """An image folder served by DALI pipelines on a CUDA ``device`` (the interface of data.batches)."""

    def __init__(
        self,
        splits: FolderSplits,
        device: torch.device,
        img_size: int | None = None,
        workers: int = 8,
        channels_last: bool = False,
        shard: tuple[int, int] = (0, 1),
        augment: tuple[str, ...] = ("crop", "flip"),
    ):
        self.augment = tuple(augment)
        self.device = torch.device(device)
        if self.device.type != "cuda":
            raise DataError(
                f"the DALI loader decodes on a GPU, but this state runs on {self.device}; set loader: torchvision"
            )
        if not dali_available():
            raise DataError(f"datasets.{splits.name}.loader chooses DALI, which is not installed; {DALI_HINT}")
        self.splits = splits
        self.rank, self.world = shard
        self.img_size = img_size or 224
        self.eval_size = int(round(self.img_size * EVAL_RESIZE_RATIO))
        self.threads = max(1, workers)
        self.channels_last = channels_last
        self.pool = ThreadPoolExecutor(self.threads)  # reads the files and their headers for the next batch
        self._pipes: dict[tuple[str, int], object] = {}

    def __len__(self) -> int:
        return len(self.splits.samples["train"])

    def steps_per_epoch(self, batch_size: int) -> int:
        return max(1, len(self) // batch_size)

    def _pipe(self, kind: str, batch_size: int):
        """The DALI pipeline for training (``kind`` train) or evaluation batches of ``batch_size`` images."""
        key = (kind, batch_size)
        if key in self._pipes:
            return self._pipes[key]
        from nvidia.dali import fn, types
        from nvidia.dali.pipeline import Pipeline

        mean = [m * 255 for m in self.splits.mean]
        std = [s * 255 for s in self.splits.std]
        # one iteration per fed batch, in order: feed_input then run, with nothing prefetched ahead
        device_id = self.device.index if self.device.index is not None else torch.cuda.current_device()
        pipe = Pipeline(
            batch_size=batch_size, num_threads=self.threads, device_id=device_id,
            exec_pipelined=False, exec_async=False,
        )  # fmt: skip
        with pipe:
            encoded = fn.external_source(name="encoded", dtype=types.UINT8, ndim=1)
            if kind == "train":
                anchor = fn.external_source(name="anchor", dtype=types.FLOAT, ndim=1)  # (left, top) in pixels
                shape = fn.external_source(name="shape", dtype=types.FLOAT, ndim=1)  # (width, height) in pixels
                mirror = fn.external_source(name="mirror", dtype=types.INT32, ndim=0)
                images = fn.decoders.image_slice(
                    encoded, anchor, shape, device="mixed", output_type=types.RGB,
                    normalized_anchor=False, normalized_shape=False, axis_names="WH",
                )  # fmt: skip
                images = fn.resize(images, resize_x=self.img_size, resize_y=self.img_size, antialias=True)
                images = fn.crop_mirror_normalize(
                    images, dtype=types.FLOAT, output_layout="CHW", mean=mean, std=std, mirror=mirror
                )
            else:
                images = fn.decoders.image(encoded, device="mixed", output_type=types.RGB)
                images = fn.resize(images, resize_shorter=self.eval_size, antialias=True)
                images = fn.crop_mirror_normalize(
                    images, dtype=types.FLOAT, output_layout="CHW", crop=(self.img_size, self.img_size),
                    crop_pos_x=0.5, crop_pos_y=0.5, mean=mean, std=std,
                )  # fmt: skip
            pipe.set_outputs(images)
        pipe.build()
        self._pipes[key] = pipe
        return pipe

    def _read(self, items: list[tuple[str, int, int | None]]) -> dict:
        """The fed inputs of one batch: encoded files, and for training the crop boxes and flips."""

        def one(item):
            split, index, seed = item
            path, label = self.splits.samples[split][index]
            if isinstance(path, ShardMember):
                data = np.frombuffer(read_member(path), dtype=np.uint8)
            else:
                try:
                    data = np.fromfile(path, dtype=np.uint8)
                except OSError as exc:
                    raise DataError(f"cannot read image {path} ({exc}); replace or delete the file") from None
            if seed is None:
                return data, label, None
            g = torch.Generator().manual_seed(seed)
            height, width = _image_size(path, data)
            if "crop" in self.augment:
                top, left, h, w = crop_box(height, width, g)
            else:  # the evaluation crop's region: the center of the shorter side, 224/256 of it
                h = w = int(round(min(height, width) / EVAL_RESIZE_RATIO))
                top, left = (height - h) // 2, (width - w) // 2
            flip = "flip" in self.augment and torch.rand(1, generator=g).item() < 0.5
            return data, label, (np.array([left, top], np.float32), np.array([w, h], np.float32), np.int32(flip))

        rows = list(self.pool.map(one, items))
        feed = {"encoded": [r[0] for r in rows], "labels": [r[1] for r in rows]}
        if rows and rows[0][2] is not None:
            feed["anchor"] = [r[2][0] for r in rows]
            feed["shape"] = [r[2][1] for r in rows]
            feed["mirror"] = [np.array(r[2][2], dtype=np.int32) for r in rows]
        return feed

    def _run(self, kind: str, batch_size: int, items: list[tuple]) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode one batch (``items`` short of ``batch_size`` are filled up by repeating the last one)."""
        from nvidia.dali.plugin.pytorch import feed_ndarray

        n = len(items)
        pipe = self._pipe(kind, batch_size)
        feed = self._read(items + [items[-1]] * (batch_size - n))
        labels = torch.tensor(feed.pop("labels")[:n], dtype=torch.int64)
        for name, data in feed.items():
            pipe.feed_input(name, data)
        (out,) = pipe.run()
        dense = out.as_tensor()
        x = torch.empty(dense.shape(), dtype=torch.float32, device=self.device)
        feed_ndarray(dense, x, cuda_stream=torch.cuda.current_stream(self.device))
        x = x[:n]
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, labels.to(self.device, non_blocking=True)

    def train_batches(self, batch_size: int, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """As prunebench.data.folder.FolderData.train_batches: the same samples, seeds and crop boxes."""
        for items in train_items(len(self), batch_size, generator, self.rank, self.world):
            yield self._run("train", len(items), items)

    def eval_batches(
        self,
        splits: str | tuple[str, ...],
        batch_size: int,
        shard: tuple[int, int] | None = None,
        pad: bool = True,
    ) -> Iterator[EvalBatch]:
        """As prunebench.data.folder.FolderData.eval_batches (resize, center crop; padded last batches)."""
        batches, owners = eval_items(self.splits, splits, batch_size, shard)
        for items, both in zip(batches, owners, strict=True):
            x, y = self._run("eval", batch_size, items)
            if pad:
                x, y = pad_batch(x, y, batch_size)
            for name in both:
                yield EvalBatch(x, y, name)
