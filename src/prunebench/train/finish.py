"""A finished state: its summary and its declared outputs.

:func:`state_summary` gathers the summary.json of a state its runner has trained (accuracies, what was
kept, costs, timings, how and where it ran); :func:`write_outputs` writes the state's outputs, sealed
in the recovery folder first, then linked into place (:mod:`prunebench.train.recovery`).
"""

from __future__ import annotations

import logging
import platform
import time

import torch

from prunebench.accel.compile_stats import compile_since, compile_text
from prunebench.export.measure import state_measures
from prunebench.models import build_model
from prunebench.provenance import provenance, versions
from prunebench.pruning.groups import alive_params, kept_counts, param_masks
from prunebench.pruning.plan import alive_fraction
from prunebench.pruning.schedule import budget_kind
from prunebench.results.metrics import experiment_ids
from prunebench.train import ranks
from prunebench.train.checkpoint import make_checkpoint
from prunebench.train.recovery import finish_state
from prunebench.train.resume import Progress
from prunebench.train.runner import StateRunner
from prunebench.train.tracking import write_csvs

log = logging.getLogger("prunebench")


def state_summary(run: StateRunner, threads: int | None) -> dict:
    """The finished state's summary.json (its fields: :mod:`prunebench.results.summary`)."""
    prog, model, plan, dev = run.prog, run.model, run.plan, run.dev
    trained = [r for r in prog.rows if r["epoch"] > 0]
    evaluated = [r for r in trained if r.get("evaluated", True)]
    best = next(r for r in trained if r["epoch"] == prog.best_epoch)
    last = trained[-1]
    wall = time.time() - run.wall_start
    return {
        **experiment_ids(run.experiment, run.state),
        "epoch": last["epoch"],
        "epochs": len(trained),
        "density": alive_fraction(plan.final_masks),  # measured: the fraction of prunable groups kept
        "budget": {"kind": budget_kind(run.experiment["prune"]), "target": plan.density},
        "event_epochs": run.method.event_epochs(prog.rows),
        "test_size": run.test_size,
        "best_epoch": best["epoch"],
        "best_val_acc": best["val_acc"],
        "best_test_acc": best["test_acc"],
        "final_val_acc": last["val_acc"],
        "final_test_acc": last["test_acc"],
        # among the epochs whose test was evaluated (train.eval_test: best and final, epoch 0 aside)
        "max_test_acc": max(r["test_acc"] for r in evaluated if "test_acc" in r),
        "acc_after_pruning": prog.rows[0]["test_acc"],
        "params_dense": sum(p.numel() for p in model.parameters()),
        "params_alive": alive_params(model, param_masks(model, run.groupsets, plan.final_masks)),
        "kept": kept_counts(run.groupsets, plan.final_masks),
        "group_sizes": _sizes(run.groupsets),
        "model_spec": run.spec,
        "wall_seconds": wall,
        "train_seconds": prog.train_seconds,
        "eval_seconds": prog.eval_seconds,
        "checkpoint_seconds": prog.checkpoint_seconds,
        "evaluated_epochs": len(evaluated),
        "time_split": _time_split(prog, wall),
        "compile": _compile(run),
        "images_per_second": sum(r["images_per_second"] for r in trained) / len(trained),
        "device": str(dev),
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu",
        "threads": threads or torch.get_num_threads(),
        "processes": ranks.world(),  # train.gpus x train.nodes: the ranks that trained it together (DDP)
        "run": _run_settings(run),
        "versions": versions(),
        # params/MACs of the dense and the physically slimmed model; their throughput is timed apart
        # (the workflow's measure_state, into throughput.json), so `throughput` stays null here
        **state_measures(model, run.spec, plan.final_masks, None, dev),
        **run.method.summary(run),
        # how it was produced: source, host, device and driver, packages, job, times, peak memory (last:
        # its end time and peaks cover the whole state)
        "provenance": provenance(
            dev,
            run.experiment,
            started_at=prog.started_at or run.process_started_at,
            process_started_at=run.process_started_at,
        ),
    }


def _compile(run: StateRunner) -> dict:
    """How the state compiled: its settings, and (compiled) what torch.compile did in this process
    since the state started (:mod:`prunebench.accel.compile_stats`: seconds, graphs, graph breaks,
    cache hits), also written to the state's log. A resumed state counts its last process only."""
    out = {
        "setting": run.tcfg.get("compile", False),
        "compiled": run.compiled,
        "mode": run.compile_mode,
        "backend": run.compile_backend,
        "cache_dir": run.compile_cache,
    }
    if run.compiled:
        stats = compile_since(run.compile_start)
        log.info("state %d compile: %s", run.state, compile_text(stats))
        if stats["graph_breaks"]:
            log.warning(
                "state %d: torch.compile split the model into several graphs (%d graph breaks), each step "
                "running eager code between them; TORCH_LOGS=graph_breaks says where",
                run.state, stats["graph_breaks"],
            )  # fmt: skip
        out.update(stats)
    return out


_LOADERS = {"DeviceData": "device", "FolderData": "torchvision", "DaliData": "dali"}


def _run_settings(run: StateRunner) -> dict:
    """How the state ran, where the summary's other fields (device, threads, processes, compile) do not
    say: the settings in effect, taken from the run (the configured ones are in provenance.experiment)."""
    tcfg, data = run.tcfg, run.data
    workers = getattr(data, "workers", getattr(data, "threads", None))  # image folders only
    return {
        "gpus": tcfg.get("gpus", 1),
        "nodes": tcfg.get("nodes", 1),
        "data_loader": _LOADERS.get(type(data).__name__, type(data).__name__),
        "data_workers": workers,
        "amp": bool(tcfg["amp"]) and run.dev.type == "cuda",  # bf16 autocast, on CUDA only
        "channels_last": run.channels_last,
        "eval_every": run.eval_every,
        "eval_test": run.eval_test,
        "eval_batch_size": run.eval_batch,
        "eval_padded": run.eval_padded,
        "background_checkpoints": tcfg.get("background_checkpoints", True),
        "resumed_after_epoch": run.resumed_after,  # this process continued a killed one; null: it ran from the start
        "training": run.training,  # slim: the slim model of the alive groups trained; masked: the dense one
        "training_reason": run.training_reason,  # why masked (null when slim)
    }


def _time_split(prog: Progress, wall: float) -> dict[str, float]:
    """Shares of the state's wall time: training passes, evaluations, the training thread's waits on
    checkpoint writes, and the rest (start-up, data loading, pruning, the summary)."""
    wall = max(wall, 1e-9)
    parts = {"train": prog.train_seconds, "eval": prog.eval_seconds, "checkpoint": prog.checkpoint_seconds}
    split = {k: v / wall for k, v in parts.items()}
    split["other"] = max(0.0, 1.0 - sum(split.values()))
    return split


def write_outputs(run: StateRunner, summary: dict) -> None:
    """Write the finished state's declared outputs: sealed in the recovery folder first, then linked
    into place (see :mod:`prunebench.train.recovery`)."""
    init = None
    if run.state == 0:
        init_model = build_model(run.spec)
        init_model.load_state_dict(run.init_state_dict)
        init = make_checkpoint(
            experiment=run.experiment, model_spec=run.spec, model=init_model, masks=run.plan.final_masks,
            state=0, epoch=0, metrics={},
        )  # fmt: skip
    # beside the outputs, not among them (tracking); the chain's summary.csv is current after the last epoch
    write_csvs(run.paths.out_dir, run.experiment, run.state, run.prog.rows)
    predictions = run.predictions if all(v is not None for v in run.predictions.values()) else None
    if predictions is None:  # resumed from a resume.pt written before the predictions were kept
        log.warning("state %d: the per-image predictions of its best epoch are unknown; no predictions.npz", run.state)
    finish_state(
        run.paths, run.experiment, run.state, last=run.checkpoint(run.epochs, run.prog.rows[-1]),
        best=run.paths.best_at(run.prog.best_epoch), rows=run.prog.rows, summary=summary, init=init,
        predictions=predictions,
    )  # fmt: skip


def _sizes(groupsets) -> dict:
    out: dict[str, dict[str, int]] = {}
    for gs in groupsets:
        out.setdefault(gs.layer, {})[gs.kind] = gs.size
    return out
