"""timm Vision Transformers, with size overrides and verified pretrained-weight loading."""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

import torch
from torch import nn

from prunebench.errors import ModelError


@cache
def timm_vit_names() -> list[str]:
    import timm

    return timm.list_models("vit_*") + timm.list_models("deit*")


def _timm_kwargs(spec: dict) -> dict:
    kwargs = dict(spec.get("kwargs") or {})
    kwargs["num_classes"] = spec["num_classes"]
    for key in ("img_size", "patch_size"):
        if spec.get(key):
            kwargs[key] = spec[key]
    return kwargs


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a weights file (.safetensors, or a torch file loaded with weights_only=True)."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"pretrained weights file {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelError(f"cannot read pretrained weights {path}: {exc}") from None
    for key in ("model", "state_dict", "model_state"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ModelError(f"pretrained weights {path} hold no state dict")
    return state


def load_vit_weights(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load ``state`` into ``model``, resampling patch and position embeddings to the model's sizes.

    Only the classifier head may be left out (a different number of classes); any other missing or
    unexpected key is an error, so no weight is ever silently left at its random initialisation.
    """
    from timm.models.vision_transformer import checkpoint_filter_fn

    state = checkpoint_filter_fn(state, model)
    own = model.state_dict()
    head_keys = {k for k in own if k.startswith("head.")}
    for key in head_keys:
        if key in state and state[key].shape != own[key].shape:
            del state[key]
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if k not in head_keys]
    if missing or unexpected:
        raise ModelError(
            f"pretrained weights {source} do not fit {type(model).__name__}: missing "
            f"{missing[:5]}{'...' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}; "
            "check that the weights are for this architecture (depth, width, heads)"
        )


def build_vit(spec: dict, pretrained: bool | str) -> nn.Module:
    import timm

    kwargs = _timm_kwargs(spec)
    if pretrained is True:
        # the config's weights_dir, set by prepare and the training jobs (prunebench.prepare)
        cache_dir = os.environ.get("PRUNEBENCH_WEIGHTS_DIR") or None
        try:
            return timm.create_model(spec["arch"], pretrained=True, cache_dir=cache_dir, **kwargs)
        except Exception as exc:
            offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
            where = f"the weights cache {cache_dir}" if cache_dir else "the Hugging Face cache"
            fix = (
                f"they are read from {where} only (no download in a training job): run `prunebench prepare "
                "CONFIG` where there is internet (the workflow runs it before any job), with the same weights_dir"
                if offline
                else "on a machine without internet run `prunebench prepare --config CONFIG` elsewhere first"
            )
            raise ModelError(
                f"could not load the timm hub weights of {spec['arch']} ({type(exc).__name__}: {exc}); {fix}, "
                "or set the model's `pretrained` to a local weights file or to false"
            ) from None
    model = timm.create_model(spec["arch"], pretrained=False, **kwargs)
    if pretrained:
        load_vit_weights(model, read_state_dict(pretrained), str(pretrained))
    return model
