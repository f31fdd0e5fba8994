"""Choosing which live groups to keep for a target density.

Masks are nested: only groups alive in ``prev`` can be kept. Every layer keeps at least one group
of each kind it has.
"""

from __future__ import annotations

import math

import torch

from prunebench.pruning.groups import GroupSet, Masks


def _keep_count(density: float, total: int) -> int:
    return int(math.floor(density * total + 0.5))


def _reserve_best(gs: GroupSet, score: torch.Tensor, live: torch.Tensor) -> int:
    """Index of the best live group of a layer (the one it always keeps)."""
    return int(torch.where(live, score, torch.tensor(-math.inf, dtype=score.dtype)).argmax())


def _fill(candidates: list[tuple[float, str, int]], keep: Masks, budget: int) -> None:
    """Keep the ``budget`` highest-scoring candidates (ties: layer then index order)."""
    for _, name, idx in sorted(candidates, key=lambda c: (-c[0], c[1], c[2]))[: max(0, budget)]:
        keep[name][idx] = True


def select_layerwise(groupsets: list[GroupSet], scores: dict[str, torch.Tensor], prev: Masks, density: float) -> Masks:
    """Each layer keeps its own share of its groups."""
    keep = {}
    for gs in groupsets:
        live = prev[gs.name].cpu()
        n_keep = min(int(live.sum()), max(1, _keep_count(density, gs.size)))
        s = torch.where(live, scores[gs.name], torch.tensor(-math.inf, dtype=torch.float64))
        order = sorted(range(gs.size), key=lambda i: (-float(s[i]), i))
        mask = torch.zeros(gs.size, dtype=torch.bool)
        mask[order[:n_keep]] = True
        keep[gs.name] = mask
    return keep


def select_global(groupsets: list[GroupSet], scores: dict[str, torch.Tensor], prev: Masks, density: float) -> Masks:
    """All groups of one kind (all heads; all neurons; all channels) ranked in one pool per kind."""
    keep = {gs.name: torch.zeros(gs.size, dtype=torch.bool) for gs in groupsets}
    for kind in dict.fromkeys(gs.kind for gs in groupsets):
        pool = [gs for gs in groupsets if gs.kind == kind]
        total = sum(gs.size for gs in pool)
        live_total = sum(int(prev[gs.name].sum()) for gs in pool)
        budget = min(live_total, max(len(pool), _keep_count(density, total)))
        candidates = []
        for gs in pool:
            live = prev[gs.name].cpu()
            best = _reserve_best(gs, scores[gs.name], live)
            keep[gs.name][best] = True
            candidates += [(float(scores[gs.name][i]), gs.name, i) for i in range(gs.size) if live[i] and i != best]
        _fill(candidates, keep, budget - len(pool))
    return keep


def select_mixed(
    groupsets: list[GroupSet],
    scores: dict[str, torch.Tensor],
    prev: Masks,
    density: float,
    costs: dict[str, int],
) -> Masks:
    """Heads and neurons in ONE pool, ranked by ``scores``, kept under a parameter budget.

    ``scores`` must be comparable across kinds (:func:`prunebench.pruning.importance.scale_fair_scores`,
    Taylor scores per parameter, or random ones); the budget charges each kept group what it weighs.
    """
    keep = {gs.name: torch.zeros(gs.size, dtype=torch.bool) for gs in groupsets}
    budget = density * sum(gs.size * costs[gs.name] for gs in groupsets)
    used = 0
    candidates = []
    for gs in groupsets:
        live = prev[gs.name].cpu()
        per_param = scores[gs.name]
        best = _reserve_best(gs, per_param, live)
        keep[gs.name][best] = True
        used += costs[gs.name]
        candidates += [(float(per_param[i]), gs.name, i) for i in range(gs.size) if live[i] and i != best]
    for _, name, idx in sorted(candidates, key=lambda c: (-c[0], c[1], c[2])):
        if used + costs[name] <= budget:
            keep[name][idx] = True
            used += costs[name]
    return keep


def round_widths(
    groupsets: list[GroupSet], scores: dict[str, torch.Tensor], prev: Masks, keep: Masks, step: int
) -> Masks:
    """Move each layer's kept count to the nearest multiple of ``step`` entries (hardware-friendly widths).

    A head is ``head_dim`` entries wide, so with head_dim 64 any head count is already a multiple of
    8. Groups are added best-first from the live ones, or dropped worst-first; a layer keeps at
    least one multiple (or all its live groups when it has fewer) and masks stay nested.
    """
    out = {}
    for gs in groupsets:
        per_group = step // math.gcd(step, gs.slices[0].width)  # groups per multiple of ``step`` entries
        live, kept = prev[gs.name].cpu(), keep[gs.name].clone()
        n, n_live = int(kept.sum()), int(live.sum())
        target = min(n_live, max(per_group, per_group * int(math.floor(n / per_group + 0.5))))
        s = scores[gs.name]
        if target > n:
            pool = [i for i in range(gs.size) if live[i] and not kept[i]]
            kept[sorted(pool, key=lambda i: (-float(s[i]), i))[: target - n]] = True
        elif target < n:
            pool = [i for i in range(gs.size) if kept[i]]
            kept[sorted(pool, key=lambda i: (float(s[i]), i))[: n - target]] = False
        out[gs.name] = kept
    return out


def select(
    ranking: str,
    groupsets: list[GroupSet],
    scores: dict[str, torch.Tensor],
    prev: Masks,
    density: float,
    costs: dict[str, int] | None = None,
) -> Masks:
    """Masks for ``density`` under ``ranking`` (layerwise, global or mixed)."""
    if ranking == "layerwise":
        return select_layerwise(groupsets, scores, prev, density)
    if ranking == "global":
        return select_global(groupsets, scores, prev, density)
    if ranking == "mixed":
        if costs is None:
            raise ValueError("mixed ranking needs the groups' parameter costs")
        return select_mixed(groupsets, scores, prev, density, costs)
    raise ValueError(f"unknown ranking {ranking!r}")
