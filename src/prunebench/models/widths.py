"""Narrow a dense model's layers to given widths: the architecture half of a compact model.

``widths`` maps a layer to the groups it keeps, in the format of
:func:`prunebench.pruning.groups.kept_counts`: ``{"blocks.0": {"head": 2, "neuron": 100}}`` for a timm
ViT block, ``{"conv1": {"channel": 20}}`` for a CNN's prunable conv. The narrowed layers are
uninitialised; :mod:`prunebench.export.compact` fills them with the kept slices of the dense weights.
"""

from __future__ import annotations

from torch import nn

from prunebench.errors import ModelError


def _linear(old: nn.Linear, in_features: int | None = None, out_features: int | None = None) -> nn.Linear:
    return nn.Linear(
        in_features or old.in_features, out_features or old.out_features, bias=old.bias is not None,
        device=old.weight.device, dtype=old.weight.dtype,
    )  # fmt: skip


def _set_heads(attn: nn.Module, n: int, where: str) -> None:
    # Per-head LayerNorm over attn_dim (scale_norm) or a gate mixes heads: removing one changes the rest.
    if not isinstance(getattr(attn, "norm", nn.Identity()), nn.Identity) or getattr(attn, "gate", None) is not None:
        raise ModelError(f"{where}: attention with scale_norm or a gate cannot be slimmed head by head")
    hd = attn.head_dim
    attn.qkv = _linear(attn.qkv, out_features=3 * n * hd)
    attn.proj = _linear(attn.proj, in_features=n * hd)
    attn.num_heads = n
    attn.attn_dim = n * hd
    # attn.scale stays head_dim ** -0.5: heads keep their width, only their number changes.


def _set_neurons(mlp: nn.Module, n: int, where: str) -> None:
    if not (hasattr(mlp, "fc1") and hasattr(mlp, "fc2")) or mlp.fc1.out_features != mlp.fc2.in_features:
        raise ModelError(f"{where}: only timm's plain Mlp (fc1 -> act -> fc2) can be slimmed neuron by neuron")
    if not isinstance(getattr(mlp, "norm", nn.Identity()), nn.Identity):
        raise ModelError(f"{where}: an MLP with a hidden-layer norm cannot be slimmed neuron by neuron")
    mlp.fc1 = _linear(mlp.fc1, out_features=n)
    mlp.fc2 = _linear(mlp.fc2, in_features=n)


def _replace(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, module)


def _narrow_conv(conv: nn.Conv2d, in_channels: int | None = None, out_channels: int | None = None) -> nn.Conv2d:
    if conv.groups != 1:
        raise ModelError("grouped or depthwise convolutions cannot be slimmed channel by channel")
    return nn.Conv2d(
        in_channels or conv.in_channels, out_channels or conv.out_channels, conv.kernel_size, conv.stride,
        conv.padding, conv.dilation, bias=conv.bias is not None, padding_mode=conv.padding_mode,
        device=conv.weight.device, dtype=conv.weight.dtype,
    )  # fmt: skip


def _narrow_bn(bn: nn.BatchNorm2d, n: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(
        n, bn.eps, bn.momentum, bn.affine, bn.track_running_stats, device=bn.weight.device, dtype=bn.weight.dtype
    )


def _set_channels(model: nn.Module, conv: str, bn: str, consumer: str, n: int) -> None:
    _replace(model, conv, _narrow_conv(model.get_submodule(conv), out_channels=n))
    _replace(model, bn, _narrow_bn(model.get_submodule(bn), n))
    cons = model.get_submodule(consumer)
    if isinstance(cons, nn.Conv2d):
        _replace(model, consumer, _narrow_conv(cons, in_channels=n))
    elif isinstance(cons, nn.Linear):
        _replace(model, consumer, _linear(cons, in_features=n))
    else:
        raise ModelError(f"{consumer}: a {type(cons).__name__} cannot consume a slimmed conv")


def apply_widths(model: nn.Module, widths: dict[str, dict[str, int]]) -> nn.Module:
    """Narrow ``model`` in place to ``widths`` ({layer: {kind: kept}}); the new layers are uninitialised."""
    chain = (
        {conv: (bn, consumer) for conv, bn, consumer in model.channel_chain()}
        if hasattr(model, "channel_chain")
        else {}
    )
    for layer, kinds in widths.items():
        for kind, n in kinds.items():
            where = f"{layer} ({kind})"
            if int(n) < 1:
                raise ModelError(f"{where}: a layer must keep at least one group, the spec says {n}")
            if kind == "channel":
                if layer not in chain:
                    raise ModelError(f"{where}: not a prunable conv of {type(model).__name__}")
                _set_channels(model, layer, *chain[layer], int(n))
            elif kind == "head":
                _set_heads(model.get_submodule(layer).attn, int(n), where)
            elif kind == "neuron":
                _set_neurons(model.get_submodule(layer).mlp, int(n), where)
            else:
                raise ModelError(f"{where}: unknown group kind {kind!r}")
    return model
