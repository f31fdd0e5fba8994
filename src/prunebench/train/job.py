"""The one training job: a prune state trained, as ``prunebench train-state`` and the workflow's
training rules run it (``workflow/scripts/train_state.py``).

:func:`run_job` takes the state of an experiment (or of a shared state-0 run) from a resolved config:
a finished state is left as it is, an experiment whose state 0 is shared (``share_state0``) gets its
copy of that run's state 0 (trained first where it is missing), and any other state is trained by
:func:`train_state`, which keeps one trainer per state, adopts a state an earlier attempt finished and
trains the state in this process or in its train.gpus x train.nodes processes.
"""

from __future__ import annotations

from pathlib import Path

from prunebench.config import ResolvedConfig, same_training, training_hash
from prunebench.results.layout import METRICS, SUMMARY, StatePaths
from prunebench.results.metrics import read_rows
from prunebench.results.summary import read_summary_file
from prunebench.train.distributed import train_distributed
from prunebench.train.launch import train_in_process
from prunebench.train.ranks import world_of
from prunebench.train.recovery import (
    adopt_finished,
    check_recorded,
    drop_optional,
    lock_state,
    release_finished,
    wait_for_ranks,
)
from prunebench.train.share import adopt_state0
from prunebench.train.tracking import write_csvs


def run_job(
    resolved: ResolvedConfig,
    name: str,
    state: int,
    results_dir: str | Path,
    *,
    threads: int | None = None,
    paths: StatePaths | None = None,
) -> dict | None:
    """Train state ``state`` of ``name`` (an experiment or a shared state-0 run of ``resolved``) into the
    results folder ``results_dir``, as a job does: nothing is downloaded. Returns the state's summary, or
    None when it had finished under the experiment's current settings already (nothing is done).

    ``paths``: where the state's files go, when the caller has them (the workflow's, as Snakemake
    planned them); by default the layout of ``results_dir`` (:meth:`StatePaths.under`)."""
    experiment = resolved.experiments.get(name) or resolved.state0_runs[name]
    paths = paths or StatePaths.under(results_dir, name, state)
    if is_finished(paths.out_dir, experiment):  # as Snakemake would: a finished state is never trained again
        return None
    runtime = {**resolved.runtime, "download": False}
    settings = {k: v for k, v in runtime.items() if k != "logging"}
    run = resolved.state0_of.get(name, name)
    if state == 0 and run != name:  # the shared state 0, then the experiment's copy of it
        shared = StatePaths.under(results_dir, run, 0)
        if not (shared.out_dir / SUMMARY).is_file():
            train_state(
                resolved.state0_runs[run], 0, shared, threads=threads, tracking=runtime.get("logging"), **settings
            )
        return adopt_state0(shared.out_dir, paths.out_dir, experiment, tracking=runtime.get("logging"))
    return train_state(experiment, state, paths, threads=threads, tracking=runtime.get("logging"), **settings)


def is_finished(out_dir: Path, experiment: dict) -> bool:
    """Whether ``out_dir`` holds the state, finished under the experiment's current training settings."""
    try:
        summary = read_summary_file(Path(out_dir) / SUMMARY)
    except (OSError, ValueError):
        return False
    if not isinstance(summary, dict):
        return False
    trained = (summary.get("provenance") or {}).get("experiment")
    return same_training(summary.get("config_hash"), trained, training_hash(experiment))


def train_state(
    experiment: dict,
    state: int,
    paths: StatePaths,
    *,
    data_dir: str = "data",
    download: bool = True,
    device: str = "auto",
    threads: int | None = None,
    tracking: dict | None = None,
) -> dict:
    """Train prune state ``state`` of ``experiment`` and write its files; returns the summary.

    The state's recovery folder is locked for as long as this runs (a second trainer of the state
    stops with StateBusyError). The previous state's ``last.pt`` must have the sha256 its summary
    records (CheckpointError otherwise). A state an earlier attempt finished is adopted, not trained again.
    ``tracking`` is the config's tracking settings (``logging``; prunebench.train.tracking).
    """
    label = f"state {state} of {experiment['name']}"
    lock = lock_state(paths.recovery_dir, label)
    try:
        # the processes of a killed multi-process attempt may still be leaving (writing the bundle, say)
        wait_for_ranks(paths.recovery_dir, label)
        if paths.previous is not None:  # first: a damaged input stops the state before anything is set aside
            check_recorded(paths.previous, state - 1, experiment["name"], label)
        done = adopt_finished(paths, experiment, state)
        if paths.previous is not None:
            release_finished(Path(paths.previous).parent)  # this job started: Snakemake recorded it
        if done is not None:
            write_csvs(paths.out_dir, experiment, state, read_rows(paths.out_dir / METRICS))
            return done
        drop_optional(paths.out_dir)  # an earlier run's predictions.npz must not stand beside this run's files
        train = train_distributed if world_of(experiment) > 1 else train_in_process  # train.gpus x train.nodes
        return train(
            experiment, state, paths, data_dir=data_dir, download=download, device=device, threads=threads,
            tracking=tracking,
        )  # fmt: skip
    finally:
        lock.release()
