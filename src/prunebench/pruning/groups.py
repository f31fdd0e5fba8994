"""Prunable groups and their masks.

A *group* is a unit removed as a whole: a ViT attention head (its q, k, v rows of ``attn.qkv`` and
its columns of ``attn.proj``), a ViT MLP neuron (its row of ``mlp.fc1`` and column of ``mlp.fc2``)
or a CNN output channel (conv filter, BN entries and the consumer's input channel). A
:class:`GroupSet` holds the groups of one layer and knows which slices of which parameters each
group owns; masks are one bool per group, keyed by the GroupSet's name.

Masks are made per parameter in broadcastable form (:func:`param_masks`): each masked parameter gets
a 0/1 factor that has the parameter's length along the dims its groups cut and length 1 along every
other dim, so that ``weight * factor`` zeroes exactly the pruned groups' entries. A factor is one row
or column vector (a ViT's qkv rows are its 3 tiles x heads x head_dim), or, for a conv that both owns
output channels and consumes another conv's channels, an (out, in, 1, 1) factor, 1/(kh*kw) of its
weight. The masks applied at every training step (:class:`MaskedParams` once it masks gradients,
RSST's penalty) are expanded to their parameters' full shape, :func:`dense_masks`: CUDA's
multi-tensor ``_foreach_*`` kernels take a whole list in one launch only when every mask has its
parameter's shape and strides, and run one kernel per parameter for broadcast factors (ViT-S: 72
per call, ~150-220 launches a step). The price is memory: one weight-sized copy of the masked
parameters per such mask set (ViT-S, fp32, every block masked: 85 MB each).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

Masks = dict[str, torch.Tensor]


@dataclass(frozen=True)
class ParamSlice:
    """The part of parameter ``param`` along ``dim`` owned by a layer's groups.

    Along ``dim`` the layout is ``tile`` repeats of ``size`` groups of ``width`` entries each (the
    fused qkv projection is 3 repeats of heads x head_dim rows).
    """

    param: str
    dim: int
    width: int = 1
    tile: int = 1


@dataclass(frozen=True)
class GroupSet:
    """The prunable groups of one layer."""

    name: str
    kind: str  # "head" | "neuron" | "channel"
    layer: str
    size: int
    slices: tuple[ParamSlice, ...]

    def element_mask(self, group_mask: torch.Tensor, sl: ParamSlice) -> torch.Tensor:
        """Expand a per-group mask to one entry per index of ``sl.param`` along ``sl.dim``."""
        return group_mask.repeat_interleave(sl.width).repeat(sl.tile)

    def group_view(self, values: torch.Tensor, sl: ParamSlice) -> torch.Tensor:
        """Reshape per-index values along ``sl.dim`` to (tile, size, width)."""
        return values.reshape(sl.tile, self.size, sl.width)


KIND_OF_OPTION = {"heads": "head", "neurons": "neuron", "channels": "channel"}


def vit_groupsets(model: nn.Module) -> list[GroupSet]:
    """Heads and MLP neurons of every timm ViT block (the residual width is never pruned)."""
    out = []
    for i, block in enumerate(model.blocks):
        attn, mlp = block.attn, block.mlp
        prefix = f"blocks.{i}"
        hd = attn.head_dim
        head_slices = [ParamSlice(f"{prefix}.attn.qkv.weight", 0, hd, 3)]
        if attn.qkv.bias is not None:
            head_slices.append(ParamSlice(f"{prefix}.attn.qkv.bias", 0, hd, 3))
        head_slices.append(ParamSlice(f"{prefix}.attn.proj.weight", 1, hd, 1))
        out.append(GroupSet(f"{prefix}.attn.heads", "head", prefix, attn.num_heads, tuple(head_slices)))
        neuron_slices = [ParamSlice(f"{prefix}.mlp.fc1.weight", 0)]
        if mlp.fc1.bias is not None:
            neuron_slices.append(ParamSlice(f"{prefix}.mlp.fc1.bias", 0))
        neuron_slices.append(ParamSlice(f"{prefix}.mlp.fc2.weight", 1))
        out.append(GroupSet(f"{prefix}.mlp.neurons", "neuron", prefix, mlp.fc1.out_features, tuple(neuron_slices)))
    return out


def cnn_groupsets(model: nn.Module) -> list[GroupSet]:
    """Output channels of every prunable conv, as listed by the model's ``channel_chain()``."""
    out = []
    for conv, bn, consumer in model.channel_chain():
        size = model.get_submodule(conv).out_channels
        slices = [ParamSlice(f"{conv}.weight", 0), ParamSlice(f"{bn}.weight", 0), ParamSlice(f"{bn}.bias", 0)]
        slices.append(ParamSlice(f"{consumer}.weight", 1))
        out.append(GroupSet(f"{conv}.channels", "channel", conv, size, tuple(slices)))
    return out


def groupsets_of(
    model: nn.Module, kinds: list[str] | tuple[str, ...] = ("heads", "neurons", "channels")
) -> list[GroupSet]:
    """The model's prunable GroupSets, restricted to the requested kinds."""
    if hasattr(model, "channel_chain"):
        sets = cnn_groupsets(model)
    elif hasattr(model, "blocks"):
        sets = vit_groupsets(model)
    else:
        raise TypeError(f"{type(model).__name__} has no prunable groups prunebench knows about")
    wanted = {KIND_OF_OPTION[k] for k in kinds}
    return [gs for gs in sets if gs.kind in wanted]


def full_masks(groupsets: list[GroupSet], device=None) -> Masks:
    """Masks that keep every group."""
    return {gs.name: torch.ones(gs.size, dtype=torch.bool, device=device) for gs in groupsets}


def random_masks(groupsets: list[GroupSet], keep: float, generator: torch.Generator) -> Masks:
    """Masks keeping about ``keep`` of each layer's groups at random (at least one per layer), as a
    pruned state would: for benchmarks and tests of masked training."""
    out = {}
    for gs in groupsets:
        m = torch.rand(gs.size, generator=generator) < keep
        m[torch.randint(gs.size, (1,), generator=generator)] = True
        out[gs.name] = m
    return out


def param_masks(model: nn.Module, groupsets: list[GroupSet], masks: Masks) -> dict[str, torch.Tensor]:
    """Per-parameter 0/1 float masks, in broadcastable form, for every parameter a masked group touches.

    The mask of a parameter has the parameter's length along each dim that groups cut and length 1
    elsewhere (e.g. ``(3*D, 1)`` for a qkv weight, ``(1, hidden)`` for fc2's weight, ``(out, in, 1,
    1)`` for a conv that owns output channels and consumes another conv's channels); multiplying the
    parameter by it zeroes exactly the entries of the masked groups. Layers whose groups are all
    kept get no mask.
    """
    params = dict(model.named_parameters())
    out: dict[str, torch.Tensor] = {}
    for gs in groupsets:
        gmask = masks[gs.name]
        if bool(gmask.all()):
            continue
        for sl in gs.slices:
            p = params[sl.param]
            em = gs.element_mask(gmask.to(p.device), sl).to(p.dtype)
            shape = [1] * p.dim()
            shape[sl.dim] = -1
            factor = em.view(shape)
            out[sl.param] = out[sl.param] * factor if sl.param in out else factor
    return out


def group_costs(model: nn.Module, gs: GroupSet) -> int:
    """Number of parameters one group of ``gs`` owns."""
    params = dict(model.named_parameters())
    total = 0
    for sl in gs.slices:
        p = params[sl.param]
        total += (p.numel() // p.shape[sl.dim]) * sl.width * sl.tile
    return total


def group_importance(model: nn.Module, gs: GroupSet, norm: str = "l1") -> torch.Tensor:
    """Magnitude of each group's weights (L1 sum, or L2 norm) as a float64 vector of length ``size``."""
    params = dict(model.named_parameters())
    score = torch.zeros(gs.size, dtype=torch.float64)
    for sl in gs.slices:
        w = params[sl.param].detach().float()
        reduce_dims = [d for d in range(w.dim()) if d != sl.dim]
        mag = w.abs() if norm == "l1" else w.pow(2)
        per_index = mag.sum(reduce_dims) if reduce_dims else mag  # sum([]) would reduce every dim
        score += gs.group_view(per_index.cpu().double(), sl).sum(dim=(0, 2))
    return score if norm == "l1" else score.sqrt()


def kept_counts(groupsets: list[GroupSet], masks: Masks) -> dict[str, dict[str, int]]:
    """Groups kept per layer and kind, e.g. ``{"blocks.0": {"head": 6, "neuron": 1536}}``."""
    out: dict[str, dict[str, int]] = {}
    for gs in groupsets:
        out.setdefault(gs.layer, {})[gs.kind] = int(masks[gs.name].sum())
    return out


def alive_params(model: nn.Module, pmasks: dict[str, torch.Tensor]) -> int:
    """Parameters that are not masked out (``pmasks``: 0/1 masks broadcastable to their parameters)."""
    total = 0
    for name, p in model.named_parameters():
        if name in pmasks:
            m = pmasks[name]  # each entry of a broadcast mask stands for p.numel() // m.numel() entries of p
            total += int(m.count_nonzero()) * (p.numel() // m.numel())
        else:
            total += p.numel()
    return total


def bind_masks(
    model: nn.Module, pmasks: dict[str, torch.Tensor], *, dense: bool = False
) -> tuple[list[str], list[nn.Parameter], list[torch.Tensor]]:
    """(names, parameters, masks on the parameters' device and dtype), sorted by name; every mask must
    broadcast to its parameter's shape without changing it. ``dense``: the masks expanded to their
    parameters' shape and strides (:func:`dense_masks`)."""
    params = dict(model.named_parameters())
    names = sorted(pmasks)
    unknown = [n for n in names if n not in params]
    if unknown:
        raise KeyError(f"masks name parameters the model does not have: {unknown[:3]}")
    masks = []
    for n in names:
        p, m = params[n], pmasks[n]
        if m.dim() != p.dim() or any(a not in (1, b) for a, b in zip(m.shape, p.shape)):
            raise ValueError(
                f"mask of {n} has shape {tuple(m.shape)}, which does not broadcast to {tuple(p.shape)}; "
                "make masks with prunebench.pruning.groups.param_masks"
            )
        masks.append(m.to(device=p.device, dtype=p.dtype))
    bound = [params[n] for n in names]
    return names, bound, dense_masks(bound, masks) if dense else masks


def dense_masks(params: list[torch.Tensor], masks: list[torch.Tensor]) -> list[torch.Tensor]:
    """Each broadcast mask written out to its parameter's shape, dtype and strides (a channels-last
    conv weight's mask is channels-last too), so that a ``_foreach_*`` op over parameters or
    gradients and these masks meets CUDA's fast-path conditions (equal sizes and strides)."""
    return [torch.empty_like(p, requires_grad=False).copy_(m.expand_as(p)) for p, m in zip(params, masks)]


class MaskedParams:
    """Hard masks bound to a model's parameters, applied in place.

    ``masks`` are the broadcast factors of :func:`param_masks`. The first :meth:`mask_grads`, i.e. once
    the masks train, expands them to weight-sized masks (:func:`dense_masks`), which both methods use
    from then on: ``torch._foreach_mul_`` over the parameters (or their gradients) and equal-shaped
    masks is one multi-tensor kernel on CUDA, where broadcast factors cost one kernel per parameter.
    Masks only ever applied to weights now and then (a state's final masks, compaction) stay broadcast,
    without the memory. Every op is in place on the parameters and their gradients, so a
    ``torch.compile``-d model or a captured CUDA graph that reads the same parameters sees the masked
    values; the product is the same either way (multiplying by 0 or 1 rounds nothing).
    """

    def __init__(self, model: nn.Module, pmasks: dict[str, torch.Tensor]):
        self.names, self.params, self.masks = bind_masks(model, pmasks)
        self.dense: list[torch.Tensor] | None = None

    def __bool__(self) -> bool:
        return bool(self.names)

    @torch.no_grad()
    def mask_weights(self) -> None:
        if self.params:
            torch._foreach_mul_(self.params, self.dense or self.masks)

    @torch.no_grad()
    def mask_grads(self) -> None:
        if self.dense is None:
            self.dense = dense_masks(self.params, self.masks)
        pairs = [(p.grad, m) for p, m in zip(self.params, self.dense) if p.grad is not None]
        if pairs:
            grads, masks = zip(*pairs)
            torch._foreach_mul_(list(grads), list(masks))
