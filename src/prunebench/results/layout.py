"""Where everything lies under a results folder: the one spelling of its layout.

::

    results/
      {experiment}/state{k}/          a finished state: last.pt best.pt [init.pt] metrics.jsonl summary.json
                                      (and predictions.npz, throughput.json, summary.csv beside them)
      {experiment}/recovery/state{k}/ a running state's progress, locks and sealed outputs (train/recovery.py)
      {experiment}/retrained/{stamp}/ states set aside by `prunebench retrain`
      {experiment}/compact/           the final state's compact model (model.pt, cost.json)
      shared/{run}/state0/            a dense state 0 trained once for every method of a group
      reports/                        index.md, summary.md, {dataset}_{model}.md and its plot folder
      .prepared/{dataset}-{model}.json  what the prepare rule made ready

The workflow's rules (``rules/common.smk``) build their paths with these functions; their strings
are joined with ``/`` as Snakemake's wildcards are written (``state_dir(RESULTS, "{run}", 0)``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

SHARED_DIR = "shared"
RECOVERY_DIR = "recovery"
RETRAINED_DIR = "retrained"
COMPACT_DIR = "compact"
REPORTS_DIR = "reports"
INDEX_REPORT, SUMMARY_REPORT = "index", "summary"  # reports/index.md, reports/summary.md (and .html)
PREPARED_DIR = ".prepared"

# a state's files
LAST, BEST, INIT = "last.pt", "best.pt", "init.pt"
METRICS, SUMMARY = "metrics.jsonl", "summary.json"
PREDICTIONS = "predictions.npz"  # published with the outputs, not declared to Snakemake
THROUGHPUT = "throughput.json"  # written by the workflow's measure_state
OUTPUTS = (LAST, BEST, METRICS, SUMMARY)  # a state's declared outputs; summary last: it marks a state done
# the compact export of an experiment's final state
COMPACT_MODEL, COMPACT_COST = "model.pt", "cost.json"

# a running state's recovery folder (prunebench.train.recovery, prunebench.train.resume)
LOCK_NAME = "trainer.lock"
RANKS_LOCK = "ranks.lock"  # held shared by each process of a multi-process state while it lives
FINISHED = "finished"  # the sealed copy of a finished state's outputs
MANIFEST = "manifest.json"
PROGRESS_METRICS = METRICS  # the metrics of the epochs so far
RESUME = "resume.pt"


@dataclass(frozen=True)
class OutputPaths:
    """The folders the workflow writes a config's files to, all under its ``output_dir``."""

    results: str
    logs: str
    benchmarks: str


def output_folders(output_dir: str) -> OutputPaths:
    """``results``, ``logs`` and ``benchmarks`` under ``output_dir`` (a config's; see
    :func:`prunebench.config.output_paths`)."""
    return OutputPaths(*(os.path.normpath(os.path.join(output_dir, name)) for name in ("results", "logs", "benchmarks")))


def output_names(state: int) -> tuple[str, ...]:
    """The declared outputs of a state, in the order they are published."""
    return (INIT, *OUTPUTS) if state == 0 else OUTPUTS


def checkpoint_names(state: int) -> tuple[str, ...]:
    """The checkpoints a state writes, whose digests its summary records (``files``)."""
    return tuple(name for name in output_names(state) if name.endswith(".pt"))


def state_name(state: int | str) -> str:
    return f"state{state}"


def run_dir(results_dir: str, name: str) -> str:
    """The folder of an experiment, or of a shared state-0 run (``name`` = ``shared/{run}``)."""
    return f"{results_dir}/{name}"


def state_dir(results_dir: str, name: str, state: int | str) -> str:
    return f"{results_dir}/{name}/{state_name(state)}"


def state_file(results_dir: str, name: str, state: int | str, file: str) -> str:
    return f"{state_dir(results_dir, name, state)}/{file}"


def recovery_dir(results_dir: str, name: str, state: int | str) -> str:
    """Mid-state recovery files: outside the declared outputs, so Snakemake never deletes them."""
    return f"{results_dir}/{name}/{RECOVERY_DIR}/{state_name(state)}"


def state_in(run: str | Path, state: int | str) -> Path:
    """A state's folder in the folder ``run`` of its experiment or shared run."""
    return Path(run) / state_name(state)


def recovery_in(run: str | Path, state: int | str) -> Path:
    """A state's recovery folder in the folder ``run`` of its experiment or shared run."""
    return Path(run) / RECOVERY_DIR / state_name(state)


def compact_in(run: str | Path) -> Path:
    """The compact export's folder in the folder ``run`` of an experiment."""
    return Path(run) / COMPACT_DIR


def recovery_dir_of(state_dir: str | Path) -> Path:
    """The recovery folder of the state whose outputs are in ``state_dir`` (``{run}/state{k}`` ->
    ``{run}/recovery/state{k}``)."""
    state_dir = Path(state_dir)
    return state_dir.parent / RECOVERY_DIR / state_dir.name


def retrained_dir(run: str | Path, stamp: str) -> Path:
    """Where ``prunebench retrain`` sets a run's states aside."""
    return Path(run) / RETRAINED_DIR / stamp


def compact_file(results_dir: str, name: str, file: str) -> str:
    return f"{results_dir}/{name}/{COMPACT_DIR}/{file}"


def shared_run(name: str) -> str:
    """The folder (under results/) of the shared state-0 run ``name``."""
    return f"{SHARED_DIR}/{name}"


def prepared_name(dataset: str, model_key: str) -> str:
    """The name of the prepare marker of a dataset and model, in :func:`prepared_dir`."""
    return f"{dataset}-{model_key}.json"


def prepared_marker(results_dir: str, dataset: str, model_key: str) -> str:
    """The file the prepare rule writes once a dataset and model are on this machine."""
    return f"{results_dir}/{PREPARED_DIR}/{prepared_name(dataset, model_key)}"


def prepared_dir(results_dir: str | Path) -> Path:
    return Path(results_dir) / PREPARED_DIR


def reports_dir(results_dir: str | Path) -> str:
    return f"{results_dir}/{REPORTS_DIR}"


def report_file(results_dir: str | Path, name: str, suffix: str = ".md") -> str:
    """A report of the folder ``results_dir``: ``index``, ``summary`` or a :func:`comparison_name`, in
    Markdown (``.md``) or HTML (``.html``)."""
    return f"{reports_dir(results_dir)}/{name}{suffix}"


def comparison_name(dataset: str, model: str) -> str:
    """A comparison report's file stem, also the name of its plot folder."""
    return f"{dataset}_{model}"


def comparison_report(results_dir: str, dataset: str, model: str) -> str:
    return report_file(results_dir, comparison_name(dataset, model))


def comparison_plot_dir(results_dir: str | Path, dataset: str, model: str) -> str:
    """The folder of a comparison report's plots, beside the report."""
    return report_file(results_dir, comparison_name(dataset, model), "")


def comparison_paths(reports: str | Path, dataset: str, model: str) -> tuple[Path, Path]:
    """Where a comparison's Markdown report and its plot folder go in the folder ``reports``."""
    name = comparison_name(dataset, model)
    return Path(reports) / f"{name}.md", Path(reports) / name


@dataclass
class StatePaths:
    """Where one state's files go."""

    out_dir: Path
    recovery_dir: Path
    previous: Path | None = None  # the previous state's last.pt (states >= 1)
    init: Path | None = None  # state 0's init.pt (rewind: init)

    def __post_init__(self):
        self.out_dir, self.recovery_dir = Path(self.out_dir), Path(self.recovery_dir)

    @classmethod
    def under(cls, results_dir: str | Path, experiment: str, state: int) -> StatePaths:
        """The paths of state ``state`` of ``experiment`` (or of a shared run) in the folder ``results_dir``."""
        folder = str(results_dir)
        return cls(
            Path(state_dir(folder, experiment, state)),
            Path(recovery_dir(folder, experiment, state)),
            Path(state_file(folder, experiment, state - 1, LAST)) if state else None,
            Path(state_file(folder, experiment, 0, INIT)),
        )

    @property
    def progress_metrics(self) -> Path:
        return self.recovery_dir / PROGRESS_METRICS

    def best_at(self, epoch: int) -> Path:
        """The best checkpoint so far, named by its epoch: ``resume.pt`` says which one is current, so
        a kill between writing a new best and the next ``resume.pt`` cannot leave the two disagreeing."""
        return self.recovery_dir / f"best-epoch{epoch}.pt"

    def drop_best_except(self, epoch: int) -> None:
        for path in self.recovery_dir.glob("best-epoch*.pt"):
            if path != self.best_at(epoch):
                path.unlink(missing_ok=True)

    @property
    def resume(self) -> Path:
        return self.recovery_dir / RESUME


# --- reading a results folder ------------------------------------------------------------------


def is_shared(state_dir: str | Path) -> bool:
    """Whether ``state_dir`` (``.../{run}/state{k}``) is a state of a shared run (``shared/{run}``)."""
    return Path(state_dir).parent.parent.name == SHARED_DIR


def run_of(state_dir: str | Path) -> str:
    """The name of the run a state folder belongs to: ``{experiment}``, or ``shared/{run}``."""
    run = Path(state_dir).parent
    return shared_run(run.name) if is_shared(state_dir) else run.name


def state_of(state_dir: str | Path) -> int:
    """The state number of a folder ``state{k}`` (-1 for another name)."""
    m = re.fullmatch(r"state(\d+)", Path(state_dir).name)
    return int(m.group(1)) if m else -1


def find_summaries(results_dir: str | Path) -> list[Path]:
    """summary.json of every finished state under ``results_dir``, and of the shared dense states 0."""
    root = Path(results_dir)
    found = [*root.glob(f"*/state*/{SUMMARY}"), *root.glob(f"{SHARED_DIR}/*/state0/{SUMMARY}")]
    return sorted(found, key=lambda p: (is_shared(p.parent), p.parent.parent.name, state_of(p.parent)))


def has_states(results_dir: str | Path) -> bool:
    """Whether ``results_dir`` holds any prune state, finished or running (a folder ``state{k}`` of an
    experiment or a shared run, or its recovery folder)."""
    root = Path(results_dir)
    patterns = (
        "*/state[0-9]*", f"*/{RECOVERY_DIR}/state[0-9]*", f"{SHARED_DIR}/*/state0",
        f"{SHARED_DIR}/*/{RECOVERY_DIR}/state0",
    )  # fmt: skip
    return any(p.is_dir() for pattern in patterns for p in root.glob(pattern))


def retrain_command(state_dir: str | Path) -> str:
    """The command that trains the state in ``state_dir`` and the states after it again (docs/recovery.md, "What reruns
    what"; deleting the folder is not enough: Snakemake does not rebuild a file whose consumers are done)."""
    state_dir = Path(state_dir)
    run = state_dir.parent
    name = f"{run.parent.name}/{run.name}" if run.parent.name == SHARED_DIR else run.name
    k = state_dir.name.removeprefix("state")
    return f"prunebench retrain --config CONFIG {name} --from-state {k if k.isdigit() else 0}"


def retrain_fix(state_dir: str | Path) -> str:
    """How to get a damaged finished state's files back: a backup, or training it (and what follows) again."""
    return f"restore it from a backup, or train the state again: {retrain_command(state_dir)}, then run the workflow"
