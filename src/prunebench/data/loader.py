"""Batches from in-memory uint8 tensors, with crop/flip/resize/normalise done on the device."""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F

from prunebench.data.batches import EvalBatch, pad_batch
from prunebench.data.datasets import Splits


def random_crop(
    x: torch.Tensor, padding: int, generator: torch.Generator, part: tuple[slice, int] | None = None
) -> torch.Tensor:
    """Zero-pad by ``padding`` and crop back to size at a random offset per image (batched).

    With ``part`` = (slice, n), ``x`` is that slice of a batch of n: the offsets are drawn for all n
    (consuming ``generator`` as for the whole batch) and those of the slice used, so a shard is
    cropped exactly as in the undivided batch."""
    if padding <= 0:
        return x
    b, _, h, w = x.shape
    part, n = part or (slice(0, b), b)
    padded = F.pad(x, (padding, padding, padding, padding))
    dev = x.device
    oy = torch.randint(0, 2 * padding + 1, (n, 1), generator=generator, device=generator.device)[part].to(dev)
    ox = torch.randint(0, 2 * padding + 1, (n, 1), generator=generator, device=generator.device)[part].to(dev)
    rows = (oy + torch.arange(h, device=dev))[:, :, None]  # (b, h, 1)
    cols = (ox + torch.arange(w, device=dev))[:, None, :]  # (b, 1, w)
    batch = torch.arange(b, device=dev)[:, None, None]
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)


def random_flip(x: torch.Tensor, generator: torch.Generator, part: tuple[slice, int] | None = None) -> torch.Tensor:
    """Flip each image horizontally with probability 1/2 (``part``: as in :func:`random_crop`)."""
    part, n = part or (slice(0, x.shape[0]), x.shape[0])
    flip = torch.rand(n, generator=generator, device=generator.device)[part].to(x.device) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


class DeviceData:
    """A dataset resident on ``device`` as uint8, served in float batches ready for the model."""

    def __init__(
        self,
        splits: Splits,
        device: torch.device,
        img_size: int | None = None,
        augment: tuple[str, ...] = ("crop", "flip"),
        crop_padding: int = 4,
        channels_last: bool = False,
        shard: tuple[int, int] = (0, 1),
    ):
        self.splits = splits
        # (rank, world): this process trains on slice `rank` of `world` equal slices of every global
        # batch (multi-GPU states); the permutation and augmentation are those of the whole batch
        self.rank, self.world = shard
        self.device = torch.device(device)
        self.img_size = img_size or splits.image_size
        self.augment = tuple(augment)
        self.crop_padding = crop_padding
        self.channels_last = channels_last
        self.mean = torch.tensor(splits.mean, device=self.device).view(1, 3, 1, 1) * 255
        self.std = torch.tensor(splits.std, device=self.device).view(1, 3, 1, 1) * 255
        self.x = {k: getattr(splits, f"{k}_x").to(self.device) for k in ("train", "val", "test")}
        self.y = {k: getattr(splits, f"{k}_y").to(self.device) for k in ("train", "val", "test")}

    def __len__(self) -> int:
        return len(self.y["train"])

    def steps_per_epoch(self, batch_size: int) -> int:
        return max(1, len(self) // batch_size)

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float().sub_(self.mean).div_(self.std)
        if x.shape[-1] != self.img_size:
            x = F.interpolate(x, size=(self.img_size, self.img_size), mode="bilinear", align_corners=False)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def train_batches(self, batch_size: int, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One epoch of shuffled, augmented batches (the last incomplete batch is dropped).

        ``batch_size`` is global: with a shard, each yielded batch is this process's equal slice of it,
        the same samples, crops and flips as in the undivided batch."""
        n = len(self)
        perm = torch.randperm(n, generator=generator, device=generator.device).to(self.device)
        bs = min(batch_size, n)
        if bs % self.world:
            raise ValueError(f"a global batch of {bs} does not split into {self.world} equal shards")
        part = None
        if self.world > 1:
            per = bs // self.world
            part = (slice(self.rank * per, (self.rank + 1) * per), bs)
        for i in range(self.steps_per_epoch(batch_size)):
            idx = perm[i * bs : (i + 1) * bs]
            if part is not None:
                idx = idx[part[0]]
            x = self.x["train"][idx]
            if "crop" in self.augment:
                x = random_crop(x, self.crop_padding, generator, part)
            if "flip" in self.augment:
                x = random_flip(x, generator, part)
            yield self._prepare(x), self.y["train"][idx]

    def eval_batches(
        self,
        splits: str | tuple[str, ...],
        batch_size: int,
        shard: tuple[int, int] | None = None,
        pad: bool = True,
    ) -> Iterator[EvalBatch]:
        """Un-augmented batches of ``splits``, one split after the other (a batch never spans two).

        ``shard=(rank, world)``: this process's contiguous share of each split (the shares of all ranks
        together are the split, each image once). ``pad``: the last batch of a split is padded to
        ``batch_size`` rows (labels ``PAD_LABEL``), so every batch has the same shape and a compiled
        model never recompiles for the leftover.
        """
        rank, world = shard or (0, 1)
        for split in (splits,) if isinstance(splits, str) else splits:
            x_all, y_all = self.x[split], self.y[split]
            n = len(y_all)
            lo, hi = n * rank // world, n * (rank + 1) // world
            for i in range(lo, hi, batch_size):
                j = min(i + batch_size, hi)
                x, y = x_all[i:j], y_all[i:j]
                if pad:
                    x, y = pad_batch(x, y, batch_size)
                yield EvalBatch(self._prepare(x), y, split)
