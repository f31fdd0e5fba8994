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
