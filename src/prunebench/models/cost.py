"""What a model costs: parameters split by part, and multiply-accumulates per image.

MACs are counted by ``torch.utils.flop_counter.FlopCounterMode`` (PyTorch's maintained counter of
matmul/conv FLOPs), not by a hand formula. timm's fused attention calls
``scaled_dot_product_attention``, which the counter misses on CPU builds (ViT-S at 32 px/patch 4:
1.381 G instead of 1.420 G MACs), so while counting each Attention runs its explicit
``q @ k`` / ``attn @ v`` path (same outputs) and the two attention matmuls are counted as bmm.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def param_split(model: nn.Module) -> dict[str, int]:
    """Parameters in total, in attention modules, in MLP modules and elsewhere (CNN convs count as other)."""
    out = {"params": 0, "params_attention": 0, "params_mlp": 0, "params_other": 0}
    for name, p in model.named_parameters():
        parts = name.split(".")
        part = "params_attention" if "attn" in parts else "params_mlp" if "mlp" in parts else "params_other"
        out[part] += p.numel()
        out["params"] += p.numel()
    return out


@contextmanager
def explicit_attention(model: nn.Module):
    """Switch off fused attention on every timm Attention for the duration of the block."""
    saved = [(m, m.fused_attn) for m in model.modules() if hasattr(m, "fused_attn")]
    try:
        for m, _ in saved:
            m.fused_attn = False
        yield
    finally:
        for m, fused in saved:
            m.fused_attn = fused


def input_shape(model: nn.Module, spec: dict) -> tuple[int, int, int]:
    """(C, H, W) of one input image of ``model``."""
    embed = getattr(model, "patch_embed", None)
    if embed is not None and getattr(embed, "img_size", None):
        h, w = embed.img_size
        return (embed.proj.in_channels, int(h), int(w))
    size = int(spec.get("img_size") or 32)
    return (3, size, size)


@torch.no_grad()
def count_macs(model: nn.Module, shape: tuple[int, int, int]) -> int:
    """Multiply-accumulates of one forward pass on one image (attention matmuls included)."""
    p = next(model.parameters())
    x = torch.zeros(1, *shape, device=p.device, dtype=p.dtype)
    was_training = model.training
    model.eval()
    try:
        with explicit_attention(model), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops()) // 2  # the counter reports 2 FLOPs per multiply-accumulate


def model_cost(model: nn.Module, spec: dict) -> dict[str, int]:
    """``{params, params_attention, params_mlp, params_other, macs}`` of ``model``."""
    return {**param_split(model), "macs": count_macs(model, input_shape(model, spec))}
