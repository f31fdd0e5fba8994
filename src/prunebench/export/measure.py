"""Cost and throughput of a pruned state, dense vs compact: the ``cost`` and ``throughput`` summary fields."""

from __future__ import annotations

import logging

import torch
from torch import nn

from prunebench.export.compact import compact_model
from prunebench.export.cost import input_shape, model_cost
from prunebench.export.throughput import measure_throughput
from prunebench.pruning.groups import Masks

log = logging.getLogger("prunebench")


def state_measures(
    model: nn.Module, spec: dict, masks: Masks, measure_cfg: dict | None, device: torch.device | str = "cpu"
) -> dict:
    """``{"cost": {"dense", "compact"}, "throughput": {...} or None}`` of a masked model.

    ``model`` is the dense model with its pruned groups zeroed; the compact model is exported from
    it, on the CPU, then timed on ``device`` when ``measure_cfg["enabled"]``.
    """
    compact, _ = compact_model(model, spec, masks)
    cost = {"dense": model_cost(model, spec), "compact": model_cost(compact, spec)}
    throughput = None
    cfg = measure_cfg or {}
    if cfg.get("enabled", False):
        throughput = measure_throughput(
            {"dense": model, "compact": compact}, input_shape(model, spec), cfg["batch_sizes"],
            device=device, warmup=cfg["warmup"], repeats=cfg["repeats"], amp=cfg["amp"],
        )  # fmt: skip
        b = str(max(cfg["batch_sizes"]))
        log.info(
            "compact model: %.2fx fewer MACs, %.2fx the dense throughput at batch %s on %s",
            cost["dense"]["macs"] / cost["compact"]["macs"],
            throughput["compact"][b] / throughput["dense"][b], b, throughput["device"],
        )  # fmt: skip
    return {"cost": cost, "throughput": throughput}
