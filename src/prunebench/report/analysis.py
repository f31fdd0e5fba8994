"""Analyses of one comparison's results: each a pure function of the loaded DataFrames.

Accuracies are test accuracy in percent. A state's **best** accuracy is the test accuracy at its
epoch of best validation accuracy, its **final** accuracy the test accuracy after its last epoch.

Noise: every accuracy has its test-set 95 % Wilson score interval (the test set is a sample of
``test_size`` images). A difference between two methods is judged by a 95 % interval: with two or
more seeds both methods ran, a t interval over the per-seed paired differences; with one seed,
Newcombe's hybrid score interval for a difference of two proportions, built from the two Wilson
intervals. The latter treats the two evaluations as independent; both models are scored on the
same images and mostly err on the same ones, so the true interval is narrower: it is conservative
(a paired test such as McNemar's would need per-image predictions, which the logs do not keep).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from prunebench.train.metrics import EVAL_FIELDS

WINDOW = 5  # epochs compared for convergence and stability (SPEC §5: last 5 vs the 5 before)
ANOMALY_DROP = 5.0  # points of final accuracy below the neighbouring states' mean
DIVERGENCE_FACTOR = 2.0  # final training loss this many times the state's lowest
CONFIDENCE = 0.95
Z95 = float(stats.norm.ppf(0.5 + CONFIDENCE / 2))
BASELINES = ("random", "oneshot")  # the floors every pruning method must beat
MACS_GRID = 10.0  # matched-cost levels: multiples of this many % of the dense MACs (and the common floor)


def method_order(methods) -> list[str]:
    """Dense first (the control), then the baselines (random, oneshot), then the pruning methods by name."""

    def rank(m):
        return (0 if m == "dense" else 1 if m in BASELINES else 2, BASELINES.index(m) if m in BASELINES else 0, m)

    return sorted(set(methods), key=rank)


def _bad(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def wilson(acc: float, n: float, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval (in %) of an accuracy ``acc`` (in %) measured on ``n`` test images."""
    if _bad(acc) or _bad(n) or n <= 0:
        return math.nan, math.nan
    p = acc / 100.0
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return 100.0 * (centre - half), 100.0 * (centre + half)


def newcombe(acc_a: float, acc_b: float, n_a: float, n_b: float) -> tuple[float, float]:
    """Newcombe's hybrid score interval (in points) of acc_a - acc_b from the two Wilson intervals."""
    la, ua = wilson(acc_a, n_a)
    lb, ub = wilson(acc_b, n_b)
    diff = acc_a - acc_b
    return diff - math.hypot(acc_a - la, ub - acc_b), diff + math.hypot(ua - acc_a, acc_b - lb)


def t_interval(values) -> tuple[float, float]:
    """95 % t interval of the mean of ``values`` (at least two)."""
    v = np.asarray(values, dtype=float)
    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, len(v) - 1)) * float(np.std(v, ddof=1)) / math.sqrt(len(v))
    return float(v.mean()) - half, float(v.mean()) + half


def difference(a: dict, b: dict, n_a: float = math.nan, n_b: float = math.nan) -> dict:
    """Accuracy of method a minus method b with its 95 % interval and a verdict.

    ``a`` and ``b`` map seed -> accuracy. With two or more seeds in common: the mean paired
    difference and a t interval over those seeds. Otherwise (one seed): the difference of the
    means and Newcombe's interval on test sets of ``n_a`` and ``n_b`` images (NaN when unknown).
    """
    common = sorted(set(a) & set(b))
    if len(common) >= 2:
        d = [a[s] - b[s] for s in common]
        lo, hi = t_interval(d)
        diff, how = float(np.mean(d)), f"t over {len(common)} seeds"
    else:
        ma, mb = float(np.mean(list(a.values()))), float(np.mean(list(b.values())))
        diff, (lo, hi), how = ma - mb, newcombe(ma, mb, n_a, n_b), "test set (Newcombe)"
    if _bad(lo):
        verdict = "unknown (no test-set size)"
    elif lo <= 0.0 <= hi:
        verdict = "within noise"
    else:
        verdict = "a better" if diff > 0 else "b better"
    return {"diff": diff, "lo": lo, "hi": hi, "how": how, "verdict": verdict}


def seed_stats(states: pd.DataFrame, column: str) -> pd.DataFrame:
    """Per method and state: mean, sample std (NaN for one seed) and number of seeds of ``column``."""
    if states.empty:
        return pd.DataFrame(columns=["method", "state", "mean", "std", "n"])
    g = states.groupby(["method", "state"])[column]
    return g.agg(mean="mean", std="std", n="count").reset_index()


def accuracy_table(states: pd.DataFrame) -> pd.DataFrame:
    """Per method and state: best and final accuracy over seeds with the Wilson interval of each
    (at the seed mean, on the smallest test set of those seeds), the measured density and the
    MACs and params kept (% of dense), means over seeds."""
    best = seed_stats(states, "best_test_acc").rename(columns={"mean": "best", "std": "best_std"})
    final = seed_stats(states, "final_test_acc").rename(columns={"mean": "final", "std": "final_std"})
    g = states.groupby(["method", "state"])
    extra = g[[c for c in ("density", "macs_kept", "params_kept") if c in states]].mean()
    if "test_size" in states:
        extra["test_size"] = g["test_size"].min()
    out = best.merge(final.drop(columns="n"), on=["method", "state"]).merge(extra.reset_index(), on=["method", "state"])
    for col in ("density", "macs_kept", "params_kept", "test_size"):
        if col not in out:
            out[col] = math.nan
    for kind in ("best", "final"):
        bounds = [wilson(acc, n) for acc, n in zip(out[kind], out["test_size"])]
        out[f"{kind}_lo"] = [b[0] for b in bounds]
        out[f"{kind}_hi"] = [b[1] for b in bounds]
    return out


def best_states(states: pd.DataFrame) -> pd.DataFrame:
    """Per method: the pruned state (k >= 1; state 0 while none has finished) with the highest
    seed-mean best accuracy, and that accuracy."""
    acc = accuracy_table(states)
    rows = []
    for method, part in acc.groupby("method"):
        if (part["state"] >= 1).any():
            part = part[part["state"] >= 1]
        top = part.loc[part["best"].idxmax()]
        rows.append({"method": method, "state": int(top["state"]), "best": top["best"], "density": top["density"]})
    return pd.DataFrame(rows, columns=["method", "state", "best", "density"])


def pruned_means(states: pd.DataFrame) -> pd.DataFrame:
    """Per method: mean over the pruned states (k >= 1) of the seed-mean best and final accuracy."""
    acc = accuracy_table(states)
    acc = acc[acc["state"] >= 1]
    out = acc.groupby("method").agg(mean_best=("best", "mean"), mean_final=("final", "mean"), states=("state", "count"))
    return out.reset_index()


def retention(states: pd.DataFrame, references: pd.DataFrame) -> pd.DataFrame:
    """Per state: final and best accuracy as a percentage of its dense reference's (the dense
    state 0 of its group, dataset, model and seed: report.load.dense_references), and the
    difference in points ("vs dense"). NaN where the reference has not finished."""
    base = references.set_index("reference")
    out = states[["experiment", "method", "seed", "state"]].copy()
    for col in ("final_test_acc", "best_test_acc"):
        ref = states["reference"].map(base[col]) if len(base) else np.nan
        kind = col.replace("_test_acc", "")
        out[f"{kind}_retention"] = 100.0 * states[col] / ref
        out[f"{kind}_vs_dense"] = states[col] - ref
    return out


def reference_accuracy(references: pd.DataFrame) -> dict:
    """The dense reference over seeds: mean final/best accuracy, std, Wilson interval, MACs and params."""
    if references.empty:
        return {}
    n = references["test_size"].min()
    final = references["final_test_acc"].astype(float)
    return {
        "final": float(final.mean()),
        "final_std": float(final.std()) if len(final) > 1 else math.nan,
        "final_ci": wilson(float(final.mean()), n),
        "best": float(references["best_test_acc"].mean()),
        "macs": float(references["cost_dense_macs"].mean()),
        "params": float(references["cost_dense_params"].mean()),
        "seeds": len(references),
    }


def _curve(points: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(MACs kept, final accuracy, state) of one method and seed, sorted by MACs; of several states
    at one cost (the dense chain: all at 100 %) the latest, the one trained longest."""
    g = points.sort_values("state").groupby("macs_kept")[["final_test_acc", "state"]].last().sort_index()
    return g.index.to_numpy(dtype=float), g["final_test_acc"].to_numpy(dtype=float), g["state"].to_numpy()


def at_cost(x: np.ndarray, y: np.ndarray, level: float, tol: float = 1e-9) -> tuple[float, bool]:
    """Accuracy at ``level`` % MACs kept: measured (False) or linearly interpolated between two
    measured states (True); NaN outside the measured range (never extrapolated)."""
    if len(x) == 0 or level < x[0] - tol or level > x[-1] + tol:
        return math.nan, False
    exact = np.abs(x - level) <= tol
    if exact.any():
        return float(y[exact][0]), False
    return float(np.interp(level, x, y)), True


def matched_levels(states: pd.DataFrame, grid: float = MACS_GRID) -> list[float]:
    """MACs-kept levels (%) for the matched-cost table, highest first: the multiples of ``grid``
    inside the measured range, and the common floor: the lowest level every pruning method reached."""
    measured = states[states["macs_kept"].notna()] if "macs_kept" in states else states.iloc[:0]
    if measured.empty:
        return []
    lo, hi = float(measured["macs_kept"].min()), float(measured["macs_kept"].max())
    levels = {float(v) for v in np.arange(grid, 100.0 + grid / 2, grid) if lo - 1e-9 <= v <= hi + 1e-9}
    pruning = measured[measured["method"] != "dense"]
    if pruning["method"].nunique() >= 1:
        floor = float(pruning.groupby("method")["macs_kept"].min().max())
        # a grid level that would print as the floor (one decimal) gives way to it: one row per level
        levels = {v for v in levels if abs(v - floor) >= 0.05} | {floor}
    return sorted(levels, reverse=True)


def matched_cost(states: pd.DataFrame, levels: list[float] | None = None) -> pd.DataFrame:
    """Per MACs-kept level and method: final accuracy at that cost (mean, std and n over seeds,
    each seed interpolated on its own curve), whether any seed's value is interpolated, and the
    per-seed values (for the differences)."""
    levels = matched_levels(states) if levels is None else levels
    rows = []
    measured = states[states["macs_kept"].notna()] if "macs_kept" in states else states.iloc[:0]
    for method in method_order(measured["method"]):
        curves = {seed: _curve(p) for seed, p in measured[measured["method"] == method].groupby("seed")}
        n_test = states[states["method"] == method]["test_size"].min() if "test_size" in states else math.nan
        for level in levels:
            per_seed, interp, state0 = {}, False, True
            for seed, (x, y, state) in curves.items():
                value, was = at_cost(x, y, level)
                if not math.isnan(value):
                    per_seed[seed], interp = value, interp or was
                    state0 = state0 and not was and at_cost(x, state, level)[0] == 0  # that state's index
            vals = list(per_seed.values())
            rows.append({
                "level": level, "method": method, "n": len(vals), "interpolated": interp, "per_seed": per_seed,
                "mean": float(np.mean(vals)) if vals else math.nan,
                "std": float(np.std(vals, ddof=1)) if len(vals) > 1 else math.nan,
                "test_size": n_test, "state0": bool(vals) and state0,
            })  # fmt: skip
    cols = ["level", "method", "n", "interpolated", "per_seed", "mean", "std", "test_size", "state0"]
    return pd.DataFrame(rows, columns=cols)


def pareto_front(points: pd.DataFrame) -> pd.DataFrame:
    """The points no other point beats: none has fewer (or equal) MACs kept and higher accuracy."""
    pts = points.sort_values(["macs_kept", "final"], ascending=[True, False])
    best, keep = -math.inf, []
    for i, r in pts.iterrows():
        if r["final"] > best:
            keep.append(i)
            best = r["final"]
    return pts.loc[keep]


def method_differences(states: pd.DataFrame, column: str = "final_test_acc") -> pd.DataFrame:
    """Per pruned state (k >= 1) and pair of methods that both finished it: a - b with its 95 %
    interval and verdict (see :func:`difference`), and each method's MACs kept there."""
    rows = []
    pruned = states[states["state"] >= 1]
    for state, part in pruned.groupby("state", sort=True):
        methods = method_order(part["method"])
        by = {m: part[part["method"] == m] for m in methods}
        for i, a in enumerate(methods):
            for b in methods[i + 1 :]:
                pa, pb = by[a], by[b]
                n_a, n_b = (p["test_size"].min() if "test_size" in p else math.nan for p in (pa, pb))
                d = difference(dict(zip(pa["seed"], pa[column])), dict(zip(pb["seed"], pb[column])), n_a, n_b)
                macs_a, macs_b = (p["macs_kept"].mean() if "macs_kept" in p else math.nan for p in (pa, pb))
                rows.append({"state": int(state), "a": a, "b": b, "macs_a": macs_a, "macs_b": macs_b, **d})
    cols = ["state", "a", "b", "macs_a", "macs_b", "diff", "lo", "hi", "how", "verdict"]
    return pd.DataFrame(rows, columns=cols)


def matched_differences(matched: pd.DataFrame) -> pd.DataFrame:
    """At each matched-cost level: every pair of methods with a value there, a - b with its interval.
    A method whose value there is its state 0 (the dense start, before any pruning: for dense, Refill
    and RSST the shared dense reference) is left out of the pairs: beside another state 0 it is the
    same run, beside a later state it has trained less, so the difference measures training length."""
    rows = []
    for level, part in matched.groupby("level", sort=False):
        part = part[(part["n"] > 0) & ~part["state0"].astype(bool)].set_index("method")
        methods = method_order(part.index)
        for i, a in enumerate(methods):
            for b in methods[i + 1 :]:
                d = difference(part.at[a, "per_seed"], part.at[b, "per_seed"], part.at[a, "test_size"],
                               part.at[b, "test_size"])  # fmt: skip
                interp = bool(part.at[a, "interpolated"] or part.at[b, "interpolated"])
                rows.append({"level": level, "a": a, "b": b, "interpolated": interp, **d})
    cols = ["level", "a", "b", "interpolated", "diff", "lo", "hi", "how", "verdict"]
    return pd.DataFrame(rows, columns=cols)


def rsst_damage(states: pd.DataFrame) -> pd.DataFrame:
    """Per RSST state with the ``rsst`` summary field: accuracy just before and just after the hard
    mask, the damage (test points lost to the mask) and the penalised groups' remaining norm."""
    if "rsst_masked_test_acc" not in states:
        return pd.DataFrame()
    part = states[states["rsst_masked_test_acc"].notna()].copy()
    part["damage"] = part["rsst_unmasked_test_acc"] - part["rsst_masked_test_acc"]
    return part.sort_values(["method", "seed", "state"]).reset_index(drop=True)


def budgets(states: pd.DataFrame) -> pd.DataFrame:
    """Per state with a ``budget``: the kept fraction the schedule asked for and the one reached, in %
    of the dense model's groups, params or MACs (the budget's kind)."""
    if "budget_kind" not in states:
        return pd.DataFrame()
    part = states[states["budget_kind"].notna()].copy()
    reached = {"groups": part["density"] * 100.0, "params": part["params_kept"], "macs": part["macs_kept"]}
    part["target_kept"] = 100.0 * part["budget_target"]
    part["reached_kept"] = [reached.get(k, pd.Series(math.nan, index=part.index))[i]
                            for i, k in zip(part.index, part["budget_kind"])]  # fmt: skip
    part["gap"] = part["reached_kept"] - part["target_kept"]
    return part.sort_values(["method", "seed", "state"]).reset_index(drop=True)


def recovery(states: pd.DataFrame) -> pd.DataFrame:
    """Per pruned state: accuracy right after pruning (epoch 0), at the state's end, and the gain."""
    pruned = states[states["state"] >= 1]
    out = pruned[["experiment", "method", "seed", "state", "acc_after_pruning", "final_test_acc"]].copy()
    out["recovery"] = out["final_test_acc"] - out["acc_after_pruning"]
    return out.reset_index(drop=True)


def dynamics(epochs: pd.DataFrame, window: int = WINDOW, metric: str = "test_acc") -> pd.DataFrame:
    """Per state: convergence, stability and the overfitting gap from the trained epochs (epoch >= 1).

    Convergence compares the mean of the last ``window`` epochs with the mean of the ``window``
    before; a state with fewer than 2 x window epochs uses half its epochs for each. Stability is
    the sample std of the last window. The gap is train minus validation accuracy at the last epoch.
    """
    rows = []
    trained = epochs[epochs["epoch"] >= 1]
    for (exp, state), part in trained.groupby(["experiment", "state"], sort=True):
        part = part.sort_values("epoch")
        if metric in EVAL_FIELDS and "evaluated" in part:
            part = part[part["evaluated"].astype(bool)]  # the epochs train.eval_every evaluated (the last always)
        values = part[metric].to_numpy(dtype=float)
        w = min(window, len(values) // 2)
        last = values[-w:] if w else values[-1:]
        prev = values[-2 * w : -w] if w else values[:0]
        rows.append(
            {
                "experiment": exp,
                "method": part["method"].iloc[0],
                "seed": part["seed"].iloc[0],
                "state": int(state),
                "window": len(last),
                "last_mean": float(np.mean(last)),
                "prev_mean": float(np.mean(prev)) if len(prev) else math.nan,
                "convergence": float(np.mean(last) - np.mean(prev)) if len(prev) else math.nan,
                "stability": float(np.std(last, ddof=1)) if len(last) > 1 else math.nan,
                "gap": float(part["train_acc"].iloc[-1] - part["val_acc"].iloc[-1]),
            }
        )
    return pd.DataFrame(
        rows,
        columns=["experiment", "method", "seed", "state", "window", "last_mean", "prev_mean", "convergence",
                 "stability", "gap"],
    )  # fmt: skip


def anomalies(
    states: pd.DataFrame,
    epochs: pd.DataFrame,
    drop: float = ANOMALY_DROP,
    divergence: float = DIVERGENCE_FACTOR,
) -> list[dict]:
    """States that look wrong, each with a sentence naming the experiment, the state and the evidence.

    - ``drop``: a pruned state whose final accuracy is more than ``drop`` points below the mean of
      its finished neighbours (k-1 and k+1; only k-1 for the last state found);
    - ``nan``: an epoch whose loss or accuracy is NaN (epoch 0 has no training loss by design);
    - ``divergence``: a final training loss above ``divergence`` x the state's lowest.
    """
    found = []
    for exp, part in states.groupby("experiment", sort=True):
        acc = part.set_index("state")["final_test_acc"]
        for k in acc.index:
            if k == 0:
                continue
            neighbours = [acc[j] for j in (k - 1, k + 1) if j in acc.index and not math.isnan(acc[j])]
            if not neighbours:
                continue
            ref = float(np.mean(neighbours))
            if acc[k] < ref - drop:
                found.append(
                    {
                        "experiment": exp,
                        "state": int(k),
                        "kind": "drop",
                        "message": f"{exp} state {k}: final accuracy {acc[k]:.2f} is {ref - acc[k]:.2f} points "
                        f"below its neighbouring states' mean {ref:.2f}",
                    }
                )
    for (exp, state), part in epochs.groupby(["experiment", "state"], sort=True):
        checks = part[["epoch", "val_loss", "val_acc", "test_acc"]].copy()
        if "evaluated" in part:  # an epoch train.eval_every skipped has no val/test values, by design
            checks.loc[~part["evaluated"].astype(bool), list(EVAL_FIELDS)] = 0.0
        checks["train_loss"] = part["train_loss"].where(part["epoch"] > 0, 0.0)
        checks["train_acc"] = part["train_acc"].where(part["epoch"] > 0, 0.0)
        bad = checks[checks.drop(columns="epoch").isna().any(axis=1)]
        for _, row in bad.iterrows():
            fields = [c for c in checks.columns if c != "epoch" and pd.isna(row[c])]
            found.append(
                {
                    "experiment": exp,
                    "state": int(state),
                    "kind": "nan",
                    "message": f"{exp} state {state}: epoch {int(row['epoch'])} has NaN {', '.join(fields)}",
                }
            )
        loss = part[part["epoch"] >= 1]["train_loss"].dropna()
        if len(loss) >= 3 and loss.iloc[-1] > divergence * loss.min():
            found.append(
                {
                    "experiment": exp,
                    "state": int(state),
                    "kind": "divergence",
                    "message": f"{exp} state {state}: training loss rose to {loss.iloc[-1]:.4g} at the last "
                    f"epoch, {loss.iloc[-1] / loss.min():.1f}x its lowest ({loss.min():.4g})",
                }
            )
    return sorted(found, key=lambda a: (a["experiment"], a["state"], a["kind"]))


def completeness(plan: pd.DataFrame, states: pd.DataFrame) -> pd.DataFrame:
    """Per planned experiment: states done / planned and which are missing."""
    rows = []
    done_by = states.groupby("experiment")["state"].apply(set).to_dict() if not states.empty else {}
    for _, p in plan.sort_values(["method", "seed"]).iterrows():
        done = done_by.get(p["experiment"], set())
        planned = int(p["states"])
        missing = [k for k in range(planned) if k not in done]
        rows.append(
            {
                "experiment": p["experiment"],
                "method": p["method"],
                "seed": p["seed"],
                "done": len([k for k in done if k < planned]),
                "planned": planned,
                "missing": missing,
            }
        )
    return pd.DataFrame(rows, columns=["experiment", "method", "seed", "done", "planned", "missing"])


def costs(states: pd.DataFrame) -> pd.DataFrame:
    """Per state: wall time, time per epoch, training images/s and device-hours (GPU-hours on a GPU)."""
    out = states[["experiment", "method", "seed", "state", "device", "wall_seconds", "train_seconds", "epochs"]].copy()
    out["seconds_per_epoch"] = states["wall_seconds"] / states["epochs"]
    out["images_per_second"] = states["images_per_second"]
    out["device_hours"] = states["wall_seconds"] / 3600.0
    out["shared"] = states["shared_state0"].notna()
    return out.reset_index(drop=True)


def counted_once(states: pd.DataFrame) -> pd.DataFrame:
    """The states with each shared state 0 (share_state0) once: its copies repeat its timings."""
    shared = states["shared_state0"].notna()
    return pd.concat([states[~shared], states[shared].drop_duplicates("shared_state0")])


def cost_totals(states: pd.DataFrame) -> pd.DataFrame:
    """Per experiment: states, total wall hours, and the device kind they ran on."""
    g = states.groupby(["experiment", "method", "seed"])
    out = g.agg(
        states=("state", "count"), hours=("wall_seconds", lambda s: s.sum(min_count=1)), device=("device", "first")
    )
    out["hours"] /= 3600.0
    return out.reset_index()


PARAM_PARTS = ("params_attention", "params_mlp", "params_other")


def parameters(states: pd.DataFrame) -> pd.DataFrame:
    """Per state: parameters and MACs dense vs compact (when measured), alive params and compression.

    ``alive`` counts the weights the masks keep (always known); the ``cost_*`` columns come from
    the physically slimmed model and stay NaN where the slimming step did not measure them.
    """
    cols = ["experiment", "method", "seed", "state", "density", "macs_kept", "params_kept", "params_dense",
            "params_alive"]  # fmt: skip
    out = states[cols].copy()
    out["compression_alive"] = states["params_dense"] / states["params_alive"]
    for side in ("dense", "compact"):
        for key in ("params", *PARAM_PARTS, "macs"):
            col = f"cost_{side}_{key}"
            out[col] = states.get(col, np.nan)
    out["compression"] = out["cost_dense_params"] / out["cost_compact_params"]
    out["macs_reduction"] = 100.0 * (1.0 - out["cost_compact_macs"] / out["cost_dense_macs"])
    for col in ("kept_head", "groups_head", "kept_neuron", "groups_neuron", "kept_channel", "groups_channel"):
        out[col] = states.get(col, np.nan)
    return out.reset_index(drop=True)


def throughput(states: pd.DataFrame) -> pd.DataFrame:
    """Per state, timing mode (eager, and compiled where ``measure.compile`` timed it) and batch size:
    dense and compact images/s, and the speedup over the paired timing rounds (round i of each model
    forms a pair; the ``passes`` of throughput.json): the median of compact/dense over pairs, its
    min and max, and ``within_noise`` where that range covers 1.0. Without rounds (older files), the
    ratio of the two images/s."""
    rows = []
    for mode, prefix in (("eager", "t"), ("compiled", "ct")):
        dense_cols = sorted(
            (c for c in states.columns if c.startswith(f"{prefix}put_dense_")), key=lambda c: int(c.split("_")[-1])
        )
        for _, s in states.iterrows():
            for col in dense_cols:
                batch = col.split("_")[-1]
                dense, compact = s.get(col), s.get(f"{prefix}put_compact_{batch}")
                if pd.isna(dense) or pd.isna(compact):
                    continue
                pd_, pc = s.get(f"{prefix}pass_dense_{batch}"), s.get(f"{prefix}pass_compact_{batch}")
                pairs = [c / d for d, c in zip(pd_, pc)] if isinstance(pd_, list) and isinstance(pc, list) else []
                rows.append(
                    {
                        "experiment": s["experiment"],
                        "method": s["method"],
                        "seed": s["seed"],
                        "state": int(s["state"]),
                        "device": s.get("tput_device"),
                        "mode": mode,
                        "batch": int(batch),
                        "dense_ips": float(dense),
                        "compact_ips": float(compact),
                        "speedup": float(np.median(pairs)) if pairs else float(compact) / float(dense),
                        "speedup_min": min(pairs) if pairs else math.nan,
                        "speedup_max": max(pairs) if pairs else math.nan,
                        "passes": len(pairs),
                        "within_noise": bool(pairs) and min(pairs) <= 1.0 <= max(pairs),
                    }
                )
    cols = ["experiment", "method", "seed", "state", "device", "mode", "batch", "dense_ips", "compact_ips", "speedup",
            "speedup_min", "speedup_max", "passes", "within_noise"]  # fmt: skip
    return pd.DataFrame(rows, columns=cols)


def reprune_events(states: pd.DataFrame) -> pd.DataFrame:
    """Per state with ``event_epochs`` (REPrune): the epochs whose start carried a pruning event, and
    whether the best epoch came after the state's last event (trained, not just pruned)."""
    if "event_epochs" not in states:
        return pd.DataFrame()
    part = states[[isinstance(e, list) and len(e) > 0 for e in states["event_epochs"]]].copy()
    part["last_event"] = [max(e) for e in part["event_epochs"]]
    # an event is at the START of its epoch, so that epoch trains the pruned model
    part["best_after_event"] = part["best_epoch"] >= part["last_event"]
    return part.sort_values(["method", "seed", "state"]).reset_index(drop=True)
