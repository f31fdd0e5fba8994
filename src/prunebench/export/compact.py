"""Physically slim a masked model: pruned heads, neurons and channels are removed, not zeroed.

A *compact spec* is a model spec plus ``"widths"``: the groups each layer keeps, in the format of
:func:`prunebench.pruning.groups.kept_counts` (``{"blocks.0": {"head": 2, "neuron": 100}}`` for a
ViT, ``{"conv1": {"channel": 20}}`` for a CNN). ``build_model(compact_spec)`` builds the dense
architecture and narrows every listed layer (:mod:`prunebench.models.widths`), so a compact
checkpoint reloads from its spec and state dict alone, without masks or training code. This module
fills the narrowed layers with the kept slices of a masked model's weights.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn

from prunebench.errors import CheckpointError
from prunebench.export.slim import kept_indices, slice_state_dict
from prunebench.io import atomic_torch_save
from prunebench.models import build_model
from prunebench.pruning.groups import GroupSet, MaskedParams, Masks, groupsets_of, kept_counts, param_masks

COMPACT_KIND = "prunebench-compact"
COMPACT_VERSION = 1


def compact_spec(spec: dict, groupsets: list[GroupSet], masks: Masks) -> dict:
    """The spec of the compact model: ``spec`` plus the groups each layer keeps."""
    out = copy.deepcopy(spec)
    out["widths"] = kept_counts(groupsets, masks)
    return out


def compact_model(model: nn.Module, spec: dict, masks: Masks) -> tuple[nn.Module, dict]:
    """The physically slim copy of ``model`` under ``masks`` (CPU, eval mode) and its compact spec."""
    groupsets = [gs for gs in groupsets_of(model) if gs.name in masks]
    if {gs.name for gs in groupsets} != set(masks):
        unknown = sorted(set(masks) - {gs.name for gs in groupsets})
        raise CheckpointError(f"masks {unknown[:3]} name no prunable layer of {spec['arch']}")
    cspec = compact_spec(spec, groupsets, masks)
    compact = build_model(cspec)
    sliced = slice_state_dict(model.state_dict(), kept_indices(groupsets, masks), compact.state_dict())
    compact.load_state_dict({key: t.cpu().clone().contiguous() for key, t in sliced.items()})
    return compact.eval(), cspec


def compact_from_checkpoint(ckpt: dict) -> tuple[nn.Module, dict, nn.Module]:
    """(compact model, compact spec, masked dense model) of a loaded state checkpoint."""
    dense = build_model(ckpt["model_spec"])
    dense.load_state_dict(ckpt["state_dict"])
    dense.eval()
    # A state's weights are saved masked already; masking again makes any checkpoint the masked model.
    groupsets = [gs for gs in groupsets_of(dense) if gs.name in ckpt["masks"]]
    MaskedParams(dense, param_masks(dense, groupsets, ckpt["masks"])).mask_weights()
    compact, cspec = compact_model(dense, ckpt["model_spec"], ckpt["masks"])
    return compact, cspec, dense


def make_compact_checkpoint(compact: nn.Module, cspec: dict, source: dict | None = None) -> dict:
    """A plain dict (loads with weights_only=True): the compact spec and state dict, no masks."""
    return {
        "format_version": COMPACT_VERSION,
        "kind": COMPACT_KIND,
        "model_spec": cspec,
        "state_dict": {k: v.detach().cpu().clone() for k, v in compact.state_dict().items()},
        "source": dict(source or {}),
    }


def save_compact(path: str | Path, compact: nn.Module, cspec: dict, source: dict | None = None) -> None:
    atomic_torch_save(path, make_compact_checkpoint(compact, cspec, source))


def load_compact(path: str | Path) -> nn.Module:
    """Rebuild a compact model from its file alone (``torch.load(weights_only=True)``), in eval mode."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"compact model {path} does not exist; export it with `prunebench export`")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or ckpt.get("kind") != COMPACT_KIND:
        raise CheckpointError(f"{path} is not a prunebench compact model; export it with `prunebench export`")
    if ckpt.get("format_version") != COMPACT_VERSION:
        raise CheckpointError(
            f"compact model {path} has format version {ckpt.get('format_version')}, this prunebench reads "
            f"version {COMPACT_VERSION}; export it again"
        )
    model = build_model(ckpt["model_spec"])
    model.load_state_dict(ckpt["state_dict"])
    return model.eval()
