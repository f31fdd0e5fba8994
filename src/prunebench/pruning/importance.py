"""How important each prunable group is: magnitude, scale-fair magnitude, first-order Taylor, random.

Every function returns ``{GroupSet name: float64 score per group}`` on the CPU; higher means keep.

- :func:`magnitude_scores`: the L1 sum or L2 norm of a group's weights (layerwise ranking, which
  compares the groups of one layer only).
- :func:`layer_normalised`: what ``ranking: global`` pools. Raw magnitudes of different layers are
  not comparable (a layer's sums grow with its fan-in and follow its own weight scale: pooled raw,
  the layers with the largest sums take every kept slot and the others fall to their floor), so
  each layer's scores are divided by the mean score of its live groups, as Torch-Pruning's ``mean``
  normaliser does: a group then counts by how it stands within its layer, around 1 in every layer.
- :func:`scale_fair_scores`: what ``ranking: mixed`` compares when heads and neurons share one pool.
  A raw magnitude is not comparable across kinds (a head owns ~100x more weights than a neuron) nor
  across tensors (each tensor has its own scale, set by its fan-in at initialisation and by what
  weight decay and the optimizer did to it), so each weight is first divided by the typical
  magnitude of its tensor's live weights and the group's score is then the mean |w| (L1) or root
  mean square (L2) of its normalised weights: an intensive, dimensionless number around 1 for every
  kind. Why a per-tensor statistic: rescaling a tensor by c (and, where the next operation is
  linear or followed by a norm, the next tensor by 1/c) leaves the network's function unchanged, so
  it must not change which groups are kept; dividing by the tensor's own mean |w| (L1) or RMS (L2)
  removes exactly that factor. The statistic is taken over live groups only, so pruned (zeroed)
  groups do not drag it down as the chain advances.
- :func:`taylor_scores`: the first-order estimate of the loss change when a group is removed,
  sum over its weights of |w * dL/dw|, averaged over a few batches. It is in units of loss for
  every kind of group, so heads, neurons and channels are comparable by construction.
- :func:`random_scores`: the ``random`` baseline's scores, drawn from a torch.Generator.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from prunebench.pruning.groups import GroupSet, Masks, group_importance

IMPORTANCES = ("l1", "l2", "taylor")


def magnitude_scores(model: nn.Module, groupsets: list[GroupSet], norm: str) -> dict[str, torch.Tensor]:
    """L1 sum (``l1``) or L2 norm (``l2``) of each group's weights."""
    if norm not in ("l1", "l2"):
        raise ValueError(f"unknown magnitude norm {norm!r}; choose l1 or l2")
    return {gs.name: group_importance(model, gs, norm) for gs in groupsets}


def layer_normalised(scores: dict[str, torch.Tensor], live: Masks) -> dict[str, torch.Tensor]:
    """Each GroupSet's scores divided by the mean score of its live groups (scores of a layer whose live
    groups all score 0 are left as they are: there is nothing to rank them by)."""
    out = {}
    for name, s in scores.items():
        alive = live[name].cpu().bool()
        mean = float(s[alive].mean()) if bool(alive.any()) else 0.0
        out[name] = s / mean if mean > 0 else s.clone()
    return out


def _per_group(gs: GroupSet, values: torch.Tensor, dim: int, sl) -> torch.Tensor:
    """Sum ``values`` (shaped like the parameter) over everything but ``dim``, then per group."""
    reduce_dims = [d for d in range(values.dim()) if d != dim]
    per_index = values.sum(reduce_dims) if reduce_dims else values
    return gs.group_view(per_index.detach().cpu().double(), sl).sum(dim=(0, 2))


def scale_fair_scores(model: nn.Module, groupsets: list[GroupSet], live: Masks, norm: str) -> dict[str, torch.Tensor]:
    """Mean |w| (l1) or RMS (l2) of each group's weights, each weight divided by its tensor's live mean |w| or RMS.

    A tensor whose live weights are all zero (a zero-initialised bias) carries no ranking
    information and is left out of its groups' means.
    """
    if norm not in ("l1", "l2"):
        raise ValueError(f"unknown magnitude norm {norm!r}; choose l1 or l2")
    params = dict(model.named_parameters())
    out = {}
    for gs in groupsets:
        alive = live[gs.name].cpu().bool()
        total = torch.zeros(gs.size, dtype=torch.float64)
        entries = 0
        for sl in gs.slices:
            w = params[sl.param].detach().float()
            per_group = _per_group(gs, w.abs() if norm == "l1" else w.pow(2), sl.dim, sl)
            n = w.numel() // w.shape[sl.dim] * sl.width * sl.tile  # weights of one group in this tensor
            typical = float(per_group[alive].sum()) / (n * int(alive.sum()))  # live mean |w| or mean w^2
            if typical > 0:
                total += per_group / typical
                entries += n
        mean = total / max(entries, 1)
        out[gs.name] = mean if norm == "l1" else mean.sqrt()
    return out


def taylor_scores(
    model: nn.Module, groupsets: list[GroupSet], batches: Iterable | None, n_batches: int
) -> dict[str, torch.Tensor]:
    """Sum of |w * dL/dw| over each group's weights (cross-entropy loss), averaged over ``n_batches`` batches.

    The model runs in eval mode (no dropout, BN with its running statistics: the model that is
    evaluated); parameters' ``.grad`` are left untouched.
    """
    if batches is None:
        raise ValueError(
            "prune.importance taylor scores groups by |w * dL/dw| on training batches, but none were given; "
            "pass batches= to choose_masks (the state runner passes prune.taylor_batches training batches)"
        )
    names = list(dict.fromkeys(sl.param for gs in groupsets for sl in gs.slices))
    params = dict(model.named_parameters())
    tensors = [params[n] for n in names]
    sums = {n: torch.zeros_like(params[n], dtype=torch.float32) for n in names}
    used = 0
    was_training = model.training
    model.eval()
    try:
        for images, labels in itertools.islice(batches, n_batches):
            with torch.enable_grad():
                loss = F.cross_entropy(model(images), labels)
                grads = torch.autograd.grad(loss, tensors, allow_unused=True)
            for n, p, g in zip(names, tensors, grads):
                if g is not None:
                    sums[n] += (p.detach().float() * g.float()).abs()
            used += 1
    finally:
        model.train(was_training)
    if used == 0:
        raise ValueError("prune.importance taylor got an empty batch iterable; it needs at least one training batch")
    out = {}
    for gs in groupsets:
        score = torch.zeros(gs.size, dtype=torch.float64)
        for sl in gs.slices:
            score += _per_group(gs, sums[sl.param], sl.dim, sl)
        out[gs.name] = score / used
    return out


def random_scores(groupsets: list[GroupSet], rng: torch.Generator) -> dict[str, torch.Tensor]:
    """Uniform random scores, one per group, drawn from ``rng`` in the GroupSets' order."""
    return {gs.name: torch.rand(gs.size, generator=rng, dtype=torch.float64) for gs in groupsets}
