"""Model architecture names and families, without torch or timm (the Snakemake process reads them).

The builders live in prunebench.models; a test checks that the names here match them.
"""

from __future__ import annotations

import difflib

from prunebench.errors import ModelError

# prunebench's own CNNs (prunebench.models.cnn.CNN_ARCHS builds them)
CNN_ARCH_NAMES = ("small_cnn", "resnet20", "resnet32", "resnet56", "resnet110", "resnet18", "resnet34", "resnet50")
# timm modules whose models prunebench prunes; their model names start with these prefixes
VIT_MODULES = ("vision_transformer", "deit")
VIT_PREFIXES = ("vit_", "deit")


def family_of(arch: str) -> str:
    """``cnn`` for prunebench's CNNs, ``vit`` for timm Vision Transformers."""
    return "cnn" if arch in CNN_ARCH_NAMES else "vit"


def check_arch_name(arch: str) -> None:
    """A check by name only (no timm): a prunebench CNN or a timm ViT name. Whether timm knows the
    ViT is checked where timm is imported (prunebench.models.check_arch: `prunebench validate`, prepare)."""
    if arch in CNN_ARCH_NAMES or arch.startswith(VIT_PREFIXES):
        return
    close = difflib.get_close_matches(arch, CNN_ARCH_NAMES, n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise ModelError(
        f"unknown model {arch!r}: not a timm Vision Transformer (vit_*, deit*) nor a prunebench CNN "
        f"({', '.join(sorted(CNN_ARCH_NAMES))}){hint}"
    )
