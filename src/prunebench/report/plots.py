"""Figures of one comparison, written as PNGs with matplotlib's Agg backend (no display needed)."""

from __future__ import annotations

import io
import zlib
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import FuncFormatter, MaxNLocator  # noqa: E402

from prunebench.io import atomic_write_bytes  # noqa: E402
from prunebench.pruning import registry  # noqa: E402
from prunebench.report.analysis import (  # noqa: E402
    accuracy_table,
    method_interval,
    method_order,
    pareto_front,
    reference_accuracy,
)
from prunebench.results.metrics import EVAL_FIELDS  # noqa: E402

# File names inside a comparison's plot folder (the workflow declares them as outputs).
PLOTS = {
    "pareto": "pareto.png",
    "accuracy_vs_state": "accuracy_vs_state.png",
    "accuracy_vs_cost": "accuracy_vs_cost.png",
    "training_curves": "training_curves.png",
}


# One colour per method in every plot of every report. A label that names a group or a variant
# ("rsst (mask at 50 %)") takes a colour of its own from the rest of the palette, chosen by the
# label's text (crc32), so it is the same in every report too.
METHOD_COLORS = {
    "dense": "#000000",
    "random": "#7f7f7f",
    "oneshot": "#8c564b",
    "refill": "#1f77b4",
    "rsst": "#ff7f0e",
    "reprune": "#2ca02c",
}
_SPARE = ["#d62728", "#9467bd", "#e377c2", "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896",
          "#c5b0d5"]  # fmt: skip


def method_color(method: str) -> str:
    """The fixed colour of a method (or of a labelled group or variant of one)."""
    if method in METHOD_COLORS:
        return METHOD_COLORS[method]
    return _SPARE[zlib.crc32(method.encode()) % len(_SPARE)]


def _colors(methods) -> dict[str, str]:
    return {m: method_color(m) for m in method_order(methods)}


def _save(fig, path: str | Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def plain_count(value: float, _pos=None) -> str:
    """A count as a tick label reads it: 350k, 1.2M, 4G (never 1e6 or an offset above the axis)."""
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:.3g}{suffix}"
    return f"{value:.3g}"


def _count_axis(axis) -> None:
    """A parameter or MACs axis: a few plain labels (k, M, G), so that they neither overlap nor need
    an exponent."""
    axis.set_major_locator(MaxNLocator(nbins=5, min_n_ticks=3))
    axis.set_major_formatter(FuncFormatter(plain_count))


def _empty(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="grey")
    ax.set_xticks([])
    ax.set_yticks([])


def _save_empty(fig, axes, title: str, path: str | Path) -> None:
    """A figure that says there is nothing to plot yet (reports are built from partial results)."""
    for ax in axes:
        _empty(ax, "no finished states yet")
    fig.suptitle(title)
    _save(fig, path)


def plot_accuracy_vs_state(states: pd.DataFrame, path: str | Path, title: str) -> None:
    """Best and final accuracy per state, a line per method (error bars: std over seeds)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    acc = accuracy_table(states) if not states.empty else pd.DataFrame()
    colors = _colors(acc["method"]) if len(acc) else {}
    for ax, kind in zip(axes, ("best", "final")):
        if acc.empty:
            _empty(ax, "no finished states yet")
            continue
        for method in method_order(acc["method"]):
            part = acc[acc["method"] == method].sort_values("state")
            ax.errorbar(part["state"], part[kind], yerr=part[f"{kind}_std"].fillna(0), marker="o", capsize=3,
                        color=colors[method], label=method)  # fmt: skip
        ax.set_xlabel("prune state")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(f"{kind} test accuracy")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test accuracy (%)")
    if len(acc):
        axes[0].legend()
    fig.suptitle(title)
    _save(fig, path)


FRONT_STYLE = {"color": "#404040", "lw": 1.8, "ls": (0, (5, 3)), "zorder": 4}


def plot_pareto(states: pd.DataFrame, references: pd.DataFrame, path: str | Path, title: str):
    """Final accuracy against MACs kept (% of dense): every state of every method (seed means, bars:
    the 95 % interval of the method over seeds, floored at the test set; one seed: the model's
    test-set Wilson interval), the dense state 0 as a star at 100 %, and the Pareto front."""
    fig, ax = plt.subplots(figsize=(8, 5))
    acc = accuracy_table(states) if not states.empty else pd.DataFrame()
    acc = acc[acc["macs_kept"].notna()] if len(acc) else acc
    ref = reference_accuracy(references) if references is not None else {}
    if acc.empty and not ref:
        _save_empty(fig, [ax], title, path)
        return fig
    colors = _colors(acc["method"]) if len(acc) else {}
    for method in method_order(acc["method"]) if len(acc) else []:
        part = acc[acc["method"] == method].sort_values("state")
        iv = [method_interval(states[(states["method"] == method) & (states["state"] == k)]["final_test_acc"], n)
              for k, n in zip(part["state"], part["test_size"])]  # fmt: skip
        yerr = np.array([part["final"] - [i["lo"] for i in iv], [i["hi"] for i in iv] - part["final"]])
        ax.errorbar(part["macs_kept"], part["final"], yerr=np.nan_to_num(yerr), marker="o", capsize=2, lw=0.8,
                    color=colors[method], label=method)  # fmt: skip
    if len(acc):
        front = pareto_front(acc)
        # drawn dark and wide enough to show in the legend too (a thin light-grey dash there was invisible)
        ax.step(front["macs_kept"], front["final"], where="post", label="Pareto front", **FRONT_STYLE)
    if ref:
        lo, hi = ref["final_ci"]
        err = [[ref["final"] - lo], [hi - ref["final"]]] if not np.isnan(lo) else None
        ax.errorbar([100.0], [ref["final"]], yerr=err, marker="*", ms=16, color="black", capsize=3, ls="none",
                    zorder=5, label="dense state 0 (the start)")  # fmt: skip
    ax.set_xlabel("MACs kept (% of the dense model)")
    ax.set_ylabel("final test accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(handlelength=3.5)  # long enough to show the front's dashes
    fig.suptitle(title)
    _save(fig, path)
    return fig


def plot_accuracy_vs_cost(states: pd.DataFrame, path: str | Path, title: str, references: pd.DataFrame | None = None):
    """Final accuracy against MACs and against parameters per method, with the dense reference as a star.

    Parameters are those of the slimmed model where every state measured them, else the weights
    the masks keep; MACs come from the states that measured them. A cost nothing measured gets no
    panel. Returns the figure (saved and closed).
    """
    if states.empty:
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        _save_empty(fig, axes, title, path)
        return fig
    df = states.copy()
    # One definition of "parameters" per figure: the slimmed model's only when every state has it.
    measured = "cost_compact_params" in df and df["cost_compact_params"].notna().all()
    df["x_params"] = df["cost_compact_params"] if measured else df["params_alive"]
    df["x_macs"] = df.get("cost_compact_macs", np.nan)
    colors = _colors(df["method"])
    # the dense point is the dense reference (never a pruned state 0), at the dense model's cost
    dense = pd.DataFrame(columns=["x_macs", "x_params", "final_test_acc"])
    if references is not None and len(references):
        dense = pd.DataFrame({"x_macs": references["cost_dense_macs"], "final_test_acc": references["final_test_acc"],
                              "x_params": references["cost_dense_params"] if measured
                              else references["params_dense"]})  # fmt: skip
    params_label = "parameters" if measured else "parameters alive (masked weights)"
    panels = [(col, label) for col, label in (("x_macs", "MACs per image"), ("x_params", params_label))
              if df[col].notna().any()]  # fmt: skip
    fig, axes = plt.subplots(1, max(len(panels), 1), figsize=(11, 4) if len(panels) > 1 else (7, 4))
    axes = np.atleast_1d(axes)
    if not panels:
        _empty(axes[0], "costs not measured")
    for ax, (col, label) in zip(axes, panels):
        # The dense control keeps every parameter: its star is the reference, not a line.
        for method in [m for m in method_order(df["method"]) if m != "dense"]:
            part = df[(df["method"] == method) & (df["state"] >= 1) & df[col].notna()]
            part = part.groupby("state")[[col, "final_test_acc"]].mean()
            if len(part):
                ax.plot(part[col], part["final_test_acc"], marker="o", color=colors[method], label=method)
        d = dense[[col, "final_test_acc"]].astype(float).dropna()
        if len(d):
            ax.scatter([d[col].mean()], [d["final_test_acc"].mean()], marker="*", s=200, color="black",
                       zorder=5, label="dense reference")  # fmt: skip
        ax.set_xlabel(label)
        _count_axis(ax.xaxis)
        ax.set_ylabel("final test accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    _save(fig, path)
    return fig


# The panels of the training curves: metric column of metrics.jsonl -> axis label
CURVE_PANELS = {
    "train_acc": "training accuracy (%)",
    "val_acc": "validation accuracy (%)",
    "test_acc": "test accuracy (%)",
    "train_loss": "training loss",
    "lr": "learning rate",
    "reg_lambda": "penalty lambda",
}
# Epoch 0 of a state is its evaluation right after pruning: nothing is trained, so it has no
# training metrics, learning rate or penalty (its 0 would draw a false dip at every state's start).
_TRAINED_ONLY = ("train_acc", "train_loss", "lr", "reg_lambda")


def curve_panels() -> dict[str, str]:
    """:data:`CURVE_PANELS`, then a panel per metric the registered methods' gradient hooks log
    (``Metric.label``; RSST's penalty lambda is CURVE_PANELS' last)."""
    own = {f: m.label for f, m in registry.gradient_metrics().items() if f not in CURVE_PANELS}
    return {**CURVE_PANELS, **own}


def _chain_x(part: pd.DataFrame) -> pd.Series:
    """Epochs through one experiment's chain: state k's epoch 0 (just after pruning) follows state
    k-1's last epoch. Seeds of a method share the positions, so they can be averaged point by point."""
    x = pd.Series(np.nan, index=part.index)
    offset = 0
    for _, st in part.groupby("state", sort=True):
        x[st.index] = st["epoch"] + offset
        offset += int(st["epoch"].max()) + 1
    return x


def training_curve_series(epochs: pd.DataFrame) -> dict[str, dict[str, pd.DataFrame]]:
    """What the training curves plot: per panel (CURVE_PANELS) and method, one row per position x
    along the chain of states with the mean over seeds, min and max (the band) and the seed count."""
    panels = curve_panels()
    out: dict[str, dict[str, pd.DataFrame]] = {metric: {} for metric in panels}
    if epochs.empty:
        return out
    df = epochs.copy()
    df["x"] = np.nan
    for _, part in df.groupby("experiment", sort=False):
        df.loc[part.index, "x"] = _chain_x(part.sort_values(["state", "epoch"]))
    hooked = registry.gradient_metrics()
    for metric in panels:
        if metric not in df:
            continue  # a gradient metric of a method these results do not have
        values = pd.to_numeric(df[metric], errors="coerce")
        if metric in _TRAINED_ONLY or metric in hooked:
            values = values.where(df["epoch"] > 0)
        skipped = metric in EVAL_FIELDS and "evaluated" in df  # epochs train.eval_every did not evaluate
        for method in method_order(df["method"]):
            sel = df["method"] == method
            if skipped:  # the curve joins the epochs that measured it, without gaps (test: maybe only some)
                sel &= df["evaluated"].astype(bool) & values.notna()
            stats = values[sel].groupby(df.loc[sel, "x"]).agg(["mean", "min", "max", "count"])
            out[metric][method] = stats.rename(columns={"count": "seeds"}).rename_axis("x").reset_index()
    return out


def _drawn(metric: str, s: pd.DataFrame) -> bool:
    """Whether a method's series of a panel has anything to draw: a gradient hook's metric only where it
    ever differs from the value of an epoch without the hook (a penalty's lambda: above 0; every
    method logs 0 when it has no penalty)."""
    hooked = registry.gradient_metrics().get(metric)
    if hooked is not None:
        d = hooked.default
        return bool(((s["max"].fillna(d) != d) | (s["min"].fillna(d) != d)).any())
    return bool(s["mean"].notna().any())


def curves_figure(epochs: pd.DataFrame, title: str):
    """The figure of :func:`plot_training_curves`: a panel per metric some method recorded."""
    if epochs.empty:
        fig, ax = plt.subplots(figsize=(8, 4))
        _empty(ax, "no finished states yet")
        fig.suptitle(title)
        return fig
    series = training_curve_series(epochs)
    labels = curve_panels()
    panels = [m for m in labels if any(_drawn(m, s) for s in series[m].values())]
    if not panels:
        fig, ax = plt.subplots(figsize=(8, 4))
        _empty(ax, "no metric recorded")
        fig.suptitle(title)
        return fig
    rows = -(-len(panels) // 2)
    fig, grid = plt.subplots(rows, 2, figsize=(12, 3.4 * rows), sharex=True, squeeze=False)
    axes = list(grid.ravel())
    if len(panels) % 2:  # an odd number: no empty panel; the one above shows its epoch labels instead
        fig.delaxes(axes.pop())
        if len(axes) > 1:
            axes[-2].xaxis.set_tick_params(labelbottom=True)
    colors = _colors(epochs["method"])
    boundaries = set()
    for _, part in epochs.groupby("experiment"):
        ends = np.cumsum([int(st["epoch"].max()) + 1 for _, st in part.groupby("state", sort=True)]) - 0.5
        boundaries.update(ends[:-1])  # the end of a chain's last state starts no new state
    seeds = max((int(s["seeds"].max()) for per in series.values() for s in per.values() if len(s)), default=1)
    for ax, metric in zip(axes, panels):
        ax.set_ylabel(labels[metric])
        for method, s in series[metric].items():
            if not _drawn(metric, s):
                continue
            ax.plot(s["x"], s["mean"], color=colors[method], label=method, lw=1.2)
            if (s["seeds"] > 1).any():
                ax.fill_between(s["x"], s["min"], s["max"], color=colors[method], alpha=0.2, lw=0)
        for b in sorted(boundaries):
            ax.axvline(b, color="grey", alpha=0.3, lw=0.8)
        ax.grid(alpha=0.3)
    for ax in axes[-2:]:
        ax.set_xlabel("epoch through the states (grey lines: a new prune state starts)")
    axes[0].legend(fontsize="small")
    band = f"; shaded: min-max over {seeds} seeds" if seeds > 1 else ""
    fig.suptitle(f"{title}\nlines: mean over seeds{band}")
    return fig


def plot_training_curves(epochs: pd.DataFrame, path: str | Path, title: str) -> dict[str, str]:
    """Training, validation and test accuracy, training loss, learning rate and a penalty's lambda per
    epoch through the chain of states: a line per method (the mean over its seeds), shaded between
    the seeds' min and max; a panel only for a metric some method recorded (lambda: above 0).
    Returns the drawn panels' y-axis labels by metric."""
    fig = curves_figure(epochs, title)
    labels = {m: label for m, label in curve_panels().items() for ax in fig.axes if ax.get_ylabel() == label}
    _save(fig, path)
    return labels


def write_plots(
    states: pd.DataFrame, epochs: pd.DataFrame, plot_dir: str | Path, title: str, references: pd.DataFrame | None = None
) -> dict[str, Path]:
    """All plots of one comparison into ``plot_dir``; returns their paths by key."""
    plot_dir = Path(plot_dir)
    paths = {key: plot_dir / name for key, name in PLOTS.items()}
    plot_pareto(states, references, paths["pareto"], title)
    plot_accuracy_vs_state(states, paths["accuracy_vs_state"], title)
    plot_accuracy_vs_cost(states, paths["accuracy_vs_cost"], title, references)
    plot_training_curves(epochs, paths["training_curves"], title)
    return paths
