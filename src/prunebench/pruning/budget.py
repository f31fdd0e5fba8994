"""Budgets in cost: keep the groups that fit a fraction of the dense model's groups, params or MACs.

``prune.budget`` says what the schedule's fraction (:func:`prunebench.pruning.schedule.density_at`)
is a fraction of:

- ``groups``: of the prunable groups (layerwise and global ranking), or of the prunable groups'
  parameters (mixed ranking): the selections of :mod:`prunebench.pruning.ranking`.
- ``params`` / ``macs``: of the dense model's parameters or multiply-accumulates per image, as
  :func:`prunebench.models.cost.model_cost` counts them on the physically slimmed model. The
  ranking orders the live groups for removal; the smallest prefix of that order whose cost fits the
  target is removed, then removed groups are put back best-first wherever they still fit, so the
  reached cost lands just under the target (by less than one layer's cheapest removal unit).

Costs come from :class:`CostModel`, an exact closed form of the compact model's cost in the kept
group counts (a constant, a linear term per layer and a product term for tensors cut by two layers,
as in a plain CNN whose conv sits between two pruned ones); ``tests/unit/pruning/test_budget.py``
checks it against the counted cost of real compact models.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from prunebench.errors import ConfigError
from prunebench.pruning.groups import GroupSet, Masks, group_costs
from prunebench.pruning.importance import (
    layer_normalised,
    magnitude_scores,
    random_scores,
    scale_fair_scores,
    taylor_scores,
)
from prunebench.pruning.ranking import round_widths, select
from prunebench.pruning.schedule import default_budget, density_at

BUDGETS = ("groups", "params", "macs")
QUANTITIES = ("params", "macs")
_COSTED = (nn.Linear, nn.Conv2d)  # modules whose weights are multiplied per output position
_PARAM_ONLY = (nn.BatchNorm2d, nn.LayerNorm)  # modules with parameters but no counted MACs


@dataclass
class CostModel:
    """params and MACs of the compact model as a function of the kept groups per GroupSet.

    ``cost(n) = const + lin @ n + sum_k quad_coef[k] * n[quad_i[k]] * n[quad_j[k]]`` for each
    quantity (rows 0 params, 1 macs), ``n`` the kept counts in ``names`` order.
    """

    names: list[str]
    sizes: np.ndarray
    const: np.ndarray  # (2,)
    lin: np.ndarray  # (2, L)
    quad_i: np.ndarray
    quad_j: np.ndarray
    quad_coef: np.ndarray  # (2, K)

    def cost(self, counts: np.ndarray) -> np.ndarray:
        """(params, macs) of the compact model keeping ``counts`` groups per GroupSet."""
        n = np.asarray(counts, dtype=np.float64)
        out = self.const + self.lin @ n
        if self.quad_coef.shape[1]:
            out = out + self.quad_coef @ (n[self.quad_i] * n[self.quad_j])
        return out

    def dense(self) -> np.ndarray:
        return self.cost(self.sizes)

    def counts(self, masks: Masks) -> np.ndarray:
        return np.array([int(masks[name].sum()) for name in self.names], dtype=np.float64)

    def marginal(self, counts: np.ndarray) -> np.ndarray:
        """(2, L): what one more group of each GroupSet costs at ``counts``."""
        out = self.lin.copy()
        n = np.asarray(counts, dtype=np.float64)
        for k in range(len(self.quad_i)):
            i, j = self.quad_i[k], self.quad_j[k]
            out[:, i] += self.quad_coef[:, k] * n[j]
            out[:, j] += self.quad_coef[:, k] * n[i]
        return out


def _owners(model: nn.Module, groupsets: list[GroupSet]) -> dict[tuple[str, int], tuple[int, int]]:
    """{(parameter, dim): (GroupSet index, entries per group along dim)} for every cut dimension."""
    owners = {}
    for i, gs in enumerate(groupsets):
        for sl in gs.slices:
            owners[(sl.param, sl.dim)] = (i, sl.width * sl.tile)
    for name, _ in model.named_parameters():
        module, _, leaf = name.rpartition(".")
        weight = f"{module}.weight" if module else "weight"
        # a conv's bias is cut with its filters even where the GroupSet does not list it (compact.py does the same)
        if leaf == "bias" and (name, 0) not in owners and (weight, 0) in owners:
            owners[(name, 0)] = owners[(weight, 0)]
    return owners


def build_cost_model(
    model: nn.Module, groupsets: list[GroupSet], shape: tuple[int, int, int] | None = None
) -> CostModel:
    """The closed-form cost of ``model``'s compact versions, calibrated on one counted dense pass.

    One forward pass (under the same counter as :func:`prunebench.models.cost.count_macs`, on one
    image of ``shape``, (C, H, W); default :func:`prunebench.models.cost.input_shape`) gives every Linear/Conv2d's output positions per image and the dense MACs;
    whatever the counter counts beyond those layers and the attention matmuls of pruned heads does
    not depend on the kept groups and goes into the constant.
    """
    from prunebench.models.cost import count_macs, input_shape

    owners = _owners(model, groupsets)
    modules = dict(model.named_modules())
    for (param, _), _ in owners.items():
        module = modules[param.rpartition(".")[0]]
        if not isinstance(module, _COSTED + _PARAM_ONLY):
            raise NotImplementedError(f"the cost of pruning {type(module).__name__} ({param}) is not modelled")
    positions: dict[str, int] = {}

    def record(name):
        def hook(module, inputs, output):
            channels = output.shape[1] if isinstance(module, nn.Conv2d) else output.shape[-1]
            positions[name] = positions.get(name, 0) + output.numel() // channels

        return hook

    handles = [m.register_forward_hook(record(n)) for n, m in modules.items() if isinstance(m, _COSTED)]
    try:
        counted = count_macs(model, shape or input_shape(model, {}))
    finally:
        for h in handles:
            h.remove()

    L = len(groupsets)
    const, lin, quad = np.zeros(2), np.zeros((2, L)), {}

    def add(q: int, coef: float, cut: list[int]) -> None:
        if not cut:
            const[q] += coef
        elif len(cut) == 1:
            lin[q, cut[0]] += coef
        elif len(cut) == 2:
            key = tuple(sorted(cut))
            quad.setdefault(key, np.zeros(2))[q] += coef
        else:
            raise NotImplementedError("a tensor cut by more than two pruned layers is not modelled")

    for name, p in model.named_parameters():
        coef, cut = 1.0, []
        for dim, size in enumerate(p.shape):
            if (name, dim) in owners:
                i, per_group = owners[(name, dim)]
                coef *= per_group
                cut.append(i)
            else:
                coef *= size
        add(0, coef, cut)
        module, _, leaf = name.rpartition(".")
        if leaf == "weight" and module in positions:
            add(1, coef * positions[module], cut)
    for i, gs in enumerate(groupsets):
        if gs.kind == "head":
            attn = gs.slices[0].param.removesuffix(".qkv.weight")
            tokens = positions[f"{attn}.qkv"]
            lin[1, i] += 2 * tokens * tokens * modules[attn].head_dim  # q @ k^T and attn @ v per head
    keys = sorted(quad)
    model_ = CostModel(
        names=[gs.name for gs in groupsets],
        sizes=np.array([gs.size for gs in groupsets], dtype=np.float64),
        const=const,
        lin=lin,
        quad_i=np.array([k[0] for k in keys], dtype=np.int64),
        quad_j=np.array([k[1] for k in keys], dtype=np.int64),
        quad_coef=np.stack([quad[k] for k in keys], axis=1) if keys else np.zeros((2, 0)),
    )
    model_.const[1] += counted - model_.dense()[1]  # patch embedding, classifier, unpruned attention...
    return model_


_CACHE: dict[tuple, CostModel] = {}


def cost_model_of(model: nn.Module, groupsets: list[GroupSet], shape: tuple[int, int, int] | None = None) -> CostModel:
    """:func:`build_cost_model`, once per architecture: the cost depends on the shapes only, not on the
    weights, so the states of a chain share one counted forward pass (0.8 s for ViT-S at 224 px on a CPU)."""
    shapes = tuple((name, tuple(p.shape)) for name, p in model.named_parameters())
    key = (type(model).__qualname__, shapes, tuple((gs.name, gs.size) for gs in groupsets), shape)
    if key not in _CACHE:
        if len(_CACHE) >= 8:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = build_cost_model(model, groupsets, shape)
    return _CACHE[key]


# --- removal order --------------------------------------------------------------------------------


@dataclass
class Unit:
    """Groups of one layer removed together (one group, or a ``round_to`` multiple)."""

    layer: int
    indices: list[int]
    key: tuple  # removal order: ascending


def _layer_units(gs: GroupSet, score: torch.Tensor, live: torch.Tensor, round_to: int) -> list[tuple[list[int], float]]:
    """A layer's removable groups, worst first, cut into removal units, each with its mean score.

    The layer's best live group (its best ``round_to`` multiple) is never removable, and with
    ``round_to`` the counts stay multiples of it, as :func:`ranking.round_widths` does.
    """
    s, alive = score.tolist(), live.tolist()
    order = sorted((i for i in range(gs.size) if alive[i]), key=lambda i: (s[i], -i))  # worst first
    step = round_to // math.gcd(round_to, gs.slices[0].width) if round_to > 1 else 1
    n = len(order)
    floor = min(n, step)
    removable = order[: n - floor]
    units, start = [], 0
    first = (n - floor) % step
    sizes = ([first] if first else []) + [step] * ((n - floor - first) // step)
    for size in sizes:
        chunk = removable[start : start + size]
        units.append((chunk, sum(s[i] for i in chunk) / size))
        start += size
    return units


def removal_order(
    ranking: str, groupsets: list[GroupSet], scores: dict[str, torch.Tensor], prev: Masks, round_to: int = 1
) -> list[Unit]:
    """The live groups in the order a cost budget removes them (worst first; floors never listed).

    ``layerwise``: every layer shrinks towards the same kept fraction of its size (a unit leaves
    when the fraction passes the midpoint of its before/after counts). ``global``: the same within
    each kind's pool, the groups of a pool ranked by score across layers. ``mixed``: one pool
    ordered by the (comparable) scores.
    """
    per_layer = [_layer_units(gs, scores[gs.name], prev[gs.name].cpu(), round_to) for gs in groupsets]
    units: list[Unit] = []
    if ranking == "mixed":
        for i, (gs, lu) in enumerate(zip(groupsets, per_layer)):
            units += [Unit(i, idx, (s, gs.name, c)) for c, (idx, s) in enumerate(lu)]
    elif ranking in ("layerwise", "global"):
        pools = {}
        for i, gs in enumerate(groupsets):
            pools.setdefault(gs.name if ranking == "layerwise" else gs.kind, []).append(i)
        for members in pools.values():
            total = sum(groupsets[i].size for i in members)
            kept = sum(int(prev[groupsets[i].name].sum()) for i in members)
            pool = [(s, groupsets[i].name, c, i, idx) for i in members for c, (idx, s) in enumerate(per_layer[i])]
            for _, name, c, i, idx in sorted(pool, key=lambda u: u[:3]):
                # the pool's kept fraction at which this unit goes: removed in descending order of it
                units.append(Unit(i, idx, (-(kept - len(idx) / 2) / total, name, c)))
                kept -= len(idx)
    else:
        raise ValueError(f"unknown ranking {ranking!r}")
    return sorted(units, key=lambda u: u.key)


def fit_cost(
    cost_model: CostModel,
    quantity: str,
    units: list[Unit],
    prev: Masks,
    target: float,
    tolerance: float = 0.005,
    max_extra: int = 16,
) -> tuple[Masks, np.ndarray]:
    """Masks whose ``quantity`` cost is at most ``target`` and as close to it as the removal units allow.

    1. Remove the shortest prefix of ``units`` that brings the cost to ``target`` or below.
    2. Put back removed units, best first, wherever they still fit (per layer only its best removed
       unit can come back, so every layer keeps its best groups).
    3. While the cost is more than ``tolerance`` of the dense quantity under the target (a small
       model whose groups each cost more than that), try removing up to ``max_extra`` more units
       from any one layer and filling the other layers again as in 2; keep the best such exchange
       while it gets closer.

    Returns the masks and their (params, macs).
    """
    q = QUANTITIES.index(quantity)
    dense = cost_model.dense()[q]
    live = cost_model.counts(prev)
    L = len(live)
    by_layer: list[list[int]] = [[] for _ in range(L)]  # unit indices of each layer, in removal order
    for k, u in enumerate(units):
        by_layer[u.layer].append(k)
    removed_size = [np.concatenate([[0.0], np.cumsum([len(units[k].indices) for k in ks])]) for ks in by_layer]

    def counts_of(r: list[int]) -> np.ndarray:
        return live - np.array([removed_size[i][r[i]] for i in range(L)])

    def cost_of(r: list[int]) -> float:
        return float(cost_model.cost(counts_of(r))[q])

    layer_of = np.array([u.layer for u in units], dtype=np.int64)

    def prefix(k: int) -> list[int]:
        return np.bincount(layer_of[:k], minlength=L).tolist()

    if cost_of([len(ks) for ks in by_layer]) > target:
        floor = cost_of([len(ks) for ks in by_layer]) / dense
        raise ConfigError(
            f"a {quantity} budget of {target / dense:.2%} of the dense model is out of reach: the unprunable "
            f"layers and the groups every layer must keep already cost {floor:.2%}; set "
            f"prune.target_sparsity to at most {math.floor((1 - floor) * 1e4) / 1e4:.4f}"
        )
    lo, hi = 0, len(units)
    while lo < hi:  # the shortest prefix that fits
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if cost_of(prefix(mid)) <= target else (mid + 1, hi)

    def fill(r: list[int], frozen: int = -1) -> list[int]:
        r = list(r)
        # the best removed unit of each layer (but ``frozen``), best (latest removed) first
        tops = [(-by_layer[i][r[i] - 1], i) for i in range(L) if r[i] > 0 and i != frozen]
        heapq.heapify(tops)
        while tops:
            _, i = heapq.heappop(tops)
            r[i] -= 1
            if cost_of(r) > target:
                r[i] += 1  # the layer's best removed unit does not fit: nor will its worse ones
            elif r[i] > 0:
                heapq.heappush(tops, (-by_layer[i][r[i] - 1], i))
        return r

    r = fill(prefix(hi))
    best = cost_of(r)
    for _ in range(4 * L):
        if target - best <= tolerance * dense:
            break
        trials = [
            fill([*r[:i], r[i] + j, *r[i + 1 :]], frozen=i)
            for i in range(L)
            for j in range(1, min(len(by_layer[i]) - r[i], max_extra) + 1)
        ]
        better = max(trials, key=cost_of, default=None)
        if better is None or cost_of(better) <= best:
            break
        r, best = better, cost_of(better)
    keep = {name: prev[name].cpu().clone().bool() for name in cost_model.names}
    for i, name in enumerate(cost_model.names):
        gone = [g for k in by_layer[i][: r[i]] for g in units[k].indices]
        keep[name][gone] = False
    return keep, cost_model.cost(counts_of(r))


# --- the state's selection ----------------------------------------------------------------------


def state_scores(
    model: nn.Module, groupsets: list[GroupSet], prev: Masks, prune_cfg: dict, *, batches=None, rng=None
) -> dict[str, torch.Tensor]:
    """Each live group's score for the state: random (``rng``), Taylor, or magnitude (scale-fair for mixed,
    normalised per layer for global: :func:`prunebench.pruning.importance.layer_normalised`).

    Taylor scores are left as they are: a loss change is one unit in every layer, and rescaling a layer
    without changing the network's function leaves them unchanged."""
    if rng is not None:
        return random_scores(groupsets, rng)
    importance = prune_cfg.get("importance", "l1")
    if importance == "taylor":
        return taylor_scores(model, groupsets, batches, int(prune_cfg.get("taylor_batches", 4)))
    if prune_cfg.get("ranking") == "mixed":
        return scale_fair_scores(model, groupsets, prev, importance)
    scores = magnitude_scores(model, groupsets, importance)
    if prune_cfg.get("ranking", "global") == "global":
        return layer_normalised(scores, prev)
    return scores


def choose_masks(
    model: nn.Module,
    groupsets: list[GroupSet],
    prev: Masks,
    prune_cfg: dict,
    state: int,
    *,
    batches=None,
    rng: torch.Generator | None = None,
    img_size: int | None = None,
) -> tuple[float, Masks]:
    """The state's target (fraction of the budget's dense quantity kept) and the masks that meet it.

    Groups are scored on the model's current weights (``batches``: an iterable of (images, labels)
    on the model's device, for ``importance: taylor``; ``rng``: a CPU torch.Generator whose random
    scores replace the importance, the ``random`` baseline), and only groups alive in ``prev`` can
    be kept. Costs are counted at the model's input size (``img_size``: a CNN's training resolution,
    32 when None; a ViT's own). In a mixed pool, Taylor scores (a loss change, extensive) are divided by the group's
    cost in the budget's unit, the greedy knapsack's value per cost; magnitudes are already per
    parameter (:func:`prunebench.pruning.importance.scale_fair_scores`).
    """
    prev = {k: v.cpu().bool() for k, v in prev.items()}
    target = density_at(state, prune_cfg["states"], prune_cfg["target_sparsity"], prune_cfg["schedule"])
    budget = prune_cfg.get("budget") or default_budget(prune_cfg.get("groups", []))
    ranking = prune_cfg.get("ranking", "global")
    round_to = int(prune_cfg.get("round_to", 1) or 1)
    if budget not in BUDGETS:
        raise ValueError(f"unknown prune.budget {budget!r}; choose one of {', '.join(BUDGETS)}")
    scores = state_scores(model, groupsets, prev, prune_cfg, batches=batches, rng=rng)
    if budget == "groups":
        costs = {gs.name: group_costs(model, gs) for gs in groupsets} if ranking == "mixed" else None
        if costs and prune_cfg.get("importance") == "taylor" and rng is None:
            scores = {name: s / costs[name] for name, s in scores.items()}  # loss per parameter kept
        keep = select(ranking, groupsets, scores, prev, target, costs)
        if round_to > 1:
            keep = round_widths(groupsets, scores, prev, keep, round_to)
        return target, keep
    from prunebench.models.cost import input_shape

    cost_model = cost_model_of(model, groupsets, input_shape(model, {"img_size": img_size}))
    q = QUANTITIES.index(budget)
    if ranking == "mixed" and prune_cfg.get("importance") == "taylor" and rng is None:
        per_group = np.maximum(cost_model.marginal(cost_model.counts(prev))[q], 1.0)
        scores = {gs.name: scores[gs.name] / float(per_group[i]) for i, gs in enumerate(groupsets)}  # loss per cost
    units = removal_order(ranking, groupsets, scores, prev, round_to)
    keep, _ = fit_cost(cost_model, budget, units, prev, target * cost_model.dense()[q])
    return target, keep
