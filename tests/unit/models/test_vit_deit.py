"""DeiT-S/B (timm) through the ViT path: heads and neurons prunable, sizes for the resource estimates."""

import pytest
import torch

from prunebench.estimates import minutes_per_epoch
from prunebench.models import build_model, check_arch, model_spec
from prunebench.pruning.groups import groupsets_of


@pytest.mark.parametrize(
    ("arch", "heads", "hidden"), [("deit_small_patch16_224", 6, 1536), ("deit_base_patch16_224", 12, 3072)]
)
def test_deit_blocks_have_heads_and_neurons(arch, heads, hidden):
    check_arch(arch)
    with torch.device("meta"):
        model = build_model(model_spec({"arch": arch, "img_size": 224, "patch_size": 16}, 1000))
    sets = groupsets_of(model, ["heads", "neurons"])
    assert len(sets) == 24  # 12 blocks, a head set and a neuron set each
    assert {gs.size for gs in sets if gs.kind == "head"} == {heads}
    assert {gs.size for gs in sets if gs.kind == "neuron"} == {hidden}


def test_deit_base_is_estimated_slower_than_deit_small_on_imagenet():
    small = minutes_per_epoch("s", {"arch": "deit_small_patch16_224"}, "imagenet", None, {}, 1_281_167)
    base = minutes_per_epoch("b", {"arch": "deit_base_patch16_224"}, "imagenet", None, {}, 1_281_167)
    assert small == pytest.approx(1.5 * 1_281_167 / 45_000)  # ViT-S/16's 1.5 min per 45,000 images
    assert base == pytest.approx(3.5 * small)
