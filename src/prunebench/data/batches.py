"""The batch interface every training data source serves (device-resident CIFAR, streamed folders).

A data source has ``device``, ``img_size``, ``__len__`` (training images), ``steps_per_epoch(batch_size)``,
``train_batches(batch_size, generator)`` yielding ``(x, y)`` (this process's shard of each global batch,
the shard given at construction) and ``eval_batches(splits, batch_size, shard=None, pad=True)`` yielding
:class:`EvalBatch` es.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

PAD_LABEL = -1  # label of the rows that pad an evaluation batch to its fixed shape; they count nowhere


class EvalBatch(NamedTuple):
    """One evaluation batch: images, labels (``PAD_LABEL`` on padding rows) and the split it belongs to.

    A batch never spans two splits. With ``pad=True`` every batch has exactly ``batch_size`` rows, so a
    compiled or graph-captured model sees one shape only.
    """

    x: torch.Tensor
    y: torch.Tensor
    split: str


def pad_batch(x: torch.Tensor, y: torch.Tensor, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` and ``y`` padded to ``batch_size`` rows: zero images labelled ``PAD_LABEL``."""
    if len(y) >= batch_size:
        return x, y
    x = torch.cat([x, x.new_zeros((batch_size - len(y), *x.shape[1:]))])
    return x, torch.cat([y, y.new_full((batch_size - len(y),), PAD_LABEL)])
