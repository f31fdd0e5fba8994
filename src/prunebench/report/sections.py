"""The sections of a comparison report as tables: one function per section, each computing its numbers
with :mod:`prunebench.report.analysis` and formatting them with :mod:`prunebench.report.tables`."""

from __future__ import annotations

import pandas as pd

from prunebench.pruning import registry
from prunebench.report import analysis as A
from prunebench.report.load import Results, read_predictions
from prunebench.report.recipes import recipes
from prunebench.report.tables import RUN_STATE, _missing, acc_cell, ci, frame_table, integer, num, pm, table, text


def summary_table(states: pd.DataFrame, ret: pd.DataFrame, methods: list[str]) -> dict:
    best = A.best_states(states).set_index("method")
    means = A.pruned_means(states).set_index("method")
    rows = []
    for m in methods:
        part = states[states["method"] == m]
        last = int(part["state"].max())
        at_last = ret[(ret["method"] == m) & (ret["state"] == last)]
        rows.append(
            [
                m,
                str(part["seed"].nunique()),
                str(best.at[m, "state"]),
                num(best.at[m, "best"]),
                num(means.at[m, "mean_best"]) if m in means.index else "-",
                num(means.at[m, "mean_final"]) if m in means.index else "-",
                str(last),
                num(part[part["state"] == last]["macs_kept"].mean(), 1),
                num(at_last["final_retention"].mean()) + _ref_mark(at_last),
                num(at_last["final_vs_dense"].mean()) + _ref_mark(at_last),
            ]
        )
    header = ["method", "seeds", "best pruned state", "best acc", "mean best (pruned)", "mean final (pruned)",
              "last state", "MACs kept % at last state", "retention at last state %",
              "vs dense at last state"]  # fmt: skip
    return table(header, rows, "lrrrrrrrrr")


def _ref_mark(part: pd.DataFrame) -> str:
    """ " (dense start)" where a value is against the dense state 0 (no dense chain of that seed ran)."""
    return " (dense start)" if (part["ref_kind"] == "state 0").any() else ""


def retention_table(states: pd.DataFrame, ret: pd.DataFrame, methods: list[str]) -> dict:
    header = ["state"] + [f"{m} retention %" for m in methods]
    rows = []
    for state in sorted(states["state"].unique()):
        cells = [str(int(state))]
        for m in methods:
            part = ret[(ret["method"] == m) & (ret["state"] == state)]
            if part.empty:
                cells.append("missing")
                continue
            vals = part["final_retention"].dropna()
            cell = pm(vals.mean(), vals.std() if len(vals) > 1 else None) if len(vals) else "-"
            cells.append(cell + (_ref_mark(part) if len(vals) else ""))
        rows.append(cells)
    return table(header, rows, "r" * len(header))


def reference_kind(ret: pd.DataFrame) -> str:
    kinds = set(ret["ref_kind"])
    if "chain" in kinds and "state 0" in kinds:
        return "mixed"
    return "chain" if "chain" in kinds else "state 0" if "state 0" in kinds else "none"


def reference_table(refs: pd.DataFrame) -> tuple[dict | None, dict]:
    """The dense reference per seed, and its seed mean for the text."""
    if refs.empty:
        return None, {}
    rows = [
        [r.source, str(r.seed), acc_cell(r.best_test_acc, None, *A.wilson(r.best_test_acc, r.test_size)),
         acc_cell(r.final_test_acc, None, *A.wilson(r.final_test_acc, r.test_size)), integer(r.test_size),
         integer(r.cost_dense_macs), integer(r.cost_dense_params)]
        for r in refs.sort_values(["seed", "reference"]).itertuples()
    ]  # fmt: skip
    header = ["dense state 0", "seed", "best", "final", "test images", "MACs", "params"]
    ref = A.reference_accuracy(refs)
    ref["cell"] = acc_cell(ref["final"], ref["final_std"], *ref["final_ci"])
    return table(header, rows, "lrrrrrr"), ref


def stored_predictions(states: pd.DataFrame) -> dict:
    """Each state's stored predictions (``predictions.npz``) by (experiment, state), where it has them."""
    out = {}
    if "path" not in states:
        return out
    for r in states.itertuples():
        pred = read_predictions(r.path) if isinstance(r.path, str) else None
        if pred is not None:
            out[(r.experiment, int(r.state))] = pred
    return out


def _pval(p) -> str:
    return "-" if _missing(p) else "< 0.0001" if p < 1e-4 else f"{p:.4f}"


def _seed_cells(r, names: tuple[str, str]) -> tuple[str, str]:
    """The seeds a difference is over, and those left out (with the method that ran them)."""
    left = [x.replace("(only a)", f"(only {names[0]})").replace("(only b)", f"(only {names[1]})") for x in r.left_out]
    return (", ".join(map(str, r.seeds)) or "none"), ("; ".join(left) or "none")


def _verdict(r) -> str:
    return {"a better": f"{r.a} better", "b better": f"{r.b} better"}.get(r.verdict, r.verdict)


def _diff_rows(diffs: pd.DataFrame) -> list[list[str]]:
    rows = []
    for r in diffs.itertuples():
        seeds, left = _seed_cells(r, (r.a, r.b))
        p = r.mcnemar_p if r.n == 1 else r.p
        rows.append([num(r.level, 1), f"{r.a} - {r.b}", seeds, left, num(r.diff) + ci(r.lo, r.hi, 2), r.how,
                     _pval(p) + (" (McNemar)" if r.n == 1 and not _missing(p) else ""), _pval(r.holm_p),
                     _verdict(r) + (" (interpolated)" if r.interpolated and r.bearing else "")])  # fmt: skip
    return rows


DIFF_HEADER = ["MACs kept %", "methods", "seeds", "seeds left out", "difference (95 % interval)", "interval", "p",
               "Holm p", "verdict"]  # fmt: skip


def matched_tables(matched: pd.DataFrame, diffs: pd.DataFrame) -> tuple[dict | None, dict | None]:
    """Accuracy at the matched-cost levels, and the differences between methods there."""
    if matched.empty:
        return None, None
    methods = A.method_order(matched["method"])
    rows = []
    for level, part in matched.groupby("level", sort=False):
        part = part.set_index("method")
        cells = [num(level, 1)]
        for m in methods:
            r = part.loc[m]
            cell = pm(r["mean"], r["std"]) if r["n"] else "-"
            cells.append(cell + (" (interp.)" if r["n"] and r["interpolated"] else ""))
        rows.append(cells)
    tab = table(["MACs kept %"] + [f"{m} final" for m in methods], rows, "r" * (len(methods) + 1))
    drows = _diff_rows(diffs)
    return tab, table(DIFF_HEADER, drows, "rlllrlrrl") if drows else None


def decision(matched: pd.DataFrame, diffs: pd.DataFrame, states: pd.DataFrame) -> dict:
    """The lead section: at the last matched cost every method reached, each method's mean and
    interval, the paired differences and their verdicts."""
    out = {"level": None, "methods": None, "diffs": None, "one_seed": False, "m": diffs.attrs.get("m", 0),
           "dense": None}  # fmt: skip
    chain = A.dense_chain(states)
    if len(chain):
        last = chain[chain["state"] == chain["state"].max()]
        acc = last["final_test_acc"]
        out["dense"] = {"cell": pm(acc.mean(), acc.std() if len(acc) > 1 else None), "state": int(last["state"].max())}
    level = A.common_level(matched)
    if level is None:
        return out
    out["level"] = num(level, 1)
    part = matched[(matched["level"] == level) & (matched["n"] > 0)]
    rows = []
    for r in part.itertuples():
        iv = A.method_interval(r.per_seed.values(), r.test_size)
        how = "one model: test-set Wilson" if iv["n"] == 1 else f"t over {iv['n']} seeds, floored at the test set"
        rows.append([r.method, ", ".join(map(str, sorted(r.per_seed))), num(iv["mean"]) + ci(iv["lo"], iv["hi"], 2),
                     "interpolated" if r.interpolated else "measured", how])  # fmt: skip
    out["methods"] = table(["method", "seeds", "final accuracy (95 % interval)", "at this cost", "interval"], rows,
                           "llrll")  # fmt: skip
    here = diffs[diffs["level"] == level]
    drows = _diff_rows(here)
    out["diffs"] = table(DIFF_HEADER, drows, "rlllrlrrl") if drows else None
    out["one_seed"] = bool(len(here)) and int(here["n"].max()) <= 1
    return out


def differences_table(states: pd.DataFrame, predictions: dict) -> dict | None:
    d = A.method_differences(states, predictions)
    if d.empty:
        return None
    rows = []
    for r in d.itertuples():
        seeds, left = _seed_cells(r, (r.a, r.b))
        cost = "matched cost: verdict at matched cost" if r.matched else "unequal cost: no verdict"
        p = _pval(r.mcnemar_p) + " (McNemar)" if r.n == 1 and not _missing(r.mcnemar_p) else "-"
        rows.append([str(r.state), f"{r.a} - {r.b}", f"{num(r.macs_a, 1)} / {num(r.macs_b, 1)}", seeds,
                     num(r.diff) + ci(r.lo, r.hi, 2), r.how, p, cost])  # fmt: skip
    header = ["state", "methods", "MACs kept % a / b", "seeds", "difference (95 % interval)", "interval",
              "p (one seed)", "cost"]  # fmt: skip
    return table(header, rows, "rlrlrlrl")


_CELLS = {
    "number": lambda v, c: num(v, c.digits),
    "integer": lambda v, c: integer(v),
    "whole": lambda v, c: "-" if _missing(v) else str(int(v)),
    "list": lambda v, c: ", ".join(str(int(e)) for e in v) if isinstance(v, (list, tuple)) else "-",
    "yesno": lambda v, c: "yes" if v else "no",
    "text": lambda v, c: text(v),
}


def method_sections(states: pd.DataFrame, epochs: pd.DataFrame) -> list[dict]:
    """The registered methods' own sections (:class:`~prunebench.pruning.hooks.ReportSection`: RSST's
    mask damage, REPrune's pruning events, a plugin's), each with its table; one whose rows are empty
    (the comparison lacks the method) is left out."""
    out = []
    for section in registry.report_sections():
        rows = section.rows(states, epochs)
        if rows is None:
            continue
        columns = [
            (c.header, c.align, lambda r, c=c: _CELLS[c.format](getattr(r, c.field), c)) for c in section.columns
        ]
        found = frame_table(rows, [*RUN_STATE, *columns])
        if found is not None:
            out.append({"title": section.title, "text": section.text, "table": found})
    return out


def budgets_table(states: pd.DataFrame) -> dict | None:
    return frame_table(A.budgets(states), [
        *RUN_STATE,
        ("budget", "l", lambda r: text(r.budget_kind)),
        ("target kept %", "r", lambda r: num(r.target_kept)),
        ("reached kept %", "r", lambda r: num(r.reached_kept)),
        ("reached - target", "r", lambda r: num(r.gap)),
    ])  # fmt: skip


def recovery_table(states: pd.DataFrame, epochs: pd.DataFrame) -> dict:
    return frame_table(A.recovery(states, epochs).sort_values(["method", "seed", "state"]), [
        *RUN_STATE,
        ("after pruning", "r", lambda r: num(r.acc_after_pruning)),
        ("measured", "l", lambda r: r.when),
        ("final", "r", lambda r: num(r.final_test_acc)),
        ("recovery", "r", lambda r: num(r.recovery)),
    ], empty_is_none=False)  # fmt: skip


def recipes_table(states: pd.DataFrame, epochs: pd.DataFrame, methods: list[str]) -> dict:
    rows = [[r["method"], r["seeds"], r["epochs"], r["optimizer"], r["schedule"], r["lr_span"], r["own"], r["events"]]
            for r in recipes(states, epochs, methods)]  # fmt: skip
    header = ["method", "seeds", "epochs per state", "optimizer", "learning rate", "schedule spans",
              "its own settings", "pruning events"]  # fmt: skip
    return table(header, rows, "llllllll")


def dynamics_table(epochs: pd.DataFrame) -> dict:
    return frame_table(A.dynamics(epochs).sort_values(["method", "seed", "state"]), [
        *RUN_STATE,
        ("accuracy", "l", lambda r: {"test_acc": "test", "val_acc": "val"}.get(r.metric, r.metric)),
        ("window", "r", lambda r: str(r.window)),
        ("last mean", "r", lambda r: num(r.last_mean)),
        ("previous mean", "r", lambda r: num(r.prev_mean)),
        ("convergence", "r", lambda r: num(r.convergence)),
        ("stability (std)", "r", lambda r: num(r.stability)),
        ("train - val gap", "r", lambda r: num(r.gap)),
    ], empty_is_none=False)  # fmt: skip


def cost_tables(states: pd.DataFrame) -> tuple[dict, dict, list[str]]:
    c = A.costs(states).sort_values(["method", "seed", "state"])
    rows = [
        [r.method, str(r.seed), str(r.state), text(r.device) + (" (shared)" if r.shared else ""),
         num(r.wall_seconds, 1), num(r.seconds_per_epoch, 2), num(r.images_per_second, 1), num(r.device_hours, 4)]
        for r in c.itertuples()
    ]  # fmt: skip
    per_state = table(
        ["method", "seed", "state", "device", "wall s", "s / epoch", "train img/s", "hours"], rows, "lrrlrrrr"
    )
    tot = A.cost_totals(states).sort_values(["method", "seed"])
    total_rows = [[r.method, str(r.seed), str(r.states), text(r.device), num(r.hours, 4)] for r in tot.itertuples()]
    totals = table(["method", "seed", "states", "device", "hours"], total_rows, "lrrlr")
    sentences = []
    once = A.cost_totals(A.counted_once(states))  # a shared state 0 ran once
    for is_gpu, label in ((True, "GPU-hours"), (False, "CPU-hours")):
        part = once[once["device"].astype(str).str.startswith("cuda") == is_gpu]
        if part["hours"].notna().any():
            sentences.append(f"{num(part['hours'].sum(), 4)} {label}")
    return per_state, totals, sentences


def parameter_tables(states: pd.DataFrame) -> tuple[dict, dict | None]:
    p = A.parameters(states).sort_values(["method", "seed", "state"])
    rows = []
    for r in p.itertuples():
        kept = []
        for kind in ("head", "neuron", "channel"):
            k, g = getattr(r, f"kept_{kind}"), getattr(r, f"groups_{kind}")
            if not _missing(g):
                kept.append(f"{integer(k)}/{integer(g)} {kind}s")
        rows.append([r.method, str(r.seed), str(r.state), num(r.density, 3), ", ".join(kept) or "-",
                     num(r.macs_kept, 1), num(r.params_kept, 1), integer(r.params_dense), integer(r.params_alive),
                     num(r.compression_alive)])  # fmt: skip
    kept = table(
        ["method", "seed", "state", "density", "kept", "MACs kept %", "params kept %", "params (dense)",
         "params alive", "compression"],
        rows,
        "lrrrlrrrrr",
    )  # fmt: skip
    measured = p[p["cost_compact_params"].notna()]
    if measured.empty:
        return kept, None
    rows = [
        [r.method, str(r.seed), str(r.state)]
        + [f"{integer(getattr(r, f'cost_dense_{k}'))} / {integer(getattr(r, f'cost_compact_{k}'))}"
           for k in ("params", *A.PARAM_PARTS, "macs")]
        + [num(r.compression), num(r.macs_reduction)]
        for r in measured.itertuples()
    ]  # fmt: skip
    header = ["method", "seed", "state", "params dense / compact", "attention", "MLP", "other", "MACs dense / compact",
              "compression", "MACs cut %"]  # fmt: skip
    return kept, table(header, rows, "lrrrrrrrrr")


def throughput_table(states: pd.DataFrame) -> tuple[dict | None, str]:
    """The throughput table of the timed states, and which of the finished states they are (the
    workflow times those `measure.states` names: by default each experiment's last state and the
    dense state 0)."""
    t = A.throughput(states)
    if t.empty:
        return None, ""
    timed = t.drop_duplicates(["experiment", "state"])
    note = f"{len(timed)} of the {len(states)} finished states are timed"
    if len(timed) < len(states):
        note += ": " + "; ".join(
            f"{method} seed {seed}: state{'s' if len(part) > 1 else ''} " + ", ".join(map(str, sorted(part["state"])))
            for (method, seed), part in timed.groupby(["method", "seed"], sort=False)
        )
    rows = [
        [r.method, str(r.seed), str(r.state), text(r.device), r.mode, str(r.batch), num(r.dense_ips, 1),
         num(r.compact_ips, 1), num(r.speedup) + (" (within noise)" if r.within_noise else ""),
         f"{num(r.speedup_min)}–{num(r.speedup_max)} ({r.passes})" if r.passes else "-"]
        for r in t.sort_values(["method", "seed", "state", "mode", "batch"], key=_eager_first).itertuples()
    ]  # fmt: skip
    header = ["method", "seed", "state", "device", "mode", "batch", "dense img/s", "compact img/s", "speedup",
              "speedup range over rounds"]  # fmt: skip
    return table(header, rows, "lrrllrrrrr"), note


def _eager_first(col: pd.Series) -> pd.Series:
    """Sort key: eager before compiled within a state, everything else as it is."""
    return col.map({"eager": 0, "compiled": 1}) if col.name == "mode" else col


def completeness_table(results: Results) -> tuple[dict, list[str], int, int]:
    comp = A.completeness(results.plan, results.states)
    rows, missing = [], []
    for r in comp.itertuples():
        rows.append([r.experiment, r.method, str(r.seed), f"{r.done}/{r.planned}",
                     ", ".join(map(str, r.missing)) or "none"])  # fmt: skip
        if r.missing:
            missing.append(f"{r.experiment}: state{'s' if len(r.missing) > 1 else ''} {', '.join(map(str, r.missing))}")
    tab = table(["experiment", "method", "seed", "states done", "missing states"], rows, "lllrl")
    return tab, missing, int(comp["done"].sum()), int(comp["planned"].sum())
