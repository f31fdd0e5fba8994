"""Building models by name, and loading pretrained weights without silent re-initialisation."""

import pytest
import timm
import torch
from timm.layers import resample_abs_pos_embed, resample_patch_embed

from prunebench.errors import ModelError
from prunebench.models import build_model, check_arch, model_spec

SMALL = {"embed_dim": 48, "depth": 2, "num_heads": 3}


def test_timm_vit_by_name_with_size_overrides():
    model = build_model(
        model_spec({"arch": "vit_small_patch16_224", "img_size": 32, "patch_size": 4, "kwargs": {"depth": 2}}, 100)
    )
    assert len(model.blocks) == 2 and model.blocks[0].attn.num_heads == 6
    assert model.patch_embed.proj.kernel_size == (4, 4) and model.pos_embed.shape[1] == 1 + 64
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 100)


def test_local_pretrained_weights_are_resampled_not_reinitialised(tmp_path):
    torch.manual_seed(0)
    source = timm.create_model("vit_tiny_patch16_224", img_size=64, num_classes=1000, **SMALL)
    torch.save(source.state_dict(), tmp_path / "weights.pth")
    spec = model_spec({"arch": "vit_tiny_patch16_224", "img_size": 32, "patch_size": 4, "kwargs": SMALL}, 10)
    model = build_model(spec, pretrained=str(tmp_path / "weights.pth"))
    for (name, p), q in zip(model.blocks.named_parameters(), source.blocks.parameters()):
        assert torch.equal(p, q), name
    expected_patch = resample_patch_embed(source.patch_embed.proj.weight.detach(), [4, 4])
    assert torch.allclose(model.patch_embed.proj.weight, expected_patch, atol=1e-5)
    expected_pos = resample_abs_pos_embed(source.pos_embed.detach(), new_size=[8, 8], num_prefix_tokens=1)
    assert torch.allclose(model.pos_embed, expected_pos, atol=1e-5)
    assert model.head.weight.shape == (10, 48)  # new classifier for 10 classes


def test_weights_of_another_architecture_are_refused(tmp_path):
    other = timm.create_model("vit_tiny_patch16_224", img_size=32, embed_dim=48, depth=3, num_heads=3)
    torch.save(other.state_dict(), tmp_path / "deeper.pth")
    spec = model_spec({"arch": "vit_tiny_patch16_224", "img_size": 32, "kwargs": SMALL}, 10)
    with pytest.raises(ModelError, match="do not fit VisionTransformer: .*unexpected .*blocks.2"):
        build_model(spec, pretrained=str(tmp_path / "deeper.pth"))


def test_hub_weights_offline_give_a_clear_error(monkeypatch):
    import timm.models._builder as builder

    def offline(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co'")

    monkeypatch.setattr(builder, "load_pretrained", offline)
    spec = model_spec({"arch": "vit_tiny_patch16_224", "img_size": 32, "kwargs": SMALL}, 10)
    with pytest.raises(ModelError, match="could not load the timm hub weights.*local weights file"):
        build_model(spec, pretrained=True)


def test_small_cnn_and_unknown_names():
    model = build_model(model_spec({"arch": "small_cnn"}, 10))
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    with pytest.raises(ModelError, match="unknown model 'small_cn'.*did you mean small_cnn"):
        check_arch("small_cn")
