"""Analyses of one comparison's results: each a pure function of the loaded DataFrames.

Accuracies are test accuracy in percent. A state's **best** accuracy is the test accuracy at its
epoch of best validation accuracy, its **final** accuracy the test accuracy after its last epoch.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

WINDOW = 5  # epochs compared for convergence and stability (SPEC §5: last 5 vs the 5 before)
ANOMALY_DROP = 5.0  # points of final accuracy below the neighbouring states' mean
DIVERGENCE_FACTOR = 2.0  # final training loss this many times the state's lowest


def method_order(methods) -> list[str]:
    """Dense first (the control), then the pruning methods by name."""
    return sorted(set(methods), key=lambda m: (m != "dense", m))


def seed_stats(states: pd.DataFrame, column: str) -> pd.DataFrame:
    """Per method and state: mean, sample std (NaN for one seed) and number of seeds of ``column``."""
    if states.empty:
        return pd.DataFrame(columns=["method", "state", "mean", "std", "n"])
    g = states.groupby(["method", "state"])[column]
    return g.agg(mean="mean", std="std", n="count").reset_index()


def accuracy_table(states: pd.DataFrame) -> pd.DataFrame:
    """Per method and state: best and final accuracy over seeds, and the state's density."""
    best = seed_stats(states, "best_test_acc").rename(columns={"mean": "best", "std": "best_std"})
    final = seed_stats(states, "final_test_acc").rename(columns={"mean": "final", "std": "final_std"})
    density = states.groupby(["method", "state"])["density"].mean().reset_index()
    return best.merge(final.drop(columns="n"), on=["method", "state"]).merge(density, on=["method", "state"])


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


def retention(states: pd.DataFrame) -> pd.DataFrame:
    """Per state: final and best accuracy as a percentage of the same experiment's dense state 0."""
    base = states[states["state"] == 0].set_index("experiment")
    out = states[["experiment", "method", "seed", "state"]].copy()
    for col in ("final_test_acc", "best_test_acc"):
        ref = states["experiment"].map(base[col]) if len(base) else np.nan
        out[col.replace("_test_acc", "_retention")] = 100.0 * states[col] / ref
    return out


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
    cols = ["experiment", "method", "seed", "state", "density", "params_dense", "params_alive"]
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
    """Per state with a throughput measurement: dense and compact images/s per batch size, speedup."""
    rows = []
    dense_cols = sorted((c for c in states.columns if c.startswith("tput_dense_")), key=lambda c: int(c.split("_")[-1]))
    for _, s in states.iterrows():
        for col in dense_cols:
            batch = col.split("_")[-1]
            dense, compact = s.get(col), s.get(f"tput_compact_{batch}")
            if pd.isna(dense) or pd.isna(compact):
                continue
            rows.append(
                {
                    "experiment": s["experiment"],
                    "method": s["method"],
                    "seed": s["seed"],
                    "state": int(s["state"]),
                    "device": s.get("tput_device"),
                    "batch": int(batch),
                    "dense_ips": float(dense),
                    "compact_ips": float(compact),
                    "speedup": float(compact) / float(dense),
                }
            )
    cols = ["experiment", "method", "seed", "state", "device", "batch", "dense_ips", "compact_ips", "speedup"]
    return pd.DataFrame(rows, columns=cols)


def seed_separation(states: pd.DataFrame, column: str = "final_test_acc") -> pd.DataFrame:
    """Per state and pair of methods where one has several seeds: does the gap exceed the seed spread?

    The spread is the sum of the two methods' sample std over seeds (a method with one seed
    contributes 0); a difference "exceeds" when its absolute value is larger than that sum.
    """
    stats = seed_stats(states, column)
    rows = []
    for state, part in stats.groupby("state", sort=True):
        part = part.set_index("method")
        methods = method_order(part.index)
        for i, a in enumerate(methods):
            for b in methods[i + 1 :]:
                na, nb = part.at[a, "n"], part.at[b, "n"]
                if max(na, nb) < 2:
                    continue
                sa = part.at[a, "std"] if na > 1 else 0.0
                sb = part.at[b, "std"] if nb > 1 else 0.0
                diff = part.at[a, "mean"] - part.at[b, "mean"]
                rows.append(
                    {
                        "state": int(state),
                        "a": a,
                        "b": b,
                        "diff": float(diff),
                        "spread": float(sa + sb),
                        "exceeds": bool(abs(diff) > sa + sb),
                    }
                )
    return pd.DataFrame(rows, columns=["state", "a", "b", "diff", "spread", "exceeds"])
