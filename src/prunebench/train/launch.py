"""Training a state in this process: on a device it leases (:func:`train_in_process`), or on the device
a rank of a multi-process state was given (:func:`train_on_device`, which every rank runs)."""

from __future__ import annotations

import logging
import os

import torch

from prunebench.accel.devices import acquire_device
from prunebench.results.layout import StatePaths
from prunebench.train import ranks
from prunebench.train.finish import state_summary, write_outputs
from prunebench.train.runner import StateRunner

log = logging.getLogger("prunebench")


def train_in_process(
    experiment: dict, state: int, paths: StatePaths, *, data_dir, download, device, threads, tracking
) -> dict:
    """Train the state here, on the device ``device`` names (a GPU leased for as long as it trains);
    returns its summary."""
    if threads:
        torch.set_num_threads(threads)
    log.info(
        "experiment %s, state %d (%s), %d CPU threads",
        experiment["name"],
        state,
        experiment["method"],
        torch.get_num_threads(),
    )
    placement = [
        f"{k}={os.environ[k]}" for k in ("SLURM_JOB_ID", "SLURMD_NODENAME", "CUDA_VISIBLE_DEVICES") if k in os.environ
    ]
    if placement:
        log.info("placement: %s", " ".join(placement))
    lease = acquire_device(device)
    try:
        return train_on_device(
            experiment, state, paths, lease.device, data_dir=data_dir, download=download, threads=threads,
            tracking=tracking,
        )  # fmt: skip
    finally:
        lease.release()


def train_on_device(
    experiment: dict, state: int, paths: StatePaths, dev: torch.device, *, data_dir, download, threads, tracking
) -> dict | None:
    """Train the state on ``dev`` and, on rank 0, write its outputs; returns its summary (None on the other ranks)."""
    runner = StateRunner(experiment, state, paths, dev, data_dir=data_dir, download=download, tracking=tracking)
    try:
        runner.train()
    finally:
        runner.tracker.close()
    if not ranks.is_main():
        return None  # rank 0 writes the state's files
    summary = state_summary(runner, threads)
    write_outputs(runner, summary)
    log.info(
        "state %d done: best val %.2f (epoch %d), test at best %.2f, final test %.2f, %d/%d params alive",
        state, summary["best_val_acc"], summary["best_epoch"], summary["best_test_acc"],
        summary["final_test_acc"], summary["params_alive"], summary["params_dense"],
    )  # fmt: skip
    return summary
