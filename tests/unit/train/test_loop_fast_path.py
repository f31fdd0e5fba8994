"""The GPU fast path's choices, checked on the CPU: autocast, fused optimizers, memory format, compile."""

import pytest
import torch

from prunebench.accel.settings import autocast, prepare_model, uses_channels_last
from prunebench.config import resolve_config
from prunebench.models import build_model, model_spec
from prunebench.train.loop import fast_optimizer_kwargs, make_optimizer

SGD = {"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": False, "weight_decay": 0.0}


def test_bf16_autocast_only_on_cuda_and_only_when_amp_is_on():
    with pytest.warns(UserWarning, match="CUDA is not available") if not torch.cuda.is_available() else _nothing():
        ctx = autocast(torch.device("cuda"), True)
    assert isinstance(ctx, torch.autocast) and ctx.fast_dtype == torch.bfloat16
    for dev, amp in [("cpu", True), ("cuda", False)]:
        assert not isinstance(autocast(torch.device(dev), amp), torch.autocast)


def _nothing():
    import contextlib

    return contextlib.nullcontext()


def test_optimizers_use_fused_kernels_on_cuda_and_foreach_on_cpu(tiny_vit):
    assert fast_optimizer_kwargs(torch.device("cuda", 0)) == {"fused": True}
    assert fast_optimizer_kwargs(torch.device("cpu")) == {"foreach": True}
    for cfg in (SGD, {**SGD, "optimizer": "adamw"}):
        opt = make_optimizer(tiny_vit, cfg)
        assert opt.defaults["foreach"] is True and not opt.defaults.get("fused")


def test_channels_last_for_cnns_on_cuda_only():
    assert uses_channels_last("cnn", torch.device("cuda"))
    assert not uses_channels_last("vit", torch.device("cuda"))
    assert not uses_channels_last("cnn", torch.device("cpu"))


def test_a_channels_last_cnn_computes_what_the_plain_one_does():
    torch.manual_seed(0)
    cnn = build_model(model_spec({"arch": "small_cnn", "kwargs": {"widths": [8, 8, 8]}}, 10)).eval()
    x = torch.randn(4, 3, 16, 16)
    ref = cnn(x)
    cnn.to(memory_format=torch.channels_last)
    assert cnn.conv2.weight.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(cnn(x.contiguous(memory_format=torch.channels_last)), ref, atol=1e-5)


def test_compiled_model_shares_parameters_and_keeps_plain_checkpoint_keys(tiny_vit):
    keys = set(tiny_vit.state_dict())
    net = prepare_model(tiny_vit, "vit", torch.device("cpu"), compile=True)
    assert isinstance(net, torch._dynamo.eval_frame.OptimizedModule) and net._orig_mod is tiny_vit
    assert set(tiny_vit.state_dict()) == keys  # checkpoints are written from the plain module
    assert prepare_model(tiny_vit, "vit", torch.device("cpu")) is tiny_vit


def test_compile_is_a_documented_train_option_auto_by_default(tiny_config):
    exp = next(iter(resolve_config(tiny_config).experiments.values()))
    assert exp["train"]["compile"] == "auto"  # compiled on CUDA, eager on CPU (tests/unit/train/test_compile_option.py)
    tiny_config["defaults"]["train"]["compile"] = True
    assert next(iter(resolve_config(tiny_config).experiments.values()))["train"]["compile"] is True
