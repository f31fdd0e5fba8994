"""Export one state checkpoint to a compact model file plus a JSON of what it costs."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from prunebench.errors import CheckpointError
from prunebench.export.compact import compact_from_checkpoint, save_compact
from prunebench.export.measure import measures
from prunebench.io import atomic_write_json
from prunebench.train.checkpoint import load_checkpoint

log = logging.getLogger("prunebench")


def export_checkpoint(
    checkpoint: str | Path,
    out_model: str | Path,
    out_json: str | Path | None = None,
    *,
    summary: str | Path | None = None,
    measure: dict | None = None,
    device: str = "cpu",
) -> dict:
    """Write the compact model of ``checkpoint`` to ``out_model`` and its costs to ``out_json``.

    Throughput comes from the state's ``summary`` (timed on the training device at the end of the
    state) or, when ``measure`` (batch_sizes, warmup, repeats, amp) is given, is timed here on ``device``.
    """
    ckpt = load_checkpoint(checkpoint)
    compact, cspec, dense = compact_from_checkpoint(ckpt)
    source = {k: ckpt[k] for k in ("experiment", "method", "state", "epoch")}
    source["checkpoint"] = str(checkpoint)
    save_compact(out_model, compact, cspec, source)
    timing = {"amp": True, **measure} if measure else None
    info = {
        **source,
        "compact_model": str(out_model),
        "model_spec": cspec,
        **measures(dense, compact, ckpt["model_spec"], cspec, timing, device),
    }
    if not measure and summary:
        try:
            info["throughput"] = json.loads(Path(summary).read_text()).get("throughput")
        except (OSError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"cannot read the state summary {summary} ({exc}); rerun its state") from None
    d, c = info["cost"]["dense"], info["cost"]["compact"]
    log.info(
        "exported %s: %d -> %d params, %.1f -> %.1f MMACs (%.2fx fewer)",
        checkpoint, d["params"], c["params"], d["macs"] / 1e6, c["macs"] / 1e6, d["macs"] / c["macs"],
    )  # fmt: skip
    if out_json:
        atomic_write_json(out_json, info)
    return info
