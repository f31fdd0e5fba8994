"""REPrune's computations (Park et al., AAAI 2024): channel pruning by kernel representative selection.

The method's class, its hooks and settings are in :mod:`prunebench.pruning.reprune`.

REPrune trains and prunes concurrently. Every ``interval_epochs`` (dT) epochs until ``T_prune`` it

1. derives each layer's channel count from ONE global threshold on |BN gamma| (the threshold is the
   one that meets the budget, ``prune.budget``: a fraction of the prunable channels, or of the
   dense model's parameters or MACs, counted exactly on the compact model; a share of
   ``prune.target_sparsity`` ramping up over the events, the last event pruning all of it, or all
   of it from the first event; every layer keeps at least ``min_layer_density`` of its channels);
2. clusters, for every input channel of the layer's conv, the kernels of the live filters with
   agglomerative clustering (scipy's ``linkage``: ward, single, complete or average);
3. cuts all of the layer's dendrograms at one height: the largest of the per-channel merge costs
   that bring each channel down to the target number of clusters;
4. picks filters greedily, each time the one that covers the most still-uncovered clusters (ties
   broken by the filter's L1 norm, then its index, so runs are deterministic), until the layer's
   channel count is reached; the other filters are masked;
5. optionally regrows (keeps) a cosine-decaying fraction of the just-dropped filters, those of
   largest L1 norm (CHEX style; zero at the last event). Masked weights are zeroed, so only filters that
   were alive before the event can come back, and masks stay nested.

After ``T_prune`` the architecture is frozen: the run trains on with fixed masks.

Mapping onto the state chain. The concurrent run is the whole chain: state 0 trains
``state0_epochs`` (or ``epochs``), every later state ``epochs``, and global epoch g of state k is
``offset(k) + e`` (e = 1.. the state's epochs; offset(0) = 0, offset(k) = E0 + (k-1) E). The total is
E_total = E0 + (S-1) E and ``T_prune = round(prune_until * E_total)``. After every g trained epochs
with g a multiple of dT, g <= T_prune and g < E_total, a pruning event happens at the START of global
epoch g + 1, before it trains: every architecture trains at least one epoch before it is evaluated,
so no reported accuracy (a state's best or final) is of a just-pruned model, and a state's best is
chosen among the epochs after its last event. The pruned model is evaluated once right after each
event, before it trains again: its accuracy is logged on the event's epoch row as
``after_prune_val_acc`` / ``after_prune_test_acc`` (and in the event's ``after_prune``), the damage
the event did, as RSST logs its model just before its hard mask. The learning-rate schedule spans E_total (one warmup,
one decay), as in a single run.
The masks live in the state checkpoints and in the per-epoch resume checkpoint, so a crash loses at
most the epochs since the last finished one, and a finished state is never redone. The optimizer
(its momentum) starts afresh at each state, as for every method.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.cluster.hierarchy import fcluster, linkage
from torch import nn

from prunebench.pruning.budget import QUANTITIES, cost_model_of
from prunebench.pruning.groups import GroupSet, Masks
from prunebench.pruning.schedule import budget_kind, chain_epochs, state_epochs

LINKAGES = ("ward", "single", "complete", "average")
log = logging.getLogger("prunebench")


# --- 1. per-layer channel counts from |BN gamma| -------------------------------------------------


def _chain(model: nn.Module) -> dict[str, tuple[str, str]]:
    return {conv: (bn, consumer) for conv, bn, consumer in model.channel_chain()}


def bn_gammas(model: nn.Module, groupsets: list[GroupSet]) -> dict[str, torch.Tensor]:
    """|gamma| of the BN that follows each prunable conv (its channels' scales), float64 on the CPU."""
    chain = _chain(model)
    return {gs.name: model.get_submodule(chain[gs.layer][0]).weight.detach().abs().double().cpu() for gs in groupsets}


class ChannelCost:
    """The exact cost of the compact model for given channel counts per layer: MACs per image
    (``kind="macs"``, as PyTorch's flop counter counts the slimmed model) or parameters
    (``kind="params"``), read off the budget's closed-form :class:`~prunebench.pruning.budget.CostModel`
    (the one every method's budget uses) at ``img_size``; chains of prunable convs are counted
    once, not per channel."""

    def __init__(self, model: nn.Module, groupsets: list[GroupSet], img_size: int, kind: str):
        if kind not in QUANTITIES:
            raise ValueError(f"unknown cost kind {kind!r}; choose macs or params")
        self.model = cost_model_of(model, groupsets, (3, img_size, img_size))
        self.row = QUANTITIES.index(kind)
        self.total = self.cost({gs.name: gs.size for gs in groupsets})

    def cost(self, keep: dict[str, int]) -> int:
        """Cost of the model that keeps ``keep[name]`` channels of every GroupSet."""
        return round(self.model.cost([keep[name] for name in self.model.names])[self.row])

    def saving(self, keep: dict[str, int], name: str) -> int:
        """What removing one more channel of ``name`` saves, given the current counts."""
        return self.cost(keep) - self.cost({**keep, name: keep[name] - 1})


def layer_keep_counts(
    gammas: dict[str, torch.Tensor],
    masks: Masks,
    *,
    channel_sparsity: float | None = None,
    cost: ChannelCost | None = None,
    reduction: float | None = None,
    min_keep: dict[str, int] | None = None,
) -> dict[str, int]:
    """Channels each layer keeps under one global |gamma| threshold.

    Channels are removed in order of |gamma| (already-masked channels first), until either
    ``channel_sparsity`` of all prunable channels are gone, or the removed channels' ``cost`` (MACs
    or parameters, counted exactly) reaches ``reduction`` of the dense model's, so that the kept cost
    ends at or under the target as for every method's budget: near the target a channel whose
    removal would overshoot it by more than it leaves missing is passed over for a cheaper one
    further down the order, and a shortfall left at the end is closed by the one channel that covers
    it most closely. A layer keeps at least ``min_keep[layer]`` channels (default 1): a global threshold alone can empty a layer whose BN
    scales happen to be small, which disconnects a plain CNN.
    """
    floor = {name: max(1, (min_keep or {}).get(name, 1)) for name in gammas}
    if (channel_sparsity is None) == (reduction is None) or (reduction is not None and cost is None):
        raise ValueError("give either channel_sparsity, or cost and reduction")
    order = sorted((bool(masks[name][i]), float(g[i]), name, i) for name, g in gammas.items() for i in range(len(g)))
    keep = {name: len(g) for name, g in gammas.items()}
    if channel_sparsity is not None:
        budget = int(math.floor(channel_sparsity * len(order) + 0.5))
        removed = 0
        for _, _, name, _ in order:
            if removed >= budget:
                break
            if keep[name] > floor[name]:
                keep[name] -= 1
                removed += 1
        return keep
    target, saved = reduction * cost.total, 0
    for _, _, name, _ in order:
        if saved >= target:
            break
        if keep[name] > floor[name]:
            step = cost.saving(keep, name)
            if saved + step - target > target - saved:
                continue  # overshoots by more than it closes: a cheaper channel may fit
            keep[name] -= 1
            saved += step
    # The kept cost ends at or under the target, as every method's budget does (pruning.budget):
    # while short of it, one more channel from the layer whose channel covers the rest most closely.
    while saved < target:
        steps = {name: cost.saving(keep, name) for name in keep if keep[name] > floor[name]}
        if not steps:
            break
        reaching = {name: s for name, s in steps.items() if saved + s >= target}
        name = min(reaching, key=reaching.get) if reaching else max(steps, key=steps.get)
        keep[name] -= 1
        saved += steps[name]
    return keep


# --- 2-4. clustering, cut height, greedy maximum coverage ----------------------------------------


def cluster_kernels(weight: torch.Tensor, alive: torch.Tensor, n_clusters: int, method: str = "ward") -> np.ndarray:
    """Cluster labels (input channel x live filter) of a conv's kernels, cut at the layer's height.

    For every input channel j, the kernels W[i, j] of the live filters i are clustered; the height
    h_j that leaves exactly ``n_clusters`` clusters is the cost of the last merge needed, and every
    channel's dendrogram is cut at h = max_j h_j (so no channel keeps more than ``n_clusters``).
    """
    if method not in LINKAGES:
        raise ValueError(f"unknown linkage {method!r}; choose one of {', '.join(LINKAGES)}")
    w = weight.detach().double().cpu()[alive.cpu()]  # (live, in, kh, kw)
    live, in_ch = w.shape[0], w.shape[1]
    if n_clusters >= live or live < 2:
        return np.tile(np.arange(live), (in_ch, 1))
    kernels = w.reshape(live, in_ch, -1).permute(1, 0, 2).numpy()  # (in, live, kh*kw)
    trees = [linkage(k, method=method) for k in kernels]
    merges = live - n_clusters  # merges that leave n_clusters clusters
    height = max(float(z[merges - 1, 2]) for z in trees)
    return np.stack([fcluster(z, t=height, criterion="distance") for z in trees]) - 1


def greedy_coverage(labels: np.ndarray, n_keep: int, norms: torch.Tensor) -> tuple[list[int], float]:
    """Filters (column indices of ``labels``) chosen greedily to cover the most (channel, cluster) pairs.

    Each step takes the filter covering the most uncovered clusters; ties go to the larger L1 norm,
    then the lower index. Returns the chosen indices and the coverage rate (covered / all clusters).
    """
    in_ch, n = labels.shape
    covered = np.zeros((in_ch, int(labels.max()) + 1 if labels.size else 0), dtype=bool)
    total = sum(len(np.unique(row)) for row in labels)
    rows = np.arange(in_ch)
    norms = [float(v) for v in norms]
    chosen: list[int] = []
    left = set(range(n))
    for _ in range(min(n_keep, n)):
        # a filter covers one cluster per input channel: count those not covered yet
        gains = (~covered[rows[:, None], labels]).sum(axis=0)
        best = max(left, key=lambda i: (int(gains[i]), norms[i], -i))
        covered[rows, labels[:, best]] = True
        chosen.append(best)
        left.remove(best)
    return sorted(chosen), (float(covered.sum()) / total if total else 1.0)


def ramp_fraction(epoch: int, prune_until: int, ramp: str) -> float:
    """Share of the final budget pruned by an event at ``epoch``: all of it (constant), or growing
    linearly or cubically (Zhu & Gupta) to all of it at T_prune, for progressive pruning."""
    if ramp == "constant" or prune_until <= 0:
        return 1.0
    u = min(1.0, epoch / prune_until)
    if ramp == "linear":
        return u
    if ramp == "cubic":
        return 1.0 - (1.0 - u) ** 3
    raise ValueError(f"unknown reprune ramp {ramp!r}; choose constant, linear or cubic")


def regrow_fraction(epoch: int, prune_until: int, regrowth: float) -> float:
    """CHEX-style cosine decay of the regrown fraction: ``regrowth`` at epoch 0, 0 at T_prune."""
    if prune_until <= 0:
        return 0.0
    return regrowth * 0.5 * (1.0 + math.cos(math.pi * min(epoch, prune_until) / prune_until))


@dataclass
class LayerResult:
    keep: torch.Tensor  # bool per channel
    target: int  # channels the |gamma| threshold leaves the layer
    regrown: int
    coverage: float


def select_layer(weight: torch.Tensor, alive: torch.Tensor, n_keep: int, method: str, regrow: float) -> LayerResult:
    """One layer's pruning event: cluster, cover, regrow. ``weight`` is the conv's (out, in, kh, kw)."""
    idx = torch.nonzero(alive.cpu()).flatten()
    n_keep = max(1, min(n_keep, len(idx)))
    labels = cluster_kernels(weight, alive, n_keep, method)
    norms = weight.detach().abs().double().cpu()[idx].flatten(1).sum(1)
    chosen, coverage = greedy_coverage(labels, n_keep, norms)
    dropped = sorted(set(range(len(idx))) - set(chosen), key=lambda i: (-float(norms[i]), i))
    n_regrow = int(math.floor(regrow * len(dropped) + 0.5))
    keep = torch.zeros_like(alive, dtype=torch.bool, device="cpu")
    keep[idx[chosen + dropped[:n_regrow]]] = True
    return LayerResult(keep, n_keep, n_regrow, coverage)


# --- the schedule over the state chain -----------------------------------------------------------


class REPruneRun:
    """REPrune's concurrent schedule for one experiment, and its pruning events."""

    def __init__(self, experiment: dict, groupsets: list[GroupSet]):
        if not groupsets or any(gs.kind != "channel" for gs in groupsets):
            raise ValueError(
                f"reprune prunes CNN channels, but {experiment['name']} has no prunable channels "
                f"(model {experiment['model']['arch']}, prune.groups {experiment['prune']['groups']}); "
                "use a CNN with `channels` in prune.groups"
            )
        self.cfg = experiment["reprune"]
        self.kind = budget_kind(experiment["prune"])
        self.sparsity = experiment["prune"]["target_sparsity"]
        self.groupsets = groupsets
        self.state_epochs = [state_epochs(experiment, k) for k in range(experiment["prune"]["states"])]
        self.total_epochs = chain_epochs(experiment)
        self.prune_until = int(round(self.cfg["prune_until"] * self.total_epochs))
        dt = self.cfg["interval_epochs"]
        # an event after every dT trained epochs up to T_prune, at the start of the next epoch, so
        # that every pruned architecture trains at least one epoch before it is evaluated
        self.event_starts = [g + 1 for g in range(dt, self.prune_until + 1, dt) if g < self.total_epochs]
        self.last_event = self.event_starts[-1] - 1 if self.event_starts else 0  # trained epochs before it

    def offset(self, state: int) -> int:
        """Global epochs finished before ``state`` starts."""
        return sum(self.state_epochs[:state])

    def is_event(self, global_epoch: int) -> bool:
        """Whether the start of ``global_epoch`` (1-based over the chain) carries a pruning event."""
        return global_epoch in self.event_starts

    def share(self, global_epoch: int) -> float:
        """Share of the final budget of the event at the start of ``global_epoch``: the ramp over the
        events, so the last one prunes the whole budget whatever dT and T_prune."""
        return ramp_fraction(global_epoch - 1, self.last_event, self.cfg["ramp"])

    def target_at(self, global_epoch: int) -> float:
        """Fraction of the budget's dense quantity kept by the latest event at or before the start of ``global_epoch``."""
        done = [e for e in self.event_starts if e <= global_epoch]
        return 1.0 - self.sparsity * self.share(done[-1]) if done else 1.0

    def prune(self, model: nn.Module, masks: Masks, global_epoch: int, img_size: int) -> tuple[Masks, dict]:
        """One pruning event on the model's current weights: new masks and per-layer statistics."""
        masks = {k: v.cpu() for k, v in masks.items()}
        gammas = bn_gammas(model, self.groupsets)
        share = self.share(global_epoch)
        floor = {gs.name: math.ceil(self.cfg["min_layer_density"] * gs.size) for gs in self.groupsets}
        cost = None
        if self.kind == "groups":
            counts = layer_keep_counts(gammas, masks, channel_sparsity=share * self.sparsity, min_keep=floor)
        else:
            cost = ChannelCost(model, self.groupsets, img_size, self.kind)
            counts = layer_keep_counts(gammas, masks, cost=cost, reduction=share * self.sparsity, min_keep=floor)
        regrow = regrow_fraction(global_epoch - 1, self.last_event, self.cfg["regrowth"])
        new, layers = {}, {}
        for gs in self.groupsets:
            weight = model.get_submodule(gs.layer).weight
            res = select_layer(weight, masks[gs.name], counts[gs.name], self.cfg["linkage"], regrow)
            new[gs.name] = res.keep
            layers[gs.layer] = {
                "kept": int(res.keep.sum()),
                "target": res.target,
                "regrown": res.regrown,
                "coverage": res.coverage,
            }
        kept = {gs.name: int(new[gs.name].sum()) for gs in self.groupsets}
        if cost is None:
            reached = sum(kept.values()) / sum(gs.size for gs in self.groupsets)
        else:
            reached = cost.cost(kept) / cost.total
        coverage = sum(v["coverage"] for v in layers.values()) / len(layers)
        stats = {
            "epoch": global_epoch,
            "budget_share": share,
            "target": 1.0 - share * self.sparsity,  # fraction of the budget's dense quantity to keep
            "reached": reached,  # what the event's masks keep of it, counted exactly
            "regrow_fraction": regrow,
            "coverage": coverage,
        }
        return new, {**stats, "layers": layers}

    def state_summary(self, state: int, rows: list[dict]) -> dict:
        """The schedule and this state's pruning events (with per-layer coverage), for summary.json."""
        start = self.offset(state)
        end = start + self.state_epochs[state]
        return {
            "linkage": self.cfg["linkage"],
            "budget": self.kind,
            "total_epochs": self.total_epochs,
            "prune_until": self.prune_until,
            "interval_epochs": self.cfg["interval_epochs"],
            "global_epochs": [start + 1, end],
            "frozen": not any(e > end for e in self.event_starts),  # no event after this state
            "events": [r["reprune_event"] for r in rows if r.get("reprune_event")],
        }
