"""Parameter split and MACs per image, against figures measured with timm 1.0.31 or worked out by hand
(ResNet-56: tests/unit/models/test_cifar_resnets.py)."""

import torch

from prunebench.export.compact import compact_model
from prunebench.models import build_model, model_spec
from prunebench.models.cost import model_cost


def test_vit_small_at_32px_patch4_counts_attention_matmuls():
    spec = model_spec({"arch": "vit_small_patch16_224", "img_size": 32, "patch_size": 4}, 10)
    model = build_model(spec)
    fused = [m.fused_attn for m in model.modules() if hasattr(m, "fused_attn")]
    cost = model_cost(model, spec)
    assert cost["params"] == 21_342_346
    assert (cost["params_attention"], cost["params_mlp"]) == (7_096_320, 14_178_816)
    assert cost["params"] == cost["params_attention"] + cost["params_mlp"] + cost["params_other"]
    assert cost["macs"] // 10**6 == 1420  # 1.381 G if the fused attention matmuls were missed
    assert [m.fused_attn for m in model.modules() if hasattr(m, "fused_attn")] == fused  # restored after counting


def test_vit_small_at_224px():
    spec = model_spec({"arch": "vit_small_patch16_224"}, 10)
    cost = model_cost(build_model(spec), spec)
    assert cost["params"] == 21_669_514
    assert cost["macs"] // 10**6 == 4598


def test_compact_model_costs_less_and_cnn_params_are_all_other():
    spec = model_spec({"arch": "small_cnn"}, 10)
    model = build_model(spec)
    masks = {"conv1.channels": torch.arange(32) < 16, "conv2.channels": torch.arange(64) < 16}
    compact, _ = compact_model(model, spec, masks)
    dense_cost, compact_cost = model_cost(model, spec), model_cost(compact, spec)
    assert dense_cost["params_attention"] == dense_cost["params_mlp"] == 0
    assert dense_cost["params_other"] == dense_cost["params"] == 94_762
    # per 32 px image, k = 3x3: conv1 at 32x32, conv2 at 16x16, conv3 at 8x8, then fc 128 -> 10
    assert dense_cost["macs"] == 32 * 32 * 32 * 3 * 9 + 16 * 16 * 64 * 32 * 9 + 8 * 8 * 128 * 64 * 9 + 128 * 10
    # conv1 3->16 instead of 3->32, conv2 16->16 instead of 32->64, conv3 reads 16 instead of 64 channels
    assert compact_cost["macs"] == 32 * 32 * 16 * 3 * 9 + 16 * 16 * 16 * 16 * 9 + 8 * 8 * 128 * 16 * 9 + 128 * 10
