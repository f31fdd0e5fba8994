"""Fetch what training jobs read before any of them starts: the datasets and the pretrained weights.

`prunebench prepare --config CONFIG` and the workflow's prepare rule (a local rule, run where Snakemake runs,
which usually has internet) download CIFAR into ``data_dir`` and the timm hub's weights into
``weights_dir`` (or the usual Hugging Face cache), and check the models by building them on the
`meta` device. Training jobs, often on compute nodes without internet, never download: see
:func:`use_job_environment`.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

from prunebench.config import ResolvedConfig, resolve_config
from prunebench.errors import ModelError
from prunebench.io import atomic_write_json
from prunebench.prepare.models import resolve_checked
from prunebench.results.layout import prepared_name

log = logging.getLogger("prunebench")

# Where build_vit caches the timm hub's weights (the config's weights_dir, passed on by the jobs)
WEIGHTS_DIR_ENV = "PRUNEBENCH_WEIGHTS_DIR"
HUB_OFFLINE_ENV = "HF_HUB_OFFLINE"
PREPARE_HINT = "run `prunebench prepare --config CONFIG` where there is internet (the workflow runs it before any job)"


def _set_hub_offline(offline: bool) -> None:
    """Turn the Hugging Face hub's offline mode on or off, also when the hub is already imported
    (it reads the variable once, at import)."""
    os.environ[HUB_OFFLINE_ENV] = "1" if offline else "0"
    hub = sys.modules.get("huggingface_hub.constants")
    if hub is not None:
        hub.HF_HUB_OFFLINE = offline


def use_weights_dir(weights_dir: str | None) -> None:
    """Cache the timm hub's weights in ``weights_dir`` (None: the usual Hugging Face cache)."""
    if weights_dir:
        os.environ[WEIGHTS_DIR_ENV] = str(Path(weights_dir).resolve())
    else:
        os.environ.pop(WEIGHTS_DIR_ENV, None)


def use_job_environment(weights_dir: str | None) -> None:
    """What a training job sets before it loads anything: pretrained weights come from the cache
    that prepare filled, never from the network."""
    use_weights_dir(weights_dir)
    _set_hub_offline(True)


def _fetch_dataset(experiment: dict, data_dir: str, download: bool) -> dict:
    """Load the experiment's dataset as a job will, downloading it first when ``download``; an image
    folder is never downloaded: its layout is checked and one image per class decoded."""
    from prunebench.data import open_dataset

    name, started = experiment["dataset"], time.monotonic()
    splits = open_dataset(experiment, data_dir, download)
    if "dataset_source" in experiment:
        from prunebench.data.folder import decode

        for split in ("train", "val", "test"):
            firsts = {label: path for path, label in reversed(splits.samples[split])}
            for path in firsts.values():
                decode(path)
        log.info("image folder %s at %s: %d classes, %s", name, splits.root, splits.num_classes, splits.sizes())
        marker = {"name": name, "root": str(Path(splits.root).resolve()), "sizes": splits.sizes()}
        return {**marker, "num_classes": splits.num_classes}
    log.info("dataset %s ready (%s) in %.1f s", name, splits.sizes(), time.monotonic() - started)
    return {"name": name, "data_dir": data_dir, "sizes": splits.sizes()}


def _fetch_weights(model_key: str, model: dict, download: bool, weights_dir: str | None) -> dict:
    """Load the model's pretrained weights once on the CPU: from the hub into the cache when
    ``download``, else only from the cache (so that a missing file is reported here, not in a job)."""
    from prunebench.models import build_model, model_spec

    pretrained = model["pretrained"]
    if pretrained is False:
        return {"pretrained": False}
    use_weights_dir(weights_dir)
    _set_hub_offline(not download)
    try:
        build_model(model_spec(model, num_classes=10), pretrained=pretrained)
    except ModelError as exc:
        if pretrained is True and not download:
            raise ModelError(
                f"models.{model_key}: the timm hub weights of {model['arch']} are not in the cache "
                f"({_cache_name(weights_dir)}) and download: false; {PREPARE_HINT} with download: true, "
                f"or set models.{model_key}.pretrained to a local weights file ({exc})"
            ) from None
        raise
    source = "timm hub" if pretrained is True else str(Path(pretrained).resolve())
    log.info("pretrained weights of %s (%s) ready in %s", model_key, model["arch"], _cache_name(weights_dir))
    return {"pretrained": source, "cache": _cache_name(weights_dir) if pretrained is True else None}


def _cache_name(weights_dir: str | None) -> str:
    if weights_dir:
        return str(Path(weights_dir).resolve())
    from huggingface_hub import constants

    return constants.HF_HUB_CACHE


def prepare(
    config: dict,
    source: str = "config",
    *,
    only: tuple[str, str] | None = None,
    markers: str | Path | None = None,
) -> list[dict]:
    """Check the models (built on the `meta` device) and fetch the datasets and pretrained weights
    of ``config``'s experiments: every dataset x model pair, or ``only`` (dataset, model key).

    With ``download: false`` nothing is downloaded: prepare only checks that everything is there.
    Writes one marker JSON per pair into ``markers`` (a folder) when given; returns their contents.
    """
    pairs = sorted({(e["dataset"], e["model_key"]) for e in resolve_config(config, source).experiments.values()})
    if only is not None:
        pairs = [only]
    resolved: ResolvedConfig = resolve_checked(config, source, models={m for _, m in pairs})
    data_dir, download = resolved.runtime["data_dir"], resolved.runtime["download"]
    models = {e["model_key"]: e["model"] for e in resolved.experiments.values()}
    data = {(e["dataset"], e["model_key"]): e for e in resolved.experiments.values()}
    datasets, weights, written = {}, {}, []
    for dataset, model_key in pairs:
        if dataset not in datasets:
            datasets[dataset] = _fetch_dataset(data[dataset, model_key], data_dir, download)
        if model_key not in weights:
            weights[model_key] = _fetch_weights(model_key, models[model_key], download, resolved.weights_dir)
        marker = {
            "dataset": datasets[dataset],
            "model": model_key,
            "arch": models[model_key]["arch"],
            "weights": weights[model_key],
            "prepared_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        if markers is not None:
            atomic_write_json(Path(markers) / prepared_name(dataset, model_key), marker)
        written.append(marker)
    return written
