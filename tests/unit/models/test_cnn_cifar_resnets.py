"""CIFAR ResNets and ResNet-18 at 32 px: sizes, costs and the convs that may be pruned."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from prunebench.errors import ModelError
from prunebench.models import build_model, check_arch, model_spec


def _macs(model, size=32):
    model.eval()
    with FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, size, size))
    return counter.get_total_flops() // 2  # the counter reports 2 FLOPs per multiply-accumulate


def test_resnet56_has_the_papers_parameters_and_macs():
    model = build_model(model_spec({"arch": "resnet56"}, 10))
    assert sum(p.numel() for p in model.parameters()) == 853_018
    assert _macs(model) == 125_485_696  # 125.49 M MACs per 32x32 image


@pytest.mark.parametrize(("arch", "blocks"), [("resnet20", 9), ("resnet32", 15), ("resnet56", 27), ("resnet110", 54)])
def test_only_inner_convs_of_blocks_are_prunable(arch, blocks):
    model = build_model(model_spec({"arch": arch}, 10))
    chain = model.channel_chain()
    assert len(chain) == blocks
    assert all(conv.endswith(".conv1") and bn.endswith(".bn1") and nxt.endswith(".conv2") for conv, bn, nxt in chain)
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_resnet18_keeps_32px_resolution_in_its_stem():
    model = build_model(model_spec({"arch": "resnet18"}, 100))
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert isinstance(model.maxpool, torch.nn.Identity)
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 100)
    assert len(model.channel_chain()) == 8  # 4 stages x 2 basic blocks


def test_unknown_cnn_names_the_resnets():
    with pytest.raises(ModelError, match="resnet56"):
        check_arch("resnet57")
