"""Model registry: build any supported model from a plain-dict spec.

A *model spec* is what a checkpoint stores to rebuild its model without the training code:
``{"family", "arch", "num_classes", "img_size", "patch_size", "kwargs"}``. A compact (physically
pruned) model's spec adds ``"widths"``, the groups each layer keeps (see prunebench.models.widths).
"""

from __future__ import annotations

import difflib

from torch import nn

from prunebench.archs import VIT_MODULES, family_of
from prunebench.errors import ModelError
from prunebench.models.cnn import CNN_ARCHS, build_cnn
from prunebench.models.vit import build_vit, timm_vit_names
from prunebench.models.widths import apply_widths

__all__ = ["build_model", "check_arch", "model_spec", "family_of"]


def check_arch(arch: str) -> None:
    """Raise ModelError unless ``arch`` names a model prunebench can build and prune."""
    if arch in CNN_ARCHS:
        return
    import timm

    if timm.is_model(arch):
        module = timm.models.model_entrypoint(arch).__module__.rsplit(".", 1)[-1]
        if module in VIT_MODULES:
            return
        raise ModelError(
            f"timm model {arch!r} is a {module} model; prunebench prunes timm Vision Transformers "
            f"({', '.join(VIT_MODULES)}) and its own CNNs ({', '.join(sorted(CNN_ARCHS))})"
        )
    known = sorted(CNN_ARCHS) + timm_vit_names()
    close = difflib.get_close_matches(arch, known, n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise ModelError(
        f"unknown model {arch!r}: not a timm Vision Transformer nor a prunebench CNN "
        f"({', '.join(sorted(CNN_ARCHS))}){hint}"
    )


def model_spec(model_cfg: dict, num_classes: int) -> dict:
    """The rebuildable spec of a config model definition for a dataset with ``num_classes``."""
    return {
        "family": family_of(model_cfg["arch"]),
        "arch": model_cfg["arch"],
        "num_classes": int(num_classes),
        "img_size": model_cfg.get("img_size"),
        "patch_size": model_cfg.get("patch_size"),
        "kwargs": dict(model_cfg.get("kwargs") or {}),
    }


def build_model(spec: dict, pretrained: bool | str = False) -> nn.Module:
    """Build the model a spec describes; ``pretrained`` is True (timm hub), a file path, or False."""
    check_arch(spec["arch"])
    if spec["family"] == "cnn":
        if pretrained:
            raise ModelError(f"{spec['arch']} has no pretrained weights; set pretrained: false")
        model = build_cnn(spec)
    else:
        model = build_vit(spec, pretrained)
    if spec.get("widths"):
        apply_widths(model, spec["widths"])
    return model
