"""Export one state checkpoint to a compact model file plus a JSON of what it costs."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from prunebench.config import check_trained_for, trained_hash
from prunebench.errors import CheckpointError
from prunebench.export.compact import compact_from_checkpoint, save_compact
from prunebench.export.measure import measures
from prunebench.io import atomic_write_json
from prunebench.results.checkpoint import load_checkpoint
from prunebench.results.layout import BEST, LAST, SUMMARY
from prunebench.results.summary import read_summary_file
from prunebench.results.throughput import read_throughput

log = logging.getLogger("prunebench")


def export_checkpoint(
    checkpoint: str | Path,
    out_model: str | Path,
    out_json: str | Path | None = None,
    *,
    summary: str | Path | None = None,
    throughput: str | Path | None = None,
    measure: dict | None = None,
    device: str = "cpu",
    experiment: dict | None = None,
) -> dict:
    """Write the compact model of ``checkpoint`` to ``out_model`` and its costs to ``out_json``.

    Throughput comes from the state's ``throughput`` file (its throughput.json, timed on the training
    device by the workflow's measure_state; looked for beside ``summary`` when not given), else from
    the ``summary`` of a state finished before timing had its own rule, or, when ``measure``
    (batch_sizes, warmup, repeats, amp) is given, is timed here on ``device``.
    A checkpoint that is not what its place says is refused: see :func:`check_source`; with
    ``experiment`` (the workflow's export of a final state), it must also be that experiment's last
    state trained under its current settings.
    """
    ckpt = load_checkpoint(checkpoint)
    check_source(ckpt, checkpoint)
    if experiment is not None:
        check_trained_for(ckpt, checkpoint, experiment, experiment["prune"]["states"] - 1)
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
            state_summary = read_summary_file(summary)
        except (OSError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"cannot read the state summary {summary} ({exc}); rerun its state") from None
        where = Path(throughput).parent if throughput else Path(summary).parent
        info["throughput"] = read_throughput(where, state_summary)
    d, c = info["cost"]["dense"], info["cost"]["compact"]
    log.info(
        "exported %s: %d -> %d params, %.1f -> %.1f MMACs (%.2fx fewer)",
        checkpoint, d["params"], c["params"], d["macs"] / 1e6, c["macs"] / 1e6, d["macs"] / c["macs"],
    )  # fmt: skip
    if out_json:
        atomic_write_json(out_json, info)
    return info


def check_source(ckpt: dict, path: str | Path) -> None:
    """Refuse a checkpoint that is not the state whose folder it sits in: it must agree with the
    ``summary.json`` beside it, when there is one (experiment, method, state, training-config hash)."""
    path = Path(path)
    fix = (
        f"it was copied there from another run or left by an older one; rerun the workflow so that "
        f"{path.parent} is rebuilt, or export the checkpoint from the folder it was written to"
    )
    summary_path = path.parent / SUMMARY
    if not summary_path.is_file():
        return
    try:
        summary = read_summary_file(summary_path)
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"cannot read the state summary {summary_path} ({exc}); rerun its state") from None
    for key in ("experiment", "method", "state"):
        if key in summary and summary[key] != ckpt[key]:
            raise CheckpointError(
                f"checkpoint {path} is for {key} {ckpt[key]!r}, but {summary_path} beside it is for "
                f"{summary[key]!r}; {fix}"
            )
    # the same experiment and settings, but another run of it: its epoch or accuracy differ
    epoch_key, acc_key = {LAST: ("epoch", "final_test_acc"), BEST: ("best_epoch", "best_test_acc")}.get(
        path.name, (None, None)
    )
    metrics = ckpt.get("metrics") or {}
    if (
        epoch_key
        and epoch_key in summary
        and (
            ckpt["epoch"] != summary[epoch_key]
            or (acc_key in summary and "test_acc" in metrics and metrics["test_acc"] != summary[acc_key])
        )
    ):
        raise CheckpointError(
            f"checkpoint {path} (epoch {ckpt['epoch']}, test accuracy {metrics.get('test_acc')}) is not the "
            f"{path.stem} checkpoint of the run that wrote {summary_path} (epoch {summary[epoch_key]}, test "
            f"accuracy {summary.get(acc_key)}); {fix}"
        )
    have = trained_hash(ckpt)
    if summary.get("config_hash") and have and summary["config_hash"] != have:
        raise CheckpointError(
            f"checkpoint {path} was trained under other settings than the state that wrote {summary_path} "
            f"(config hash {have[:12]} vs {summary['config_hash'][:12]}); {fix}"
        )
