"""Cost and throughput of a pruned state, dense vs compact: the ``cost`` and ``throughput`` summary fields."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from prunebench.accel.devices import acquire_device
from prunebench.accel.settings import uses_channels_last
from prunebench.config import trained_hash
from prunebench.export.compact import compact_from_checkpoint, compact_model
from prunebench.export.throughput import ROUND_SECONDS, measure_throughput, speedup_text
from prunebench.models.cost import input_shape, model_cost
from prunebench.pruning.groups import Masks
from prunebench.results.checkpoint import load_checkpoint
from prunebench.results.throughput import write_throughput_file

log = logging.getLogger("prunebench")


def measures(dense: nn.Module, compact: nn.Module, spec: dict, cspec: dict, timing: dict | None, device="cpu") -> dict:
    """``{"cost": {"dense", "compact"}, "throughput": {...} or None}``: costs always, throughput
    timed on ``device`` when ``timing`` (batch_sizes, warmup, repeats, amp, optional compile: see
    :func:`~prunebench.export.throughput.measure_throughput`) is given."""
    cost = {"dense": model_cost(dense, spec), "compact": model_cost(compact, cspec)}
    throughput = None
    if timing:
        if type(dense) is not type(compact):  # a speedup must come from the widths alone
            log.warning("dense is a %s, compact a %s: their timings differ by more than the pruning",
                        type(dense).__name__, type(compact).__name__)  # fmt: skip
        dev = torch.device(device)
        throughput = measure_throughput(
            {"dense": dense, "compact": compact}, input_shape(dense, spec), timing["batch_sizes"],
            device=dev, warmup=timing["warmup"], repeats=timing["repeats"], amp=timing["amp"],
            channels_last=uses_channels_last(spec["family"], dev),  # the layout the model trains in
            compile=timing.get("compile", False), round_seconds=timing.get("round_seconds", ROUND_SECONDS),
        )  # fmt: skip
        macs = cost["dense"]["macs"] / cost["compact"]["macs"]
        for mode, timed in (("eager", throughput), ("compiled", throughput.get("compiled") or {})):
            for b, s in (timed.get("speedup") or {}).items():
                log.info(
                    "%s, batch %s: %.0f -> %.0f images/s, %s on %s (%.2fx fewer MACs)",
                    mode, b, timed["dense"][b], timed["compact"][b], speedup_text(s), throughput["device"], macs,
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


def measure_state(
    checkpoint: str | Path, out: str | Path, measure_cfg: dict, device: str = "auto", threads: int | None = None
) -> dict:
    """Time a finished state's dense and compact models and write ``out`` (the state's throughput.json).

    The workflow's measure_state rule: apart from training, so that the measure settings rerun the
    timing only. ``device`` is the config's (a leased GPU when there is one, as training takes). The
    file names the checkpoint it timed (experiment, state, epoch, config_hash), so that a reader can
    tell it from a timing of an earlier run of the state; ``throughput`` is null when
    ``measure_cfg["enabled"]`` is false. ``threads``: the CPU threads torch times with (the job's).
    """
    if threads:
        torch.set_num_threads(threads)
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
    write_throughput_file(out, info)
    return info
