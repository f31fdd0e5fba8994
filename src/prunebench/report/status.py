"""Progress of running experiments, read from the files the jobs write (``prunebench status``).

A finished state has ``state{k}/summary.json``; a running state appends one line per epoch to
``recovery/state{k}/metrics.jsonl`` (see prunebench.train.runner), which is how the current epoch
is known without asking the scheduler. A finished state whose summary records another
``config_hash`` than the planned experiment's (see prunebench.config.training_hash) was trained
under other settings: it counts as stale, not done.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from prunebench.report.load import plan_from_experiments, read_epochs, read_summary
from prunebench.results.layout import SHARED_DIR, StatePaths, find_summaries


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


def _state_per_epoch(summary: dict) -> float:
    """A finished state's wall seconds per epoch, its start (data, model, compile) and end included."""
    wall, epochs = summary.get("wall_seconds"), summary.get("epochs")
    if isinstance(wall, (int, float)) and isinstance(epochs, (int, float)) and epochs > 0 and math.isfinite(wall):
        return wall / epochs
    return math.nan  # written before the timing fields existed: done, but not timed


def _running_per_epoch(rows: list[dict]) -> float:
    """The mean wall time of the running state's own finished epochs (its epoch 0, the evaluation
    before training, happens once and is not one of them)."""
    trained = [_epoch_wall(r) for r in rows if int(r["epoch"]) >= 1]
    return sum(trained) / len(trained) if trained else math.nan


COLUMNS = ["experiment", "done", "planned", "stale", "current", "shared", "epoch", "epochs", "running_per_epoch",
           "seconds_per_epoch", "seconds_per_state", "state_eta_seconds", "left_seconds", "eta_seconds",
           "estimated"]  # fmt: skip


def progress(results_dir: str | Path, plan: pd.DataFrame, shared: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per planned experiment: states done / planned, the states found that were trained under
    other settings (``stale``, not counted as done), the running state and its epoch, and the time left.

    - ``state_eta_seconds``: the running state's time left, from the mean wall time of its own
      finished epochs (training, evaluation and checkpoint writes) times the epochs it has left.
    - ``seconds_per_epoch``: the estimate for the states not started yet: the wall time per epoch of
      the latest finished state (start-up included), else the running state's own epochs; an
      experiment with neither takes the median of the experiments of its dataset and model.
    - ``left_seconds``: GPU time this experiment still needs, one state after another (a shared
      dense state 0, which ``plan.state0_shared`` marks, is counted in ``shared``'s row instead).
    - ``eta_seconds``: when its chain ends, one job at a time: ``left_seconds`` plus the time left
      of the shared state 0 it waits for (its row in ``shared``, the :func:`shared_progress` table).
    - ``estimated``: false where part of the time left has no estimate yet (nothing timed).
    """
    results_dir = Path(results_dir)
    finished: dict[str, dict[int, dict]] = {}
    for path in find_summaries(results_dir):
        row = read_summary(path)
        finished.setdefault(row["experiment"], {})[int(row["state"])] = row
    shared_left = {}  # a shared run's time left, NaN where it has no estimate
    for r in [] if shared is None else shared.itertuples():
        shared_left[r.experiment] = r.left_seconds if r.estimated else math.nan
    rows = []
    for p in plan.itertuples():
        found = finished.get(p.experiment, {})
        done = {k: s for k, s in found.items() if not _is_stale(s, p)}
        stale = len([k for k in found if k not in done and k < int(p.states)])
        planned = int(p.states)
        run0 = getattr(p, "state0_run", None) or p.experiment  # where state 0 trains (a shared run's folder)
        state0_shared = bool(getattr(p, "state0_shared", False))
        epochs_of = [int(p.state0_epochs) if k == 0 else int(p.epochs) for k in range(planned)]
        current, epoch, running_rows = None, None, []
        for k in range(planned):
            if k in done:
                continue
            run = run0 if k == 0 else p.experiment
            rec = read_epochs(StatePaths.under(results_dir, run, k).progress_metrics)
            if rec:
                current, epoch, running_rows = k, int(rec[-1]["epoch"]), rec
                break
        # the latest finished state is the nearest in size and speed to the states still to come
        timed = {k: _state_per_epoch(s) for k, s in found.items() if not math.isnan(_state_per_epoch(s))}
        own = _running_per_epoch(running_rows)
        per_epoch = timed[max(timed)] if timed else own
        wall = [s["wall_seconds"] for k, s in found.items() if k in timed]
        rows.append(
            {
                "experiment": p.experiment,
                "done": len([k for k in done if k < planned]),
                "planned": planned,
                "stale": stale,
                "current": current,
                "shared": current == 0 and state0_shared,
                "epoch": epoch,
                "epochs": epochs_of[current] if current is not None else None,
                "seconds_per_epoch": per_epoch,
                "seconds_per_state": sum(wall) / len(wall) if wall else math.nan,
                "own_per_epoch": own,
                "todo": [k for k in range(planned) if k not in done and not (k == 0 and state0_shared)],
                "epochs_of": epochs_of,
                "waits_on": run0 if state0_shared and 0 not in done else None,
                "dataset": getattr(p, "dataset", None),
                "model": getattr(p, "model", None),
            }
        )
    by_pair: dict = {}
    for r in rows:
        if not math.isnan(r["seconds_per_epoch"]):
            by_pair.setdefault((r["dataset"], r["model"]), []).append(r["seconds_per_epoch"])
    for r in rows:
        if math.isnan(r["seconds_per_epoch"]) and by_pair.get((r["dataset"], r["model"])):
            r["seconds_per_epoch"] = float(pd.Series(by_pair[(r["dataset"], r["model"])]).median())
        per_epoch, estimated = r["seconds_per_epoch"], True
        left = 0.0
        for k in r["todo"]:
            if k == r["current"]:
                own = r["own_per_epoch"] if not math.isnan(r["own_per_epoch"]) else per_epoch
                seconds = own * (r["epochs_of"][k] - r["epoch"])
                r["running_per_epoch"] = own
                r["state_eta_seconds"] = seconds
            else:
                seconds = per_epoch * r["epochs_of"][k]
            if math.isnan(seconds):
                estimated = False
            else:
                left += seconds
        if r["shared"]:  # the shared state 0 it waits for is running: its time left is that run's
            r["state_eta_seconds"] = shared_left.get(r["waits_on"], math.nan)
            r["running_per_epoch"] = r["own_per_epoch"]
        waits = shared_left.get(r["waits_on"], 0.0) if r["waits_on"] else 0.0
        if r["waits_on"] and (r["waits_on"] not in shared_left or math.isnan(waits)):
            estimated, waits = False, 0.0
        r.update(left_seconds=left, eta_seconds=left + waits, estimated=estimated)
        r.setdefault("state_eta_seconds", math.nan)
        r.setdefault("running_per_epoch", math.nan)
    return pd.DataFrame(rows, columns=COLUMNS)


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


def _table(df: pd.DataFrame) -> list[str]:
    lines = []
    for r in df.itertuples():
        running = "-" if r.current is None or pd.isna(r.current) else f"state {int(r.current)}"
        if running != "-" and r.shared:
            running += " (shared)"
        ep = f"{int(r.epoch)}/{int(r.epochs)}" if running != "-" else "-"
        eta = _fmt_duration(r.eta_seconds) + ("" if r.estimated else "+")
        lines.append(
            [
                r.experiment,
                f"{r.done}/{r.planned}" + (f" ({r.stale} stale)" if r.stale else ""),
                running,
                ep,
                _fmt_duration(r.running_per_epoch if running != "-" else r.seconds_per_epoch),
                _fmt_duration(r.state_eta_seconds),
                "0:00:00" if r.done == r.planned else eta,
            ]  # fmt: skip
        )
    header = ["experiment", "states done", "running", "epoch", "time/epoch", "state ETA", "ETA"]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *lines)]
    return ["  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip() for row in [header, *lines]]


def format_progress(df: pd.DataFrame, shared: pd.DataFrame | None = None) -> str:
    """The progress tables as aligned text (the experiments', then the shared dense states 0's), and
    what is left of the whole plan: GPU time and the longest chain."""
    out = _table(df)
    if shared is not None and len(shared):
        out += [
            "",
            "shared dense states 0 (trained once per group, dataset, model and seed; the experiments copy them):",
        ]
        out += _table(shared)
    every = df if shared is None or not len(shared) else pd.concat([df, shared], ignore_index=True)
    estimated = every["estimated"].astype(bool)
    total_done, total_planned = int(every["done"].sum()), int(every["planned"].sum())
    gpu = float(every["left_seconds"].sum())
    chain = float(df["eta_seconds"].max()) if len(df) else 0.0
    if shared is not None and len(shared):
        chain = max(chain, float(shared["left_seconds"].max()))
    guess = "" if estimated.all() else "+"
    out += [
        "",
        f"{total_done}/{total_planned} states done; time left: {_fmt_duration(gpu)}{guess} of GPU time (the end on "
        f"one GPU), {_fmt_duration(chain)}{guess} for the longest chain (the end with a GPU per chain)",
        "(a chain trains one state at a time; a running state is timed by its own epochs, the states to come by "
        "their chain's latest finished state, per epoch, start-up included)",
    ]
    unknown = every[~estimated]
    if len(unknown):
        out.append(
            f"+: {len(unknown)} runs have states with no estimate yet (nothing of theirs, or of their dataset and "
            "model, has finished an epoch); those states are not counted"
        )
    if int(every["stale"].sum()):
        out.append(
            f"{int(every['stale'].sum())} finished states were trained under other settings than the config has now "
            "(stale): rerun the workflow to retrain them"
        )
    return "\n".join(out)
