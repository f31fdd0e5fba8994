"""Checks that build a config's models on the `meta` device (no memory, no weights): timm's model
names and kwargs, the image and patch sizes each takes, the groups each has for prune.groups and
round_to. They import torch and timm (seconds), so the Snakemake process never runs them: the
workflow's prepare rule and `prunebench validate` do, before any training job."""

from __future__ import annotations

import json
import math
import re
from functools import cache

from prunebench.archs import family_of
from prunebench.config import ResolvedConfig, resolve_config
from prunebench.errors import ConfigError

# Every built-in dataset prunebench loads comes as 32 x 32 RGB images (see prunebench.data.datasets).
DATASET_IMAGE_SIZE = 32


def check_model(source: str, key: str, model: dict) -> None:
    """Build the model on the `meta` device (no memory, no weights) and check the image and patch sizes
    it takes, so that kwargs and sizes that cannot work fail here, not in a running job."""
    where = f"invalid {source}:\n  models.{key}"
    img = model.get("img_size") or DATASET_IMAGE_SIZE
    patch = model.get("patch_size")
    if patch and patch > img:
        seen = "its img_size" if model.get("img_size") else "the datasets' size; no img_size is set"
        fits = ", ".join(str(d) for d in (4, 8, 16) if d < img and img % d == 0) or "1"
        raise ConfigError(
            f"{where}.patch_size = {patch}: larger than the {img} px images the model sees ({seen}); "
            f"use a patch_size that divides {img} (e.g. {fits}), or a larger img_size"
        )
    problem = model_problem(meta_spec(model))
    if problem is None:
        return
    kind, detail = problem
    kwargs = model.get("kwargs") or {}
    if kind == "unknown_kwarg":
        raise ConfigError(
            f"{where}.kwargs.{detail}: {model['arch']} takes no argument {detail!r}; remove it (kwargs go to "
            f"the model's constructor: {'widths' if family_of(model['arch']) == 'cnn' else 'depth, embed_dim, num_heads, mlp_ratio...'})"
        )
    if kind == "heads":
        raise ConfigError(
            f"{where}.kwargs = {kwargs}: {model['arch']}'s embedding width (embed_dim) is not a multiple of "
            f"num_heads; choose num_heads that divides embed_dim (e.g. embed_dim 96 with num_heads 3, 4, 6 or 8)"
        )
    if kind == "patch":
        raise ConfigError(
            f"{where}: {model['arch']} cuts {detail} px patches from {img} px images; set models.{key}.patch_size "
            f"to one that divides {img} (e.g. 4 or 8), or a larger img_size"
        )
    if kind == "img_size":
        raise ConfigError(
            f"{where}: {model['arch']} is built for {detail} px images but is given {img} px ones; set "
            f"models.{key}.img_size (images are resized to it on the device), e.g. img_size: {img}"
        )
    raise ConfigError(
        f"{where} (arch {model['arch']}, img_size {model.get('img_size')}, patch_size {patch}, kwargs "
        f"{kwargs}) cannot be built: {detail}; fix the model's settings"
    )


def meta_spec(model: dict) -> str:
    from prunebench.models import model_spec

    return json.dumps(model_spec(model, num_classes=10), sort_keys=True)


@cache
def model_problem(spec_json: str) -> tuple[str, str] | None:
    """Why the model of ``spec_json`` cannot be built or take its images, or None (cached per spec)."""
    layers = meta_layers(spec_json)
    return layers if isinstance(layers, tuple) else None


@cache
def meta_layers(spec_json: str) -> list[tuple[str, str, int, int]] | tuple[str, str]:
    """The prunable layers (option, layer, groups, entries per group) of a model spec built on the
    `meta` device, or (problem kind, detail) when it cannot be built or run."""
    import torch

    from prunebench.models import build_model
    from prunebench.pruning.groups import KIND_OF_OPTION, groupsets_of

    spec = json.loads(spec_json)
    size = spec.get("img_size") or DATASET_IMAGE_SIZE
    try:
        with torch.device("meta"):
            model = build_model(spec)
    except Exception as exc:
        text = str(exc)
        if m := re.search(r"unexpected keyword argument '(\w+)'", text):
            return "unknown_kwarg", m.group(1)
        if "divisible by num_heads" in text:
            return "heads", text
        if m := re.search(r"doesn't match model \((\d+)\)", text):
            return "img_size", m.group(1)
        return "other", f"{type(exc).__name__}: {text}"
    # What a forward pass would find, without its cost (a forward of ResNet-56 on meta takes a second):
    # a ViT takes images of exactly its img_size, cut in patches no larger than the image.
    embed = getattr(model, "patch_embed", None)
    if embed is not None:
        if max(embed.patch_size) > size:
            return "patch", str(max(embed.patch_size))
        if embed.img_size and getattr(embed, "strict_img_size", True) and tuple(embed.img_size) != (size, size):
            return "img_size", str(embed.img_size[0])
    option_of = {kind: option for option, kind in KIND_OF_OPTION.items()}
    return [(option_of[gs.kind], gs.layer, gs.size, gs.slices[0].width) for gs in groupsets_of(model)]


KIND_OPTIONS = ("heads", "neurons", "channels")


def check_groups(source: str, group: str, spec: dict, models: dict, settings: dict, checked: set[str]) -> None:
    """The groups each of the group's models in ``checked`` has: prune.groups must find some, and
    round_to must leave some layer prunable."""
    where = f"invalid {source}:\n  experiments.{group}"
    prune = settings["prune"]
    if set(spec["methods"]) <= {"dense"}:
        return  # nothing is pruned: the groups do not matter
    for model_key in spec["models"]:
        if model_key not in checked:
            continue
        layers = meta_layers(meta_spec(models[model_key]))
        arch = models[model_key]["arch"]
        has = sorted({option for option, *_ in layers}, key=list(KIND_OPTIONS).index)
        pruned = [layer for layer in layers if layer[0] in prune["groups"]]
        if not pruned:
            raise ConfigError(
                f"{where}: prune.groups = {prune['groups']} matches no group of model {model_key!r} ({arch}), "
                f"which has {', '.join(has) or 'no prunable groups'}; set prune.groups to "
                f"{has} (in defaults or the group's overrides), or nothing would be pruned"
            )
        round_to = prune["round_to"]
        if round_to > 1 and set(spec["methods"]) - {"dense", "reprune"}:
            # a layer keeps a multiple of round_to entries, at least one: a layer of fewer entries keeps all
            shrinkable = [n for _, _, n, w in pruned if round_to // math.gcd(round_to, w) < n]
            if not shrinkable:
                widest = max(n * w for _, _, n, w in pruned)
                raise ConfigError(
                    f"{where}: prune.round_to = {round_to}: no layer of model {model_key!r} ({arch}) could be "
                    f"pruned, since each keeps at least {round_to} entries and the widest pruned layer has "
                    f"{widest}; set round_to well below {widest} (e.g. 8), or 1 to round nothing"
                )


def resolve_checked(config: dict, source: str = "config", models: bool | set[str] = True) -> ResolvedConfig:
    """:func:`~prunebench.config.resolve_config`, and the checks that build the models on the `meta`
    device: for every model (``models`` True), the model keys in a set, or none (False)."""
    resolved = resolve_config(config, source)
    keys = {e["model_key"] for e in resolved.experiments.values()}
    checked = keys if models is True else (keys & set(models or ()))
    built = {}
    for e in resolved.experiments.values():
        built.setdefault(e["model_key"], e["model"])
    for key in sorted(checked):
        try:
            from prunebench.models import check_arch  # imported late: pulls in torch and timm

            check_arch(built[key]["arch"])
        except Exception as exc:
            raise ConfigError(f"invalid {source}:\n  models.{key}.arch = {built[key]['arch']!r}: {exc}") from None
        check_model(source, key, built[key])
    seen = set()
    for e in resolved.experiments.values():
        if (e["group"], e["model_key"]) in seen:
            continue
        seen.add((e["group"], e["model_key"]))
        spec = {
            "methods": sorted({x["method"] for x in resolved.experiments.values() if x["group"] == e["group"]}),
            "models": [e["model_key"]],
        }
        check_groups(source, e["group"], spec, built, e, checked)
    return resolved
