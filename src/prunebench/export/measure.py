"""Cost and throughput of a pruned state, dense vs compact: the ``cost`` and ``throughput`` summary fields."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from prunebench.export.compact import compact_model
from prunebench.export.cost import input_shape, model_cost
from prunebench.export.stamps import THROUGHPUT_FILE, read_throughput  # noqa: F401 (re-exported)
from prunebench.export.throughput import measure_throughput
from prunebench.pruning.groups import Masks
from prunebench.train.loop import uses_channels_last

log = logging.getLogger("prunebench")


def measures(dense: nn.Module, compact: nn.Module, spec: dict, cspec: dict, timing: dict | None, device="cpu") -> dict:
    """``{"cost": {"dense", "compact"}, "throughput": {...} or None}``: costs always, throughput
    timed on ``device`` when ``timing`` (batch_sizes, warmup, repeats, amp, optional compile: see
    :func:`~prunebench.export.throughput.measure_throughput`) is given."""
    cost = {"dense": model_cost(dense, spec), "compact": model_cost(compact, cspec)}
    throughput = None
    if timing:
        dev = torch.device(device)
        throughput = measure_throughput(
            {"dense": dense, "compact": compact}, input_shape(dense, spec), timing["batch_sizes"],
            device=dev, warmup=timing["warmup"], repeats=timing["repeats"], amp=timing["amp"],
            channels_last=uses_channels_last(spec["family"], dev),  # the layout the model trains in
            compile=timing.get("compile", False),
        )  # fmt: skip
        b = str(max(timing["batch_sizes"]))
        log.info(
            "compact model: %.2fx fewer MACs, %.2fx the dense throughput at batch %s on %s",
            cost["dense"]["macs"] / cost["compact"]["macs"],
            throughput["compact"][b] / throughput["dense"][b], b, throughput["device"],
        )  # fmt: skip
        compiled = throughput.get("compiled") or {}
        if b in compiled.get("dense", {}):
            log.info(
                "compiled: %.2fx the dense throughput at batch %s (%.0f -> %.0f images/s)",
                compiled["compact"][b] / compiled["dense"][b], b, compiled["dense"][b], compiled["compact"][b],
            )  # fmt: skip
    return {"cost": cost, "throughput": throughput}


def state_measures(
    model: nn.Module, spec: dict, masks: Masks, measure_cfg: dict | None, device: torch.device | str = "cpu"
) -> dict:
    """The ``cost`` and ``throughput`` summary fields of a masked model at the end of a state.

    ``model`` is the dense model with its pruned groups zeroed; the compact model is exported from
    it, on the CPU, then timed on ``device`` when ``measure_cfg["enabled"]``.
    """
    compact, cspec = compact_model(model, spec, masks)
    cfg = measure_cfg or {}
    return measures(model, compact, spec, cspec, cfg if cfg.get("enabled", False) else None, device)


def measure_state(checkpoint: str | Path, out: str | Path, measure_cfg: dict, device: str = "auto") -> dict:
    """Time a finished state's dense and compact models and write ``out`` (the state's throughput.json).

    The workflow's measure_state rule: apart from training, so that the measure settings rerun the
    timing only. ``device`` is the config's (a leased GPU when there is one, as training takes). The
    file names the checkpoint it timed (experiment, state, epoch, config_hash), so that a reader can
    tell it from a timing of an earlier run of the state; ``throughput`` is null when
    ``measure_cfg["enabled"]`` is false.
    """
    from prunebench.export.compact import compact_from_checkpoint
    from prunebench.io import atomic_write_json
    from prunebench.train.checkpoint import load_checkpoint, trained_hash
    from prunebench.train.devices import acquire_device

    ckpt = load_checkpoint(checkpoint)
    compact, cspec, dense = compact_from_checkpoint(ckpt)
    timing = {"amp": True, **measure_cfg} if measure_cfg.get("enabled", True) else None
    info = {k: ckpt[k] for k in ("experiment", "method", "state", "epoch")}
    info["config_hash"] = ckpt.get("config_hash") or trained_hash(ckpt)  # as the state's summary has it
    info["measure"] = dict(measure_cfg)
    throughput = None
    if timing:
        lease = acquire_device(device)
        try:
            throughput = measures(dense, compact, ckpt["model_spec"], cspec, timing, lease.device)["throughput"]
        finally:
            lease.release()
    info["throughput"] = throughput
    atomic_write_json(out, info)
    return info
