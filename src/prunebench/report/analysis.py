"""Analyses of one comparison's results: each a pure function of the loaded DataFrames (and of the
states' stored predictions, read by the caller: ``{(experiment, state): read_predictions(...)}``).

Accuracies are test accuracy in percent. A state's **best** accuracy is the test accuracy at its
epoch of best validation accuracy, its **final** accuracy the test accuracy after its last epoch.

Noise and verdicts (``prunebench.report.stats``): one seed gives one trained model per method, so
a verdict about methods is made only over seeds, at matched cost, after Holm's correction over the
report's verdicts. An accuracy of one model carries its test-set 95 % Wilson interval; a difference
of two methods over two or more seeds a t interval of the per-seed paired differences whose variance
is floored at the test-set variance (never zero width, never narrower than the test set alone);
with one seed, the two models' paired test-set interval and exact McNemar test, and no verdict.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from prunebench.report.stats import (
    ALPHA,
    Z95,
    binomial_variance,
    floored_t,
    holm,
    mcnemar_exact,
    normal_interval,
    paired_variance,
)
from prunebench.results.metrics import EVAL_FIELDS

WINDOW = 5  # epochs compared for convergence and stability (SPEC §5: last 5 vs the 5 before)
ANOMALY_DROP = 5.0  # points of final accuracy below the neighbouring states' mean
DIVERGENCE_FACTOR = 2.0  # final training loss this many times the state's lowest
BASELINES = ("random", "oneshot")  # the floors every pruning method must beat
# Two costs within this many points of the dense MACs are one cost: the budget's own tolerance
# (pruning.budget.fit_cost lands within 0.005 of the dense quantity under its target).
MATCH_TOL = 0.5
ONE_SEED = "one seed: no verdict; run >= 3 seeds"
NOT_RECORDED = "predictions not recorded"


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


def _base_method(states: pd.DataFrame) -> pd.Series:
    """The method itself (``base_method``, before labels name groups or variants), else its label."""
    return states["base_method"] if "base_method" in states else states["method"]


def dense_chain(states: pd.DataFrame) -> pd.DataFrame:
    """The states of the ``dense`` control chain (the dense model trained on, state after state)."""
    return states[_base_method(states) == "dense"] if len(states) else states


def retention(states: pd.DataFrame, references: pd.DataFrame) -> pd.DataFrame:
    """Per state: final and best accuracy as a percentage of its dense reference's, and the difference
    in points ("vs dense"). The reference is the equally trained dense model: the dense control
    chain's state of the same index (same group and seed; else the same seed in another group), so
    the dense chain's own retention is 100 % at every state. Where no dense chain of that seed ran,
    the dense state 0 of its group and seed (``report.load.dense_references``), which has trained
    less than any later state: ``ref_kind`` says which ("chain", "state 0", or "none": NaN)."""
    out = states[["experiment", "method", "seed", "state"]].copy()
    chain = dense_chain(states)
    by_ref = {(r.reference, r.state): r for r in chain.itertuples()} if "reference" in chain else {}
    by_seed = {}
    for r in chain.sort_values("experiment").itertuples():
        by_seed.setdefault((r.seed, r.state), r)
    chain_seeds = set(chain["seed"])
    base = references.set_index("reference") if len(references) else None
    kinds, refs = [], {"final_test_acc": [], "best_test_acc": []}
    for r in states.itertuples():
        ref = by_ref.get((getattr(r, "reference", None), r.state)) or by_seed.get((r.seed, r.state))
        if ref is not None:
            kinds.append("chain")
            for col in refs:
                refs[col].append(getattr(ref, col))
        elif r.seed not in chain_seeds and base is not None and getattr(r, "reference", None) in base.index:
            kinds.append("state 0")
            for col in refs:
                refs[col].append(base.at[r.reference, col])
        else:  # the chain has not finished this state yet, or no reference at all
            kinds.append("none")
            for col in refs:
                refs[col].append(math.nan)
    out["ref_kind"] = kinds
    for col in refs:
        ref = np.asarray(refs[col], dtype=float)
        kind = col.replace("_test_acc", "")
        out[f"{kind}_reference"] = ref
        out[f"{kind}_retention"] = 100.0 * states[col].to_numpy(dtype=float) / ref
        out[f"{kind}_vs_dense"] = states[col].to_numpy(dtype=float) - ref
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


def method_interval(values, n_test: float) -> dict:
    """A method's accuracy over seeds: mean and 95 % interval. Two or more seeds: t over seeds, the
    variance floored at one seed's test-set variance; one seed: that model's Wilson interval."""
    v = [float(x) for x in values]
    if not v:
        return {"mean": math.nan, "lo": math.nan, "hi": math.nan, "n": 0}
    if len(v) == 1:
        lo, hi = wilson(v[0], n_test)
        return {"mean": v[0], "lo": lo, "hi": hi, "n": 1}
    tv = [binomial_variance(x, n_test) for x in v]
    t = floored_t(v, [0.0 if math.isnan(x) else x for x in tv])
    return {"mean": t["mean"], "lo": t["lo"], "hi": t["hi"], "n": len(v)}


# --- matched cost ---


def _pruned_points(states: pd.DataFrame) -> pd.DataFrame:
    """The states that define and take part in matched costs: pruned states (1 and later; state 0 is
    the dense start, or for a method that prunes while it trains, the chain's least trained state)
    that measured their MACs and keep less than all of them (the dense chain keeps 100 %)."""
    if states.empty or "macs_kept" not in states:
        return states.iloc[:0]
    return states[(states["state"] >= 1) & states["macs_kept"].notna() & (states["macs_kept"] < 100.0 - MATCH_TOL)]


def matched_levels(states: pd.DataFrame, tol: float = MATCH_TOL) -> list[float]:
    """MACs-kept levels (%) of the matched-cost comparison, highest first: the measured costs of the
    pruned states (each method and state: its mean over seeds), those within ``tol`` of the highest
    of a run of them merged into one level at their mean."""
    pts = _pruned_points(states)
    if pts.empty:
        return []
    costs = sorted(pts.groupby(["method", "state"])["macs_kept"].mean(), reverse=True)
    levels, run = [], []
    for x in costs:
        if run and run[0] - x > tol:
            levels.append(float(np.mean(run)))
            run = []
        run.append(float(x))
    levels.append(float(np.mean(run)))
    return levels


def _seed_curve(part: pd.DataFrame) -> list[tuple[float, float, str, int]]:
    """(MACs kept, final accuracy, experiment, state) of one method and seed's pruned states, by
    MACs; of several states at one cost (oneshot's, all at the final budget) the latest, trained longest."""
    part = part.sort_values("state").drop_duplicates("macs_kept", keep="last").sort_values("macs_kept")
    return list(zip(part["macs_kept"].astype(float), part["final_test_acc"].astype(float), part["experiment"],
                    part["state"].astype(int)))  # fmt: skip


def value_at(curve, level: float, tol: float = MATCH_TOL) -> dict | None:
    """A seed's accuracy at ``level``: measured where a pruned state's cost is within ``tol`` of it
    (the nearest), else linearly interpolated between its two neighbouring pruned states (never
    through state 0), None outside their range (never extrapolated). ``parts``: (experiment, state,
    weight) of the states it is made of."""
    if not curve:
        return None
    xs = np.array([c[0] for c in curve])
    i = int(np.argmin(np.abs(xs - level)))
    if abs(xs[i] - level) <= tol:
        x, y, exp, k = curve[i]
        return {"value": y, "interpolated": False, "parts": [(exp, k, 1.0)]}
    if not xs[0] < level < xs[-1]:
        return None
    j = int(np.searchsorted(xs, level))
    (x0, y0, e0, k0), (x1, y1, e1, k1) = curve[j - 1], curve[j]
    w = (level - x0) / (x1 - x0)
    return {"value": y0 + w * (y1 - y0), "interpolated": True, "parts": [(e0, k0, 1.0 - w), (e1, k1, w)]}


def matched_cost(states: pd.DataFrame, levels: list[float] | None = None) -> pd.DataFrame:
    """Per MACs-kept level and method: final accuracy at that cost (mean, std and n over seeds, each
    seed on its own curve of pruned states, :func:`value_at`), whether any seed's value is
    interpolated, and per seed the value and the states it is made of (for the paired differences)."""
    levels = matched_levels(states) if levels is None else levels
    pts = _pruned_points(states)
    rows = []
    for method in method_order(pts["method"]):
        mine = pts[pts["method"] == method]
        curves = {seed: _seed_curve(p) for seed, p in mine.groupby("seed")}
        n_test = mine["test_size"].min() if "test_size" in mine else math.nan
        for level in levels:
            found = {seed: v for seed, c in curves.items() if (v := value_at(c, level)) is not None}
            vals = [v["value"] for v in found.values()]
            rows.append({
                "level": level, "method": method, "n": len(vals),
                "interpolated": any(v["interpolated"] for v in found.values()),
                "measured": bool(found) and not any(v["interpolated"] for v in found.values()),
                "per_seed": {s: v["value"] for s, v in found.items()},
                "parts": {s: v["parts"] for s, v in found.items()},
                "mean": float(np.mean(vals)) if vals else math.nan,
                "std": float(np.std(vals, ddof=1)) if len(vals) > 1 else math.nan,
                "test_size": n_test,
            })  # fmt: skip
    cols = ["level", "method", "n", "interpolated", "measured", "per_seed", "parts", "mean", "std", "test_size"]
    return pd.DataFrame(rows, columns=cols)


def common_level(matched: pd.DataFrame) -> float | None:
    """The last (lowest) matched-cost level at which every method of the comparison has a value."""
    if matched.empty:
        return None
    methods = set(matched["method"])
    ok = [lv for lv, part in matched.groupby("level") if set(part[part["n"] > 0]["method"]) == methods]
    return min(ok) if ok else None


def pareto_front(points: pd.DataFrame) -> pd.DataFrame:
    """The points no other point beats: none has fewer (or equal) MACs kept and higher accuracy."""
    pts = points.sort_values(["macs_kept", "final"], ascending=[True, False])
    best, keep = -math.inf, []
    for i, r in pts.iterrows():
        if r["final"] > best:
            keep.append(i)
            best = r["final"]
    return pts.loc[keep]


# --- differences between methods ---


def _correctness(parts, predictions: dict | None, kind: str = "final"):
    """Per-image correctness (0/1, or the weighted mean of two states' where interpolated) and the
    targets it is scored on; (None, None) where a state has no stored predictions."""
    vec, targets = None, None
    for exp, state, w in parts:
        pred = (predictions or {}).get((exp, state))
        if pred is None:
            return None, None
        t = pred["targets"]
        if targets is not None and not np.array_equal(t, targets):
            return None, None
        targets = t
        c = (pred[kind] == t).astype(float)
        vec = w * c if vec is None else vec + w * c
    return vec, targets


def difference(a: dict, b: dict, n_a: float = math.nan, n_b: float = math.nan, a_parts: dict | None = None,
               b_parts: dict | None = None, predictions: dict | None = None) -> dict:  # fmt: skip
    """Accuracy of method a minus method b, paired by seed (``a``, ``b``: seed -> accuracy).

    Per seed both ran: the difference and its test-set variance, paired per image where the states'
    predictions are stored (``a_parts`` / ``b_parts``: seed -> (experiment, state, weight) of the
    states a value is made of), else unpaired from the two accuracies on ``n_a`` / ``n_b`` test
    images; where both values are measured states with predictions, the exact McNemar test.
    Two or more seeds: the mean paired difference, its floored t interval (``stats.floored_t``) and
    p, the verdict left to :func:`apply_holm` (``verdict`` None). One seed: the two models' test-set
    interval, McNemar's p, and no verdict. Seeds only one of the two ran are listed in ``left_out``.
    """
    common = sorted(set(a) & set(b))
    left = [f"seed {s} (only a)" for s in sorted(set(a) - set(b))]
    left += [f"seed {s} (only b)" for s in sorted(set(b) - set(a))]
    per_seed = []
    for s in common:
        ca, ta = _correctness((a_parts or {}).get(s, []), predictions) if a_parts else (None, None)
        cb, tb = _correctness((b_parts or {}).get(s, []), predictions) if b_parts else (None, None)
        if ca is not None and cb is not None and len(ta) == len(tb) and np.array_equal(ta, tb):
            var, paired = paired_variance(ca, cb), True
            exact = len(a_parts[s]) == 1 and len(b_parts[s]) == 1  # two measured states: two models
            mc = mcnemar_exact(ca > 0.5, cb > 0.5) if exact else None
        else:
            var, paired, mc = binomial_variance(a[s], n_a) + binomial_variance(b[s], n_b), False, None
        per_seed.append({"seed": s, "diff": a[s] - b[s], "var": var, "paired": paired, "mcnemar": mc})
    out = {"n": len(common), "seeds": common, "left_out": left, "per_seed": per_seed, "verdict": None,
           "p": math.nan, "mcnemar_p": math.nan, "test_lo": math.nan, "test_hi": math.nan,
           "paired": bool(per_seed) and all(x["paired"] for x in per_seed)}  # fmt: skip
    test = "paired per image" if out["paired"] else f"unpaired ({NOT_RECORDED})"
    if not common:
        return {**out, "diff": math.nan, "lo": math.nan, "hi": math.nan, "how": "no seed in common",
                "verdict": "no seed in common"}  # fmt: skip
    if len(common) == 1:
        x = per_seed[0]
        lo, hi = normal_interval(x["diff"], x["var"])
        mc = x["mcnemar"]
        how = f"one seed: two models, test set {test}" + ("" if mc else "; no exact test (interpolated)"
                                                          if out["paired"] else "")  # fmt: skip
        return {**out, "diff": x["diff"], "lo": lo, "hi": hi, "test_lo": lo, "test_hi": hi, "how": how,
                "mcnemar_p": mc["p"] if mc else math.nan, "verdict": ONE_SEED}  # fmt: skip
    variances = [x["var"] for x in per_seed]
    known = [v for v in variances if not math.isnan(v)]
    t = floored_t([x["diff"] for x in per_seed], known if len(known) == len(variances) else [0.0])
    how = f"{len(common)} seeds: t, floored at the test set ({test})"
    if len(known) < len(variances):
        how = f"{len(common)} seeds: t (test-set size unknown: no floor)"
    return {**out, "diff": t["mean"], "lo": t["lo"], "hi": t["hi"], "p": t["p"], "test_lo": t["test_lo"],
            "test_hi": t["test_hi"], "how": how}  # fmt: skip


def apply_holm(diffs: pd.DataFrame) -> pd.DataFrame:
    """Verdicts of the verdict-bearing rows (``bearing``: over two or more seeds, at matched cost),
    after Holm's correction over all of them: "a better" / "b better" where the adjusted p < 0.05,
    else "inconclusive"; ``holm_p`` the adjusted p, ``m`` how many were corrected for."""
    diffs = diffs.copy()
    bearing = diffs["bearing"].astype(bool) if len(diffs) else pd.Series(dtype=bool)
    adjusted = holm(diffs.loc[bearing, "p"]) if bearing.any() else []
    diffs["holm_p"] = math.nan
    diffs.loc[bearing, "holm_p"] = adjusted
    for i in diffs.index[bearing]:
        r = diffs.loc[i]
        diffs.at[i, "verdict"] = (
            ("a better" if r["diff"] > 0 else "b better") if r["holm_p"] < ALPHA else "inconclusive"
        )
    diffs.attrs["m"] = int(bearing.sum())
    return diffs


DIFF_COLUMNS = ["diff", "lo", "hi", "p", "holm_p", "n", "seeds", "left_out", "how", "verdict", "mcnemar_p",
                "test_lo", "test_hi", "paired", "per_seed"]  # fmt: skip


def method_differences(states: pd.DataFrame, predictions: dict | None = None,
                       column: str = "final_test_acc") -> pd.DataFrame:  # fmt: skip
    """Per pruned state (k >= 1) and pair of methods that both finished it: a - b paired by seed
    (:func:`difference`), each method's MACs kept there, and whether the two costs match (within
    MATCH_TOL). States are not a cost: no verdict here (the matched-cost comparison gives them)."""
    rows = []
    pruned = states[states["state"] >= 1]
    for state, part in pruned.groupby("state", sort=True):
        methods = method_order(part["method"])
        by = {m: part[part["method"] == m] for m in methods}
        for i, a in enumerate(methods):
            for b in methods[i + 1 :]:
                pa, pb = by[a], by[b]
                n_a, n_b = (p["test_size"].min() if "test_size" in p else math.nan for p in (pa, pb))
                parts = [{s: [(e, int(state), 1.0)] for s, e in zip(p["seed"], p["experiment"])} for p in (pa, pb)]
                d = difference(dict(zip(pa["seed"], pa[column])), dict(zip(pb["seed"], pb[column])), n_a, n_b,
                               parts[0], parts[1], predictions)  # fmt: skip
                macs_a, macs_b = (p["macs_kept"].mean() if "macs_kept" in p else math.nan for p in (pa, pb))
                matched = not _bad(macs_a) and not _bad(macs_b) and abs(macs_a - macs_b) <= MATCH_TOL
                rows.append({"state": int(state), "a": a, "b": b, "macs_a": macs_a, "macs_b": macs_b,
                             "matched": matched, **{k: d[k] for k in DIFF_COLUMNS if k in d}})  # fmt: skip
    cols = ["state", "a", "b", "macs_a", "macs_b", "matched", *DIFF_COLUMNS]
    return pd.DataFrame(rows, columns=cols).drop(columns=["holm_p"])


def matched_differences(matched: pd.DataFrame, predictions: dict | None = None) -> pd.DataFrame:
    """At each matched-cost level: every pair of methods with a value there, a - b paired by seed
    (:func:`difference`). A pair bears a verdict when it has two or more seeds in common and at least
    one of the two is measured at that cost (not both interpolated); the verdicts come after Holm's
    correction over all of them (:func:`apply_holm`, the report's only verdicts)."""
    rows = []
    for level, part in matched.groupby("level", sort=False):
        part = part[part["n"] > 0].set_index("method")
        methods = method_order(part.index)
        for i, a in enumerate(methods):
            for b in methods[i + 1 :]:
                ra, rb = part.loc[a], part.loc[b]
                d = difference(ra["per_seed"], rb["per_seed"], ra["test_size"], rb["test_size"], ra["parts"],
                               rb["parts"], predictions)  # fmt: skip
                both_interp = bool(ra["interpolated"] and rb["interpolated"])
                if d["n"] >= 2 and both_interp:
                    d["verdict"] = "no verdict (both interpolated)"
                rows.append({"level": level, "a": a, "b": b, "interpolated": bool(ra["interpolated"] or rb["interpolated"]),
                             "bearing": d["n"] >= 2 and not both_interp, **{k: d[k] for k in DIFF_COLUMNS if k in d}})  # fmt: skip
    cols = ["level", "a", "b", "interpolated", "bearing", *DIFF_COLUMNS]
    return apply_holm(pd.DataFrame(rows, columns=cols))


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


def _events(value) -> list[int]:
    return [int(e) for e in value] if isinstance(value, list) else []


def recovery(states: pd.DataFrame, epochs: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per pruned state (and any state with pruning events): the accuracy right after pruning, at the
    state's end, and the gain; ``when`` says what "after pruning" is. A state that prunes at its
    start: its epoch 0 (evaluated right after the pruning, before training). A state whose pruning
    events fall inside it (``event_epochs``, REPrune): the accuracy logged right after its last
    event (``after_prune_test_acc`` on the event's epoch row) where recorded, else its epoch 0,
    which is before the event, and says so."""
    events_col = states["event_epochs"] if "event_epochs" in states else pd.Series([None] * len(states), states.index)
    has_events = events_col.map(lambda e: bool(_events(e)))
    by_events = set(states.loc[has_events, "experiment"])  # chains whose pruning falls inside states
    part = states[(states["state"] >= 1) | has_events]
    out = part[["experiment", "method", "seed", "state", "acc_after_pruning", "final_test_acc"]].copy()
    after = {}
    if epochs is not None and len(epochs) and "after_prune_test_acc" in epochs:
        logged = epochs[epochs["after_prune_test_acc"].notna()]
        for r in logged.itertuples():
            after[(r.experiment, int(r.state), int(r.epoch))] = float(r.after_prune_test_acc)
    values, when = [], []
    for r in part.itertuples():
        events = _events(getattr(r, "event_epochs", None))
        if not events and r.experiment in by_events:
            values.append(r.acc_after_pruning)
            when.append("epoch 0 (no pruning event in this state)")
        elif not events:
            values.append(r.acc_after_pruning)
            when.append("epoch 0, right after the state's pruning")
        elif (r.experiment, int(r.state), events[-1]) in after:
            values.append(after[(r.experiment, int(r.state), events[-1])])
            when.append(f"right after the event at epoch {events[-1]}")
        else:
            values.append(r.acc_after_pruning)
            when.append(f"before the event{'s' if len(events) > 1 else ''} (epoch 0; not recorded after them)")
    out["acc_after_pruning"] = values
    out["when"] = when
    out["recovery"] = out["final_test_acc"] - out["acc_after_pruning"]
    return out.reset_index(drop=True)


def dynamics(epochs: pd.DataFrame, window: int = WINDOW, metric: str = "test_acc") -> pd.DataFrame:
    """Per state: convergence, stability and the overfitting gap from the trained epochs (epoch >= 1).

    Convergence compares the mean of ``metric`` over the last ``window`` epochs with its mean over the
    ``window`` before; a state with fewer than 2 x window epochs uses half its epochs for each.
    Stability is the sample std of the last window. The gap is train minus validation accuracy at the
    last epoch. A state whose evaluated epochs do not all have a test accuracy (``train.eval_test:
    best_and_final`` evaluates test at epoch 0, the best and the last epoch only) is measured on
    ``val_acc`` instead; the ``metric`` column says which was used.
    """
    rows = []
    trained = epochs[epochs["epoch"] >= 1]
    for (exp, state), part in trained.groupby(["experiment", "state"], sort=True):
        part = part.sort_values("epoch")
        if metric in EVAL_FIELDS and "evaluated" in part:
            part = part[part["evaluated"].astype(bool)]  # the epochs train.eval_every evaluated (the last always)
        used = metric
        if metric == "test_acc" and (metric not in part or part[metric].isna().any()):
            used = "val_acc"  # test evaluated at the best and last epochs only: per-epoch dynamics on val
        values = part[used].to_numpy(dtype=float)
        w = min(window, len(values) // 2)
        last = values[-w:] if w else values[-1:]
        prev = values[-2 * w : -w] if w else values[:0]
        rows.append(
            {
                "experiment": exp,
                "method": part["method"].iloc[0],
                "seed": part["seed"].iloc[0],
                "state": int(state),
                "metric": used,
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
        columns=["experiment", "method", "seed", "state", "metric", "window", "last_mean", "prev_mean",
                 "convergence", "stability", "gap"],
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
        # nor has an epoch train.eval_test evaluated on val only a test accuracy (an accuracy is never NaN)
        checks["test_acc"] = checks["test_acc"].where(checks["val_acc"].isna() | checks["test_acc"].notna(), 0.0)
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
