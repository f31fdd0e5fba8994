"""The one loader: every state's ``summary.json`` and ``metrics.jsonl`` as pandas DataFrames.

``Results.states`` has one row per finished state (the summary, with the nested ``cost`` and
``throughput`` of the slimming step (the state's throughput.json where measure_state timed it)
flattened to ``cost_{dense,compact}_{key}`` and
``tput_{dense,compact}_{batch}`` columns); ``Results.epochs`` one row per epoch of those states
(``evaluated`` false, and NaN val/test fields, for an epoch ``train.eval_every`` skipped); ``Results.plan`` one row per experiment that should exist, with its number of states;
``Results.references`` one row per dense reference (group, dataset, model and seed).

Every state row carries ``reference``, the key of its dense reference (the name of its group's
shared state-0 run, ``shared/{group}-{dataset}-{model}-s{seed}``), and the one meaning of cost the
reports use: ``density`` is the measured fraction of prunable groups kept (recomputed from
``kept`` / ``group_sizes`` where the summary has them), ``macs_kept`` and ``params_kept`` the
percentages of the dense model's MACs and parameters the slimmed model keeps (from ``cost``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from prunebench.config import finetune_epochs, shares_state0, state_epochs, training_hash
from prunebench.errors import ResultsError
from prunebench.pruning import registry
from prunebench.report.recipes import with_variants
from prunebench.results.layout import METRICS, PREDICTIONS, retrain_fix, run_of, shared_run
from prunebench.results.metrics import ID_FIELDS, METRIC_FIELDS, PREDICTION_KEYS, read_rows
from prunebench.results.summary import TYPES, summary_problem
from prunebench.results.throughput import state_throughput

EXPERIMENT_KEYS = ["experiment", "dataset", "model", "method", "seed"]
PLAN_COLUMNS = [*EXPERIMENT_KEYS, "states", "epochs", "state0_epochs"]
# Read when present; a summary written before a field existed shows "-" there instead of failing.
SUMMARY_OPTIONAL = (
    "epochs", "density", "acc_after_pruning", "params_dense", "params_alive", "wall_seconds", "train_seconds",
    "images_per_second", "device", "shared_state0", "test_size", "density_summary", "macs_kept", "params_kept",
    "event_epochs", "budget_kind", "budget_target", "reference", "best_epoch",
)  # fmt: skip
REFERENCE_COLUMNS = [
    "reference", "source", "dataset", "model", "seed", "best_test_acc", "final_test_acc", "test_size",
    "cost_dense_macs", "cost_dense_params", "params_dense",
]  # fmt: skip
# The summary's `provenance` (prunebench.provenance) as columns: column -> path in the field.
# Summaries written before it existed give NaN (their package versions come from `versions`).
PROVENANCE_FIELDS = {
    "prov_version": ("source", "version"),
    "prov_commit": ("source", "git_commit"),
    "prov_dirty": ("source", "git_dirty"),
    "prov_host": ("host",),
    "prov_device_name": ("device", "name"),
    "prov_driver": ("device", "driver"),
    "prov_capability": ("device", "capability"),
    "prov_python": ("packages", "python"),
    "prov_torch": ("packages", "torch"),
    "prov_torchvision": ("packages", "torchvision"),
    "prov_timm": ("packages", "timm"),
    "prov_numpy": ("packages", "numpy"),
    "prov_scikit-learn": ("packages", "scikit-learn"),
    "prov_cuda": ("packages", "cuda"),
    "prov_cudnn": ("packages", "cudnn"),
    "prov_slurm_job_id": ("slurm", "job_id"),
    "prov_started_at": ("started_at",),
    "prov_finished_at": ("finished_at",),
    "prov_peak_gpu_mb": ("peak_gpu_mb",),
    "prov_peak_host_mb": ("peak_host_mb",),
}


# The methods' own summary fields (RSST's ``rsst``: accuracy of the unmasked and masked model at the
# hard mask) as columns, as each method's class declares them (``summary_columns``): column -> path.
def method_summary_columns() -> dict[str, tuple[str, ...]]:
    return registry.summary_columns()


class ReportError(ResultsError):
    """A results file cannot be turned into a report."""


@dataclass
class Results:
    """Everything a report is computed from."""

    states: pd.DataFrame
    epochs: pd.DataFrame
    plan: pd.DataFrame
    references: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=REFERENCE_COLUMNS))

    def select(self, dataset: str, model: str) -> Results:
        """The part of the results that belongs to one dataset x model comparison."""

        def part(df: pd.DataFrame) -> pd.DataFrame:
            if df.empty:
                return df
            return df[(df["dataset"] == dataset) & (df["model"] == model)].reset_index(drop=True)

        return Results(part(self.states), part(self.epochs), part(self.plan), part(self.references))

    def comparisons(self) -> list[tuple[str, str]]:
        """Every (dataset, model) pair that is planned or has results."""
        pairs = set()
        for df in (self.plan, self.states):
            if not df.empty:
                pairs |= set(zip(df["dataset"], df["model"]))
        return sorted(pairs)


def _flatten_costs(summary: dict) -> dict:
    out = {}
    cost = summary.pop("cost", None) or {}
    for side in ("dense", "compact"):
        for key, value in (cost.get(side) or {}).items():
            out[f"cost_{side}_{key}"] = value
    tput = summary.pop("throughput", None) or {}
    if tput:
        out["tput_device"] = tput.get("device")
        for side in ("dense", "compact"):
            for batch, ips in (tput.get(side) or {}).items():
                out[f"tput_{side}_{batch}"] = ips
            for batch, passes in ((tput.get("passes") or {}).get(side) or {}).items():
                out[f"tpass_{side}_{batch}"] = list(passes)  # images/s of each timed pass
        # measure.compile: the same figures timed compiled (throughput.json's "compiled")
        compiled = tput.get("compiled") or {}
        for side in ("dense", "compact"):
            for batch, ips in (compiled.get(side) or {}).items():
                out[f"ctput_{side}_{batch}"] = ips
            for batch, passes in ((compiled.get("passes") or {}).get(side) or {}).items():
                out[f"ctpass_{side}_{batch}"] = list(passes)
    return out


def _method_field_problem(summary: dict) -> str | None:
    """A registered method's own summary field (one that prunebench.results.summary.TYPES does not list
    already) that is present but not a JSON object."""
    for keys in method_summary_columns().values():
        key = keys[0]
        if len(keys) > 1 and key not in TYPES and summary.get(key) is not None and not isinstance(summary[key], dict):
            return f"{key} = {json.dumps(summary[key], allow_nan=True)[:60]} (must be a JSON object)"
    return None


def _nested(summary: dict) -> dict:
    """The other nested summary fields the reports read: the methods' own (RSST's mask damage) and the budget."""
    out = {}
    for col, keys in method_summary_columns().items():
        value = summary
        for k in keys:
            value = value.get(k) if isinstance(value, dict) else None
        out[col] = _nan(value)
    budget = summary.get("budget") or {}
    out["budget_kind"], out["budget_target"] = budget.get("kind"), _nan(budget.get("target"))
    sizes = summary.get("data_sizes") or {}
    out["test_size"] = _nan(summary.get("test_size", sizes.get("test")))
    out.update(_provenance(summary))
    return out


def _provenance(summary: dict) -> dict:
    """The provenance columns, and the resolved experiment the state trained under (as canonical
    JSON text, ``experiment_config``: a cell pandas can compare; NaN when the summary predates it)."""
    prov = summary.get("provenance") or {}
    out = {}
    for col, keys in PROVENANCE_FIELDS.items():
        value = prov
        for k in keys:
            value = value.get(k) if isinstance(value, dict) else None
        out[col] = _nan(value)
    old = summary.get("versions") or {}  # the four versions every summary has had
    for key in ("python", "torch", "timm"):
        if _missing_value(out[f"prov_{key}"]):
            out[f"prov_{key}"] = _nan(old.get(key))
    if _missing_value(out["prov_version"]):
        out["prov_version"] = _nan(old.get("prunebench"))
    exp = prov.get("experiment")
    out["experiment_config"] = json.dumps(exp, sort_keys=False) if isinstance(exp, dict) else math.nan
    return out


def _missing_value(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _is_shared_run(row: dict, path: Path) -> bool:
    """A shared dense state 0 (results/shared/{run}/state0), not an experiment's state: its folder
    is its name, and that name has no method in it (experiment names end in -{method}-s{seed})."""
    exp = str(row["experiment"])
    return run_of(path.parent) == shared_run(exp) and not exp.endswith(f"-{row['method']}-s{row['seed']}")


def _reference_key(row: dict, path: Path) -> str:
    """The key of a state's dense reference: its group's shared state-0 run (see the module doc)."""
    if _is_shared_run(row, path):
        return run_of(path.parent)
    exp, suffix = str(row["experiment"]), f"-{row['method']}-s{row['seed']}"
    stem = exp[: -len(suffix)] if exp.endswith(suffix) else exp
    return shared_run(f"{stem}-s{row['seed']}")


def _ratio(num, den) -> float:
    try:
        return 100.0 * float(num) / float(den)
    except (TypeError, ValueError, ZeroDivisionError):
        return math.nan


def _kept_totals(summary: dict) -> dict:
    """Heads / neurons / channels kept over all layers, and how many there were."""
    out: dict[str, int] = {}
    for kind_counts, prefix in ((summary.get("kept") or {}, "kept"), (summary.get("group_sizes") or {}, "groups")):
        for counts in kind_counts.values():
            for kind, n in counts.items():
                out[f"{prefix}_{kind}"] = out.get(f"{prefix}_{kind}", 0) + int(n)
    return out


def read_summary(path: str | Path) -> dict:
    """One state's summary.json as a flat row; a damaged file (not UTF-8, not JSON, not a summary:
    see :data:`prunebench.results.summary.TYPES`) is one :class:`ReportError` naming the file and the fix."""
    path = Path(path)
    fix = retrain_fix(path.parent)
    try:
        summary = json.loads(path.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise ReportError(f"cannot read state summary {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ReportError(f"damaged state summary {path}: not UTF-8 text; {fix}") from None
    except json.JSONDecodeError as exc:
        raise ReportError(
            f"damaged state summary {path}: not JSON ({exc.msg}, line {exc.lineno} column {exc.colno}); {fix}"
        ) from None
    problem = summary_problem(summary) or _method_field_problem(summary)
    if problem:
        raise ReportError(f"damaged state summary {path}: {problem}; {fix}")
    # timed apart from training since the measure_state rule: its throughput.json, else (results
    # written before) the summary's own field
    summary["throughput"] = state_throughput(path, summary)
    row = {k: v for k, v in summary.items() if not isinstance(v, dict)}
    trained = (summary.get("provenance") or {}).get("experiment")
    row["config_hash_now"] = training_hash(trained) if isinstance(trained, dict) else None
    row.update(_nested(summary))
    row.update(_flatten_costs(summary))
    kept = _kept_totals(summary)
    row.update(kept)
    row["density_summary"] = _nan(summary.get("density"))
    kept_n = sum(v for k, v in kept.items() if k.startswith("kept_"))
    groups_n = sum(v for k, v in kept.items() if k.startswith("groups_"))
    if groups_n:  # the measured fraction of groups kept, whatever the summary's density meant
        row["density"] = kept_n / groups_n
    row["macs_kept"] = _ratio(row.get("cost_compact_macs"), row.get("cost_dense_macs"))
    row["params_kept"] = _ratio(row.get("cost_compact_params"), row.get("cost_dense_params"))
    row["reference"] = _reference_key(row, path)
    row["shared_run"] = _is_shared_run(row, path)
    row["path"] = str(path.parent)
    return row


# A pruning event's accuracy right after it, before any training (REPrune logs them on the event
# epoch's row); read when present, NaN in files written before.
AFTER_PRUNE_FIELDS = ("after_prune_val_acc", "after_prune_test_acc")
EPOCH_COLUMNS = [*ID_FIELDS, *METRIC_FIELDS, "evaluated", *AFTER_PRUNE_FIELDS]


def epoch_columns() -> list[str]:
    """:data:`EPOCH_COLUMNS`, and what the registered methods' gradient hooks log beside them."""
    own = [f for f in registry.gradient_metrics() if f not in EPOCH_COLUMNS]
    return [*EPOCH_COLUMNS, *own]


def _nan(value):
    return math.nan if value is None else value


def read_epochs(path: str | Path, *, finished: bool = False) -> list[dict]:
    """The per-epoch rows of one metrics.jsonl (null, the JSON form of NaN, read back as NaN; the
    val/test fields an unevaluated epoch lacks as NaN, with ``evaluated`` false; true in older files).
    ``finished``: the file of a finished state, which must be whole (see :func:`read_rows`)."""
    rows = read_rows(path, finished=finished)
    for row in rows:
        for key in METRIC_FIELDS:
            row[key] = _nan(row.get(key))
        row["evaluated"] = bool(row.get("evaluated", True))
        for key in AFTER_PRUNE_FIELDS:
            row[key] = _nan(row.get(key))
    return rows


def read_predictions(state_dir: str | Path) -> dict[str, np.ndarray] | None:
    """A state's predicted class per test image (``predictions.npz``: ``targets``, ``final``, ``best``,
    one entry per test image, the same order in every state of a dataset); None where the state
    predates the file. A damaged file is one clear error."""
    path = Path(state_dir) / PREDICTIONS
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: np.asarray(npz[k]) for k in PREDICTION_KEYS}
    except (OSError, KeyError, ValueError) as exc:
        raise ReportError(f"cannot read {path} ({exc}); {retrain_fix(path.parent)}") from None
    n = len(arrays["targets"])
    if any(a.ndim != 1 or len(a) != n for a in arrays.values()):
        raise ReportError(f"{path}: targets, final and best must be 1-d arrays of one length (one per test image)")
    return arrays


def plan_from_experiments(experiments: dict[str, dict]) -> pd.DataFrame:
    """One row per resolved experiment (from prunebench.config.resolve_config) with its states."""
    rows = [
        {
            "experiment": name,
            "dataset": exp["dataset"],
            "model": exp["model_key"],
            "method": exp["method"],
            "seed": exp["seed"],
            "states": exp["prune"].get("states", 1),  # a shared state-0 run: state 0 only
            "epochs": state_epochs(exp, 1) + finetune_epochs(exp, 1),
            "state0_epochs": state_epochs(exp, 0),
        }
        for name, exp in experiments.items()
    ]
    return pd.DataFrame(rows, columns=PLAN_COLUMNS)


def load_results(summary_paths, plan: pd.DataFrame | None = None) -> Results:
    """Load the given states (their metrics.jsonl sits beside each summary.json).

    Without a plan, each experiment is taken to have as many states as its highest state found,
    so a report then cannot tell that trailing states are missing.
    """
    rows = [read_summary(p) for p in summary_paths]
    shared = [r for r in rows if r["shared_run"]]
    rows = [r for r in rows if not r["shared_run"]]
    states = pd.DataFrame(rows)
    if not states.empty:
        for col in SUMMARY_OPTIONAL:
            if col not in states:
                states[col] = math.nan
        states = states.sort_values(["experiment", "state"]).reset_index(drop=True)
    epoch_rows = []
    columns = epoch_columns()
    for row in rows:
        for e in read_epochs(Path(row["path"]) / METRICS, finished=True):
            epoch_rows.append({k: e.get(k) if k in EPOCH_COLUMNS else _nan(e.get(k)) for k in columns})
    epochs = pd.DataFrame(epoch_rows, columns=columns)
    if not epochs.empty:
        epochs = epochs.sort_values(["experiment", "state", "epoch"]).reset_index(drop=True)
    if plan is None:
        plan = _plan_from_states(states)
    references = dense_references(states, pd.DataFrame(shared))  # before relabelling: by the real method
    if not states.empty:
        labels = with_variants(method_labels(states), states)
        states["base_method"] = states["method"]  # the method itself, before labels name groups or variants
        states["method"] = states["experiment"].map(labels)
        if not epochs.empty:
            epochs["method"] = epochs["experiment"].map(labels).fillna(epochs["method"])
    return Results(states, epochs, plan.reset_index(drop=True), references)


def _group(row) -> str:
    exp, suffix = str(row["experiment"]), f"-{row['dataset']}-{row['model']}-{row['method']}-s{row['seed']}"
    return exp[: -len(suffix)] if exp.endswith(suffix) else exp


def method_labels(states: pd.DataFrame) -> dict[str, str]:
    """Per experiment: the name its rows carry in reports. A method that runs the same seed in
    several groups of one dataset x model (an ablation, e.g. REPrune's linkages) is named with its
    group, ``reprune (linkage_single)``, so that its groups are not averaged as if they were seeds;
    groups that add other seeds of a method (seed 1 in a group of its own) stay that method's seeds."""
    first = states.drop_duplicates("experiment")
    groups = {r["experiment"]: _group(r) for _, r in first.iterrows()}
    per_seed = first.assign(group=first["experiment"].map(groups)).groupby(["dataset", "model", "method", "seed"])
    several = {k[:3] for k, v in per_seed["group"].nunique().items() if v > 1}
    return {
        r["experiment"]: f"{r['method']} ({groups[r['experiment']]})"
        if (r["dataset"], r["model"], r["method"]) in several
        else r["method"]
        for _, r in first.iterrows()
    }


def dense_references(states: pd.DataFrame, shared: pd.DataFrame) -> pd.DataFrame:
    """One dense state 0 per reference key: the shared run's own summary when loaded, else the
    ``dense`` experiment's state 0, else the first (by name) state 0 that trained the dense model;
    never a pruned state (REPrune's state 0 prunes). The same choice as config.dense_reference_runs."""
    candidates = []
    for rank, df in ((0, shared), (1, states)):
        if df.empty:
            continue
        part = df[df["state"] == 0]
        part = part[part["method"].map(lambda m: shares_state0({"method": m})).astype(bool)].copy()
        part["rank"] = rank + (part["method"] != "dense").astype(int)
        part["source"] = part["experiment"]
        candidates.append(part)
    if not candidates:
        return pd.DataFrame(columns=REFERENCE_COLUMNS)
    refs = pd.concat(candidates).sort_values(["reference", "rank", "source"]).drop_duplicates("reference")
    return refs.reindex(columns=REFERENCE_COLUMNS).reset_index(drop=True)


def _plan_from_states(states: pd.DataFrame) -> pd.DataFrame:
    if states.empty:
        return pd.DataFrame(columns=PLAN_COLUMNS)
    g = states.groupby("experiment")
    plan = g[EXPERIMENT_KEYS[1:]].first()
    plan["states"] = g["state"].max() + 1
    plan["epochs"] = g["epochs"].max()
    plan["state0_epochs"] = plan["epochs"]
    return plan.reset_index()[PLAN_COLUMNS]
