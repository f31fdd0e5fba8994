"""Slim training: build the compact model of what is alive, and map it back to the dense shape.

A state that trains under hard masks spends the dense model's compute on groups that are zero. Slim
training trains the physically narrowed model of the alive groups instead (the architecture of
:mod:`prunebench.models.widths`, filled with the kept slices of the dense tensors) and writes its
weights back into the dense-shaped model whenever the dense form is needed (checkpoints, a REPrune
event, RSST's hard mask). The same maps carry the optimizer state both ways.

What masked training (``train/loop.py``: masks re-applied to the gradients after backward and to
the weights after every optimizer step; the optimizer made afresh at each state's start, after the
masks were applied) does to a pruned group, and so what :func:`expand_model` writes there:

- its weights are zero at the state's start and stay zero: the gradient is masked to 0, SGD's weight
  decay adds ``wd * 0``, AdamW's decoupled decay multiplies 0, and its momentum / moments start at 0
  and stay 0; whatever the step would move is masked away again. ``expand_model`` zeroes them with
  the same multiply the loop uses;
- its optimizer state is exactly zero when the group was pruned before the optimizer's first step
  (every state's own masks). A group pruned later in the optimizer's life (RSST's hard mask, a
  REPrune event) keeps a momentum that decays by ``momentum`` (SGD) or ``beta1`` / ``beta2``
  (AdamW) per step in masked training; no weight ever reads it (the weight is masked after every
  step and masks only shrink within a state), so :func:`expand_optimizer_state` writes zeros there,
  or the values of a ``base`` state given to it;
- a pruned CNN channel (its conv has no bias, as in prunebench's CNNs) still runs through its
  BatchNorm as an exact zero input, so BN's running statistics of that channel decay by
  ``1 - momentum`` per training step (and ``num_batches_tracked`` counts on). ``expand_model``
  replays those updates through the same BN kernel, so a dense-shaped checkpoint written from a slim
  run equals the masked run's also there (checked on the CPU).

Slim training is exact (the same function, the same gradients of the alive weights, the same random
numbers) unless a random op draws per pruned entry: dropout on the attention matrix or on an MLP's
hidden layer changes how many random numbers each step draws. :func:`inexact_reasons` says so, and
such a run trains masked. The widths are the masks' kept counts exactly: nothing is rounded here
(``prune.round_to`` rounds the masks when it asks to).

The slicing core (:func:`kept_indices`, :func:`kept_index`, :func:`slice_state_dict`) is the one
``export/compact.py`` needs too: its ``_slice_indices``, ``_kept_index`` and ``slice_state_dict`` can
go, ``compact_model`` cutting with ``slice_state_dict(model.state_dict(), kept_indices(groupsets,
masks), compact.state_dict())`` (then ``.cpu().clone()`` per tensor, as it returns them now).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from prunebench.errors import ModelError
from prunebench.models.widths import apply_widths
from prunebench.pruning.groups import GroupSet, Masks, bind_masks, groupsets_of, kept_counts, param_masks

Index = dict[tuple[str, int], torch.Tensor]  # (state-dict key, dim) -> kept indices along that dim
Cuts = list[tuple[int, torch.Tensor]]  # (dim, kept indices) of one tensor, by increasing dim

# --- the slicing core (shared with export/compact.py) --------------------------------------------------


def kept_indices(groupsets: list[GroupSet], masks: Masks) -> Index:
    """{(state-dict key, dim): kept indices (CPU int64)} for every tensor a layer's groups cut through."""
    out = {}
    for gs in groupsets:
        for sl in gs.slices:
            keep = gs.element_mask(masks[gs.name].detach().cpu().bool(), sl)
            out[(sl.param, sl.dim)] = keep.nonzero().flatten()
    return out


def kept_index(key: str, dim: int, index: Index) -> torch.Tensor | None:
    """The kept indices of ``key`` along ``dim``; a module's bias and a BN's running statistics follow
    the module's weight along dim 0."""
    if (key, dim) in index:
        return index[(key, dim)]
    module, _, leaf = key.rpartition(".")
    if dim == 0 and leaf in ("bias", "running_mean", "running_var"):
        return index.get((f"{module}.weight", 0))
    return None


def tensor_cuts(key: str, shape: torch.Size | tuple[int, ...], index: Index) -> Cuts:
    """The dims along which ``key`` (of dense ``shape``) loses entries, with the kept indices."""
    cuts = []
    for dim in range(len(shape)):
        idx = kept_index(key, dim, index)
        if idx is not None and len(idx) != shape[dim]:
            cuts.append((dim, idx))
    return cuts


def slice_tensor(t: torch.Tensor, cuts: Cuts) -> torch.Tensor:
    """The kept part of ``t`` (a new tensor on ``t``'s device; ``t`` itself when nothing is cut)."""
    for dim, idx in cuts:
        t = t.index_select(dim, idx.to(t.device))
    return t


def expand_tensor_(dense: torch.Tensor, slim: torch.Tensor, cuts: Cuts) -> torch.Tensor:
    """Write ``slim`` into the kept entries of ``dense``, in place; the other entries are left as they are."""
    if not cuts:
        return dense.copy_(slim)
    (dim, idx), rest = cuts[0], cuts[1:]
    idx = idx.to(dense.device)
    if rest:  # a tensor cut along two dims (a conv that owns channels and consumes others'): slab by slab
        slab = dense.index_select(dim, idx)
        expand_tensor_(slab, slim, rest)
        slim = slab
    return dense.index_copy_(dim, idx, slim.to(dense.dtype))


def slice_state_dict(
    dense: dict[str, torch.Tensor], index: Index, target: dict[str, torch.Tensor] | None = None
) -> dict[str, torch.Tensor]:
    """Cut every tensor of a dense state dict down to the kept entries (on its own device, detached).

    With ``target`` (the compact model's state dict) only its keys are cut, and every result must
    have the target's shape (ModelError otherwise)."""
    out = {}
    for key in target if target is not None else dense:
        t = dense[key].detach()
        s = slice_tensor(t, tensor_cuts(key, t.shape, index))
        if target is not None and s.shape != target[key].shape:
            raise ModelError(f"cannot slim {key} from {tuple(t.shape)} to {tuple(target[key].shape)}")
        out[key] = s
    return out


# --- the slim model ---------------------------------------------------------------------------------


@dataclass
class Slimming:
    """How a dense model maps onto its slim model: the groups alive, and per tensor the kept indices.

    ``masks``: one bool per group (CPU) of every GroupSet slimmed, True = alive, in the slim model;
    ``cuts``: for every state-dict key that loses entries, its (dim, kept indices) by increasing dim;
    ``shapes``: the dense shape of every such key.
    """

    groupsets: list[GroupSet]
    masks: Masks
    widths: dict[str, dict[str, int]]
    cuts: dict[str, Cuts]
    shapes: dict[str, torch.Size]

    @property
    def narrows(self) -> bool:
        """Whether any tensor loses entries (False: every group is alive, the slim model is the dense one)."""
        return bool(self.cuts)

    def slim_shape(self, key: str) -> torch.Size:
        shape = list(self.shapes[key])
        for dim, idx in self.cuts[key]:
            shape[dim] = len(idx)
        return torch.Size(shape)

    def slim_tensor(self, key: str, dense: torch.Tensor) -> torch.Tensor:
        """The slim model's ``key`` cut from the dense model's tensor (a view: detach or copy it as needed)."""
        return slice_tensor(dense, self.cuts.get(key, []))

    def slim_masks(self, masks: Masks) -> Masks:
        """Per-group values of the dense model (masks, RSST's penalised groups) as the slim model indexes
        them: the entries of the alive groups, in order. Every GroupSet of ``masks`` must be slimmed here."""
        return {name: m[self.masks[name].to(m.device)] for name, m in masks.items()}

    def dense_masks(self, masks: Masks) -> Masks:
        """Per-group bool masks of the slim model as the dense model indexes them (False where pruned)."""
        out = {}
        for name, m in masks.items():
            alive = self.masks[name]
            full = torch.zeros(len(alive), dtype=torch.bool, device=m.device)
            full[alive.to(m.device)] = m.bool()
            out[name] = full
        return out


def plan_slimming(model: nn.Module, masks: Masks) -> Slimming:
    """The :class:`Slimming` of ``model`` (dense-shaped) under ``masks`` ({GroupSet name: bool per group})."""
    groupsets = [gs for gs in groupsets_of(model) if gs.name in masks]
    unknown = sorted(set(masks) - {gs.name for gs in groupsets})
    if unknown:
        raise ModelError(f"masks {unknown[:3]} name no prunable groups of {type(model).__name__}")
    masks = {gs.name: masks[gs.name].detach().cpu().bool() for gs in groupsets}
    index = kept_indices(groupsets, masks)
    cuts, shapes = {}, {}
    for key, t in model.state_dict().items():
        c = tensor_cuts(key, t.shape, index)
        if c:
            cuts[key], shapes[key] = c, t.shape
    return Slimming(groupsets, masks, kept_counts(groupsets, masks), cuts, shapes)


def _rng_devices(model: nn.Module) -> list[int]:
    devs = {p.device for p in model.parameters() if p.device.type == "cuda"}
    return sorted(d.index if d.index is not None else torch.cuda.current_device() for d in devs)


def inexact_reasons(model: nn.Module, slimming: Slimming) -> list[str]:
    """Why training ``slimming``'s slim model would not reproduce masked training step for step
    (an empty list: it does, up to float rounding). A random op whose draws scale with a pruned
    dimension (dropout on the attention matrix or the MLP's hidden layer) draws a different number of
    random numbers slim than masked, and every later draw shifts."""
    out = []
    for layer, kinds in slimming.widths.items():
        block = model.get_submodule(layer)
        if "head" in kinds and getattr(getattr(block, "attn", None), "attn_drop", None) is not None:
            p = getattr(block.attn.attn_drop, "p", 0.0)
            if p > 0 and kinds["head"] < block.attn.num_heads:
                out.append(f"{layer}: attention dropout ({p}) draws per head")
        if "neuron" in kinds and getattr(getattr(block, "mlp", None), "drop1", None) is not None:
            p = getattr(block.mlp.drop1, "p", 0.0)
            if p > 0 and kinds["neuron"] < block.mlp.fc1.out_features:
                out.append(f"{layer}: MLP hidden dropout ({p}) draws per neuron")
    return out


@torch.no_grad()
def slim_model(model: nn.Module, masks: Masks) -> tuple[nn.Module, Slimming]:
    """The slim model of ``model``'s groups alive under ``masks``, and the :class:`Slimming` that maps between them.

    The slim model is a copy of ``model`` with every layer narrowed to its alive groups and filled
    with their slices of the dense tensors (parameters and buffers, BN statistics included), on the
    same device and dtype, with the same train/eval modes and ``requires_grad`` flags; ``model`` is
    not changed. Building it draws no random number (the new layers' initialisation runs on a forked
    RNG), so a run goes on with the random stream masked training would see. The parameters keep
    ``model``'s order and names, so an optimizer built the same way indexes them alike.
    """
    slimming = plan_slimming(model, masks)
    with torch.random.fork_rng(devices=_rng_devices(model)):
        slim = apply_widths(copy.deepcopy(model), slimming.widths)
    modules = dict(model.named_modules())
    for name, m in slim.named_modules():
        m.training = modules[name].training
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    for n, p in slim.named_parameters():
        p.requires_grad_(flags[n])
    dense = model.state_dict()
    for key, t in slim.state_dict().items():
        t.copy_(slimming.slim_tensor(key, dense[key].detach()))
    return slim, slimming


def _replay_bn(model: nn.Module, slim: nn.Module, slimming: Slimming) -> None:
    """Decay the running statistics of every pruned BN channel as the training steps the slim model
    took (its ``num_batches_tracked`` minus the dense one's) would have with an exact zero input."""
    dense_bns = {n: m for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}
    slim_bns = dict(slim.named_modules())
    pending: dict[tuple, list] = {}  # (steps, start count, momentum, device, dtype) -> [(bn, pruned idx)]
    for name, bn in dense_bns.items():
        cuts = slimming.cuts.get(f"{name}.running_mean")
        if not cuts or not bn.track_running_stats or bn.running_mean is None:
            continue
        steps = int(slim_bns[name].num_batches_tracked) - int(bn.num_batches_tracked)
        if steps <= 0:
            continue
        keep = torch.zeros(bn.running_mean.shape[0], dtype=torch.bool)
        keep[cuts[0][1]] = True
        pruned = (~keep).nonzero().flatten().to(bn.running_mean.device)
        group = (steps, int(bn.num_batches_tracked), bn.momentum, bn.running_mean.device, bn.running_mean.dtype)
        pending.setdefault(group, []).append((bn, pruned))
    for (steps, start, momentum, device, dtype), members in pending.items():
        mean = torch.cat([bn.running_mean.index_select(0, idx) for bn, idx in members])
        var = torch.cat([bn.running_var.index_select(0, idx) for bn, idx in members])
        zeros = torch.zeros(2, len(mean), 1, 1, device=device, dtype=dtype)
        for i in range(steps):
            factor = momentum if momentum is not None else 1.0 / float(start + i + 1)  # nn.BatchNorm's rule
            F.batch_norm(zeros, mean, var, None, None, True, factor, 1e-5)
        at = 0
        for bn, idx in members:
            bn.running_mean.index_copy_(0, idx, mean[at : at + len(idx)])
            bn.running_var.index_copy_(0, idx, var[at : at + len(idx)])
            at += len(idx)


@torch.no_grad()
def expand_model(model: nn.Module, slim: nn.Module, slimming: Slimming, *, replay_bn: bool = True) -> nn.Module:
    """Write the slim model's state into the dense-shaped ``model``, in place, as masked training would
    have left it: the alive entries of every parameter and buffer from ``slim``, the pruned groups'
    weights zero (the loop's own mask multiply), and with ``replay_bn`` the pruned BN channels'
    running statistics decayed over the steps ``slim`` trained since ``model`` last matched it.
    Returns ``model``."""
    if replay_bn:
        _replay_bn(model, slim, slimming)
    small = slim.state_dict()
    for key, t in model.state_dict().items():
        expand_tensor_(t, small[key], slimming.cuts.get(key, []))  # pruned BN entries: as replayed above
    _, params, pmasks = bind_masks(model, param_masks(model, slimming.groupsets, slimming.masks))
    if params:
        torch._foreach_mul_(params, pmasks)  # what the loop's mask_weights does after every step
    return model


# --- the optimizer's state ---------------------------------------------------------------------------


def optimizer_param_names(optimizer: torch.optim.Optimizer, model: nn.Module) -> list[str]:
    """The parameter name of each index of ``optimizer.state_dict()`` (torch numbers the parameters
    of its param groups in order)."""
    name_of = {id(p): n for n, p in model.named_parameters()}
    try:
        return [name_of[id(p)] for group in optimizer.param_groups for p in group["params"]]
    except KeyError:
        raise ModelError("the optimizer holds a parameter the model does not have") from None


def _map_state(state: dict, names: list[str], convert) -> dict:
    out = {}
    for idx, per_param in state["state"].items():
        name = names[idx]
        out[idx] = {k: convert(name, k, v) for k, v in per_param.items()}
    return {"state": out, "param_groups": copy.deepcopy(state["param_groups"])}


def slim_optimizer_state(state: dict, names: list[str], slimming: Slimming) -> dict:
    """The dense model's ``optimizer.state_dict()`` cut to the slim model (momentum buffers, Adam's
    moments: every per-parameter tensor of the parameter's shape), for an optimizer built over the
    slim model's parameters in the same order. Scalars (Adam's ``step``) and settings are copied."""

    def convert(name, _key, v):
        if isinstance(v, torch.Tensor) and name in slimming.cuts and v.shape == slimming.shapes[name]:
            return slice_tensor(v, slimming.cuts[name]).clone()
        return v.clone() if isinstance(v, torch.Tensor) else copy.deepcopy(v)

    return _map_state(state, names, convert)


def expand_optimizer_state(state: dict, names: list[str], slimming: Slimming, base: dict | None = None) -> dict:
    """The slim model's ``optimizer.state_dict()`` in the dense shape: the alive entries from ``state``,
    the pruned ones from ``base`` (a dense optimizer state with the same indices) or zero, which is
    what masked training holds for groups pruned before the optimizer's first step."""
    base_state = base["state"] if base is not None else {}
    rev = {n: i for i, n in enumerate(names)}

    def convert(name, key, v):
        if not (isinstance(v, torch.Tensor) and name in slimming.cuts and v.shape == slimming.slim_shape(name)):
            return v.clone() if isinstance(v, torch.Tensor) else copy.deepcopy(v)
        old = base_state.get(rev[name], {}).get(key)
        shape = slimming.shapes[name]
        dense = old.clone() if isinstance(old, torch.Tensor) and old.shape == shape else v.new_zeros(shape)
        return expand_tensor_(dense, v.to(dense.device), slimming.cuts[name])

    return _map_state(state, names, convert)


def slim_groupsets(slim: nn.Module, slimming: Slimming) -> list[GroupSet]:
    """The slim model's GroupSets of the slimmed layers (same names as the dense ones, fewer groups),
    for masks and penalties on the slim model (with :meth:`Slimming.slim_masks`)."""
    return [gs for gs in groupsets_of(slim) if gs.name in slimming.masks]
