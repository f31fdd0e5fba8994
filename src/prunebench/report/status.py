"""Progress of running experiments, read from the files the jobs write (``prunebench status``).

A finished state has ``state{k}/summary.json``; a running state appends one line per epoch to
``recovery/state{k}/metrics.jsonl`` (see prunebench.train.state), which is how the current epoch
is known without asking the scheduler. A finished state whose summary records another
``config_hash`` than the planned experiment's (see prunebench.config.training_hash) was trained
under other settings: it counts as stale, not done.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from prunebench.config import SHARED_DIR
from prunebench.report.load import find_summaries, plan_from_experiments, read_epochs, read_summary


def _fmt_duration(seconds: float) -> str:
    if seconds is None or math.isnan(seconds):
        return "-"
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _seconds(value) -> float:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else 0.0


def _epoch_wall(row: dict) -> float:
    """An epoch's time: training, plus its evaluation (none for an epoch train.eval_every skipped) and
    the checkpoint writes it waited for, where the row records them (older rows: training only)."""
    return sum(_seconds(row.get(k)) for k in ("epoch_seconds", "eval_seconds", "checkpoint_seconds"))


def _is_stale(summary: dict, plan_row) -> bool:
    # summaries written before config hashes were recorded cannot be judged: they count as current
    want, have = getattr(plan_row, "config_hash", None), summary.get("config_hash")
    # the same settings hashed by an earlier prunebench's rules (config_hash_now: today's hash of them)
    return bool(want and have and have != want and summary.get("config_hash_now") != want)


def stale_states(results_dir: str | Path, plan: pd.DataFrame | None) -> list[str]:
    """The finished states of planned experiments that were trained under other settings, one line each."""
    if plan is None or "config_hash" not in plan:
        return []
    hashes = dict(zip(plan["experiment"], plan.itertuples()))
    out = []
    for path in find_summaries(results_dir):
        row = read_summary(path)
        if row["experiment"] in hashes and _is_stale(row, hashes[row["experiment"]]):
            out.append(
                f"{row['experiment']} state {int(row['state'])}: trained under other settings than the config "
                f"has now (config hash {str(row['config_hash'])[:12]}); the next snakemake run trains it again"
            )
    return out


def progress(results_dir: str | Path, plan: pd.DataFrame) -> pd.DataFrame:
    """One row per planned experiment: states done / planned, the states found that were trained under
    other settings (``stale``, not counted as done), the running state and its epoch, mean wall seconds
    per finished state, and the time left (``eta_seconds``).

    The ETA assumes the remaining epochs take the mean wall time per epoch of the finished states
    (or, before any state has finished, of the running state's epochs so far: training, evaluation
    and checkpoint time, so epochs that train.eval_every leaves unevaluated count as they ran).
    """
    results_dir = Path(results_dir)
    finished: dict[str, dict[int, dict]] = {}
    for path in find_summaries(results_dir):
        row = read_summary(path)
        finished.setdefault(row["experiment"], {})[int(row["state"])] = row
    rows = []
    for p in plan.itertuples():
        found = finished.get(p.experiment, {})
        done = {k: s for k, s in found.items() if not _is_stale(s, p)}
        stale = len([k for k in found if k not in done and k < int(p.states)])
        planned = int(p.states)
        epochs_of = [int(p.state0_epochs) if k == 0 else int(p.epochs) for k in range(planned)]
        current, epoch, running_rows = None, None, []
        for k in range(planned):
            if k in done:
                continue
            run = getattr(p, "state0_run", p.experiment) if k == 0 else p.experiment  # a shared state 0 runs there
            rec = read_epochs(results_dir / run / "recovery" / f"state{k}" / "metrics.jsonl")
            if rec:
                current, epoch, running_rows = k, int(rec[-1]["epoch"]), rec
                break
        # summaries written before the timing fields existed count as done but not as timed
        timed = [s for s in found.values() if s.get("wall_seconds") is not None and s.get("epochs")]
        wall = sum(s["wall_seconds"] for s in timed)
        done_epochs = sum(s["epochs"] for s in timed)
        if done_epochs:
            per_epoch = wall / done_epochs
        elif running_rows and epoch:
            per_epoch = sum(_epoch_wall(r) for r in running_rows) / epoch
        else:
            per_epoch = math.nan
        left = sum(epochs_of[k] for k in range(planned) if k not in done) - (epoch or 0)
        rows.append(
            {
                "experiment": p.experiment,
                "done": len([k for k in done if k < planned]),
                "planned": planned,
                "stale": stale,
                "current": current,
                "epoch": epoch,
                "epochs": epochs_of[current] if current is not None else None,
                "seconds_per_state": wall / len(timed) if timed else math.nan,
                "eta_seconds": left * per_epoch if left > 0 else 0.0,
            }
        )
    return pd.DataFrame(
        rows,
        columns=[
            "experiment",
            "done",
            "planned",
            "stale",
            "current",
            "epoch",
            "epochs",
            "seconds_per_state",
            "eta_seconds",
        ],  # fmt: skip
    )


def shared_progress(results_dir: str | Path, state0_runs: dict[str, dict]) -> pd.DataFrame:
    """Like :func:`progress`, for the dense states 0 trained once per group, dataset, model and seed
    under ``results/shared/`` (``ResolvedConfig.state0_runs``); the ``experiment`` column holds their folder."""
    shared = {run: exp for run, exp in state0_runs.items() if run.startswith(f"{SHARED_DIR}/")}
    # a shared run's summary names the experiment it trains (no folder prefix): that is how progress finds it
    plan = plan_from_experiments({exp["name"]: exp for exp in shared.values()})
    plan["states"], plan["state0_run"] = 1, list(shared)
    df = progress(results_dir, plan)
    df["experiment"] = list(shared)
    return df


def format_progress(df: pd.DataFrame) -> str:
    """The progress table as aligned text, with a total line."""
    lines = []
    for r in df.itertuples():
        running = "-" if r.current is None or pd.isna(r.current) else f"state {int(r.current)}"
        ep = f"{int(r.epoch)}/{int(r.epochs)}" if running != "-" else "-"
        lines.append(
            [
                r.experiment,
                f"{r.done}/{r.planned}" + (f" ({r.stale} stale)" if r.stale else ""),
                running,
                ep,
                _fmt_duration(r.seconds_per_state),
                _fmt_duration(r.eta_seconds),
            ]  # fmt: skip
        )
    header = ["experiment", "states done", "running", "epoch", "time/state", "ETA"]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *lines)]
    out = ["  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip() for row in [header, *lines]]
    total_done, total_planned = int(df["done"].sum()), int(df["planned"].sum())
    out.append(f"{total_done}/{total_planned} states done; the ETA assumes one job at a time per experiment")
    if int(df["stale"].sum()):
        out.append(
            f"{int(df['stale'].sum())} finished states were trained under other settings than the config has now "
            "(stale): rerun the workflow to retrain them"
        )
    return "\n".join(out)
