"""REPrune (Park et al., AAAI 2024): channel pruning by kernel representative selection.

REPrune trains and prunes concurrently. Every ``interval_epochs`` (dT) epochs until ``T_prune`` it

1. derives each layer's channel count from ONE global threshold on |BN gamma| (the threshold is the
   one that meets the budget: a fraction of prunable channels, or of the dense model's MACs; the
   whole budget from the first event, or a share ramping up to it at T_prune; every layer keeps at
   least ``min_layer_density`` of its channels);
2. clusters, for every input channel of the layer's conv, the kernels of the live filters with
   agglomerative clustering (scipy's ``linkage``: ward, single, complete or average);
3. cuts all of the layer's dendrograms at one height: the largest of the per-channel merge costs
   that bring each channel down to the target number of clusters;
4. picks filters greedily, each time the one that covers the most still-uncovered clusters (ties
   broken by the filter's L1 norm, then its index, so runs are deterministic), until the layer's
   channel count is reached; the other filters are masked;
5. optionally regrows (keeps) a cosine-decaying fraction of the just-dropped filters, those of
   largest L1 norm (CHEX style; zero at T_prune). Masked weights are zeroed, so only filters that
   were alive before the event can come back, and masks stay nested.

After ``T_prune`` the architecture is frozen: the run trains on with fixed masks.

Mapping onto the state chain. The concurrent run is the whole chain: state 0 trains
``state0_epochs`` (or ``epochs``), every later state ``epochs``, and global epoch g of state k is
``offset(k) + e`` (e = 1.. the state's epochs; offset(0) = 0, offset(k) = E0 + (k-1) E). The total is
E_total = E0 + (S-1) E, ``T_prune = round(prune_until * E_total)``, and a pruning event happens at
the end of every global epoch g that is a multiple of dT with g <= T_prune, before that epoch's
evaluation. The learning-rate schedule spans E_total (one warmup, one decay), as in a single run.
The masks live in the state checkpoints and in the per-epoch resume checkpoint, so a crash loses at
most the epochs since the last finished one, and a finished state is never redone. The optimizer
(its momentum) starts afresh at each state, as for every method.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.cluster.hierarchy import fcluster, linkage
from torch import nn

from prunebench.config import chain_epochs, state_epochs
from prunebench.pruning.groups import GroupSet, Masks

LINKAGES = ("ward", "single", "complete", "average")


# --- 1. per-layer channel counts from |BN gamma| -------------------------------------------------


def _chain(model: nn.Module) -> dict[str, tuple[str, str]]:
    return {conv: (bn, consumer) for conv, bn, consumer in model.channel_chain()}


def bn_gammas(model: nn.Module, groupsets: list[GroupSet]) -> dict[str, torch.Tensor]:
    """|gamma| of the BN that follows each prunable conv (its channels' scales), float64 on the CPU."""
    chain = _chain(model)
    return {gs.name: model.get_submodule(chain[gs.layer][0]).weight.detach().abs().double().cpu() for gs in groupsets}


def channel_macs(model: nn.Module, groupsets: list[GroupSet], img_size: int) -> tuple[dict[str, int], int]:
    """MACs per image one channel of each GroupSet costs (its filter plus the consumer's input slice),
    and the dense model's total MACs of its convs and linear layers, from one forward pass."""
    out_hw: dict[str, int] = {}
    total = 0

    def hook(name):
        def record(module, inputs, output):
            nonlocal total
            spatial = output[0, 0].numel() if output.dim() == 4 else 1
            out_hw[name] = spatial
            per_out = module.weight[0].numel()  # (in / groups) * kh * kw, or in_features
            total += per_out * output.shape[1] * spatial

        return record

    handles = [
        m.register_forward_hook(hook(n)) for n, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)
    ]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            p = next(model.parameters())
            model(torch.zeros(1, 3, img_size, img_size, device=p.device, dtype=p.dtype))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    per_channel = {}
    chain = _chain(model)
    for gs in groupsets:
        conv, consumer = gs.layer, chain[gs.layer][1]
        w_conv = model.get_submodule(conv).weight
        w_cons = model.get_submodule(consumer).weight
        per_channel[gs.name] = w_conv[0].numel() * out_hw[conv] + w_cons[:, 0].numel() * out_hw[consumer]
    return per_channel, total


def layer_keep_counts(
    gammas: dict[str, torch.Tensor],
    masks: Masks,
    *,
    channel_sparsity: float | None = None,
    macs: tuple[dict[str, int], int] | None = None,
    macs_reduction: float | None = None,
    min_keep: dict[str, int] | None = None,
) -> dict[str, int]:
    """Channels each layer keeps under one global |gamma| threshold.

    Channels are removed in order of |gamma| (already-masked channels first), until either
    ``channel_sparsity`` of all prunable channels are gone or the removed channels' MACs reach
    ``macs_reduction`` of the dense model's total (``macs`` from :func:`channel_macs`). A layer
    keeps at least ``min_keep[layer]`` channels (default 1): a global threshold alone can empty a
    layer whose BN scales happen to be small, which disconnects a plain CNN. The threshold is the
    |gamma| of the last channel removed.
    """
    floor = {name: max(1, (min_keep or {}).get(name, 1)) for name in gammas}
    if (channel_sparsity is None) == (macs_reduction is None):
        raise ValueError("give exactly one of channel_sparsity and macs_reduction")
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
    per_channel, total = macs
    target, saved = macs_reduction * total, 0
    for _, _, name, _ in order:
        if saved >= target:
            break
        if keep[name] > floor[name]:
            keep[name] -= 1
            saved += per_channel[name]
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
        self.sparsity = experiment["prune"]["target_sparsity"]
        self.groupsets = groupsets
        self.state_epochs = [state_epochs(experiment, k) for k in range(experiment["prune"]["states"])]
        self.total_epochs = chain_epochs(experiment)
        self.prune_until = int(round(self.cfg["prune_until"] * self.total_epochs))

    def offset(self, state: int) -> int:
        """Global epochs finished before ``state`` starts."""
        return sum(self.state_epochs[:state])

    def is_event(self, global_epoch: int) -> bool:
        dt = self.cfg["interval_epochs"]
        return 0 < global_epoch <= self.prune_until and global_epoch % dt == 0

    def events(self) -> list[int]:
        return [g for g in range(1, self.total_epochs + 1) if self.is_event(g)]

    def prune(self, model: nn.Module, masks: Masks, global_epoch: int, img_size: int) -> tuple[Masks, dict]:
        """One pruning event on the model's current weights: new masks and per-layer statistics."""
        masks = {k: v.cpu() for k, v in masks.items()}
        gammas = bn_gammas(model, self.groupsets)
        share = ramp_fraction(global_epoch, self.prune_until, self.cfg["ramp"])
        floor = {gs.name: math.ceil(self.cfg["min_layer_density"] * gs.size) for gs in self.groupsets}
        if self.cfg["budget"] == "macs":
            macs = channel_macs(model, self.groupsets, img_size)
            reduction = share * self.cfg["macs_reduction"]
            counts = layer_keep_counts(gammas, masks, macs=macs, macs_reduction=reduction, min_keep=floor)
        else:
            counts = layer_keep_counts(gammas, masks, channel_sparsity=share * self.sparsity, min_keep=floor)
        regrow = regrow_fraction(global_epoch, self.prune_until, self.cfg["regrowth"])
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
        coverage = sum(v["coverage"] for v in layers.values()) / len(layers)
        stats = {"epoch": global_epoch, "budget_share": share, "regrow_fraction": regrow, "coverage": coverage}
        return new, {**stats, "layers": layers}

    def state_summary(self, state: int, rows: list[dict]) -> dict:
        """The schedule and this state's pruning events (with per-layer coverage), for summary.json."""
        start = self.offset(state)
        end = start + self.state_epochs[state]
        return {
            "linkage": self.cfg["linkage"],
            "total_epochs": self.total_epochs,
            "prune_until": self.prune_until,
            "interval_epochs": self.cfg["interval_epochs"],
            "global_epochs": [start + 1, end],
            "frozen": not any(g > end for g in self.events()),  # no event after this state
            "events": [r["reprune_event"] for r in rows if r.get("reprune_event")],
        }
