"""Comparison reports: one Markdown file per dataset x model with the methods side by side, an index.

Every number is computed here from the loaded results (``prunebench.report.load``) by the
analyses in ``prunebench.report.analysis``; the templates only lay the tables out.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pandas as pd
import yaml
from jinja2 import Environment, PackageLoader, StrictUndefined

from prunebench.config import SHARED_DIR
from prunebench.pruning import registry
from prunebench.report import analysis as A
from prunebench.report.html import write_report
from prunebench.report.load import Results, find_summaries, load_results, plan_from_experiments, read_predictions
from prunebench.report.plots import write_plots
from prunebench.report.recipes import recipes
from prunebench.report.summary import render_summary
from prunebench.report.tables import (
    RUN_STATE,
    _missing,
    acc_cell,
    accuracy_by_state,
    ci,
    frame_table,
    integer,
    md_escape,
    num,
    pm,
    table,
    text,
)


def _env() -> Environment:
    env = Environment(
        loader=PackageLoader("prunebench", "report/templates"),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["md"] = md_escape
    return env


def comparison_name(dataset: str, model: str) -> str:
    """The report's file stem, also the name of its plot folder."""
    return f"{dataset}_{model}"


def _summary(states: pd.DataFrame, ret: pd.DataFrame, methods: list[str]) -> dict:
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


def _retention(states: pd.DataFrame, ret: pd.DataFrame, methods: list[str]) -> dict:
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


def _reference_kind(ret: pd.DataFrame) -> str:
    kinds = set(ret["ref_kind"])
    if "chain" in kinds and "state 0" in kinds:
        return "mixed"
    return "chain" if "chain" in kinds else "state 0" if "state 0" in kinds else "none"


def _reference(refs: pd.DataFrame) -> tuple[dict | None, dict]:
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


def _predictions(states: pd.DataFrame) -> dict:
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


def _matched(matched: pd.DataFrame, diffs: pd.DataFrame) -> tuple[dict | None, dict | None]:
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


def _decision(matched: pd.DataFrame, diffs: pd.DataFrame, states: pd.DataFrame) -> dict:
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


def _differences(states: pd.DataFrame, predictions: dict) -> dict | None:
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


def _method_sections(states: pd.DataFrame, epochs: pd.DataFrame) -> list[dict]:
    """The registered methods' own sections (:class:`~prunebench.pruning.hooks.ReportSection`), each
    with its table; one whose rows are empty (the comparison lacks the method) is left out."""
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


def _budgets(states: pd.DataFrame) -> dict | None:
    return frame_table(A.budgets(states), [
        *RUN_STATE,
        ("budget", "l", lambda r: text(r.budget_kind)),
        ("target kept %", "r", lambda r: num(r.target_kept)),
        ("reached kept %", "r", lambda r: num(r.reached_kept)),
        ("reached - target", "r", lambda r: num(r.gap)),
    ])  # fmt: skip


def _recovery(states: pd.DataFrame, epochs: pd.DataFrame) -> dict:
    return frame_table(A.recovery(states, epochs).sort_values(["method", "seed", "state"]), [
        *RUN_STATE,
        ("after pruning", "r", lambda r: num(r.acc_after_pruning)),
        ("measured", "l", lambda r: r.when),
        ("final", "r", lambda r: num(r.final_test_acc)),
        ("recovery", "r", lambda r: num(r.recovery)),
    ], empty_is_none=False)  # fmt: skip


def _recipes(states: pd.DataFrame, epochs: pd.DataFrame, methods: list[str]) -> dict:
    rows = [[r["method"], r["seeds"], r["epochs"], r["optimizer"], r["schedule"], r["lr_span"], r["own"], r["events"]]
            for r in recipes(states, epochs, methods)]  # fmt: skip
    header = ["method", "seeds", "epochs per state", "optimizer", "learning rate", "schedule spans",
              "its own settings", "pruning events"]  # fmt: skip
    return table(header, rows, "llllllll")


def _dynamics(epochs: pd.DataFrame) -> dict:
    return frame_table(A.dynamics(epochs).sort_values(["method", "seed", "state"]), [
        *RUN_STATE,
        ("window", "r", lambda r: str(r.window)),
        ("last mean", "r", lambda r: num(r.last_mean)),
        ("previous mean", "r", lambda r: num(r.prev_mean)),
        ("convergence", "r", lambda r: num(r.convergence)),
        ("stability (std)", "r", lambda r: num(r.stability)),
        ("train - val gap", "r", lambda r: num(r.gap)),
    ], empty_is_none=False)  # fmt: skip


def _costs(states: pd.DataFrame) -> tuple[dict, dict, list[str]]:
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


def _parameters(states: pd.DataFrame) -> tuple[dict, dict | None]:
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


def _throughput(states: pd.DataFrame) -> tuple[dict | None, str]:
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


def _completeness(results: Results) -> tuple[dict, list[str], int, int]:
    comp = A.completeness(results.plan, results.states)
    rows, missing = [], []
    for r in comp.itertuples():
        rows.append([r.experiment, r.method, str(r.seed), f"{r.done}/{r.planned}",
                     ", ".join(map(str, r.missing)) or "none"])  # fmt: skip
        if r.missing:
            missing.append(f"{r.experiment}: state{'s' if len(r.missing) > 1 else ''} {', '.join(map(str, r.missing))}")
    tab = table(["experiment", "method", "seed", "states done", "missing states"], rows, "lllrl")
    return tab, missing, int(comp["done"].sum()), int(comp["planned"].sum())


# Fields of a resolved experiment that tell its experiments apart within a group (listed as the
# group's methods and seeds instead)
_PER_EXPERIMENT = ("name", "method", "seed")


def _stored_configs(states: pd.DataFrame) -> list[dict]:
    """The resolved experiments the comparison's finished states were trained under (their summaries'
    provenance), one per experiment: its latest state's."""
    if states.empty or "experiment_config" not in states:
        return []
    latest = states.sort_values("state").drop_duplicates("experiment", keep="last")
    return [json.loads(c) for c in latest["experiment_config"] if isinstance(c, str)]


def _group_configs(configs: list[dict]) -> dict[str, dict]:
    """Per group: its resolved settings (one YAML mapping: group, dataset, model, methods and seeds
    first), and the settings on which its experiments disagree (trained under different configs)."""
    groups: dict[str, list[dict]] = {}
    for exp in configs:
        groups.setdefault(exp.get("group", "?"), []).append(exp)
    out = {}
    for group, exps in sorted(groups.items()):
        shared = [{k: v for k, v in e.items() if k not in _PER_EXPERIMENT} for e in exps]
        differ = sorted({k for s in shared for k in s if any(t.get(k) != s.get(k) for t in shared)})
        first = shared[0]
        head = {k: first[k] for k in ("group", "dataset", "model_key") if k in first}
        head["methods"] = A.method_order({e["method"] for e in exps})
        head["seeds"] = sorted({e["seed"] for e in exps})
        out[group] = {"config": {**head, **{k: v for k, v in first.items() if k not in head}}, "differ": differ}
    return out


def _code_block(text: str) -> dict:
    """A fenced code block whose fence no backtick run inside ``text`` can close."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    return {"fence": "`" * max(3, longest + 1), "text": text.rstrip("\n")}


def _distinct(values, fmt=str) -> str:
    vals = sorted({fmt(v) for v in values if not _missing(v)})
    return ", ".join(vals) if vals else "not recorded"


def _versions(states: pd.DataFrame) -> dict | None:
    """What the comparison's states ran on: source, packages, devices, hosts, jobs, time and memory."""
    if states.empty:
        return None

    def col(name):
        return states[name] if name in states else pd.Series([float("nan")] * len(states))

    source = []
    for version, commit, dirty in zip(col("prov_version"), col("prov_commit"), col("prov_dirty")):
        if _missing(version):
            continue
        label = str(version)
        if not _missing(commit):
            label += f" (git {str(commit)[:12]}{', modified' if dirty is True else ''})"
        source.append(label)
    devices = [
        f"{name} (driver {driver})" if not _missing(driver)
        else f"{name} ({isa} kernels)" if not _missing(isa) else name  # a CPU: its instruction set
        for name, driver, isa in zip(col("prov_device_name"), col("prov_driver"), col("prov_capability"))
        if not _missing(name)
    ]  # fmt: skip
    cuda = [
        f"{c} (cuDNN {d})" if not _missing(d) else str(c)
        for c, d in zip(col("prov_cuda"), col("prov_cudnn"))
        if not _missing(c)
    ]
    hosts = {h for h in col("prov_host") if not _missing(h)}
    jobs = {j for j in col("prov_slurm_job_id") if not _missing(j)}
    starts = [t for t in col("prov_started_at") if not _missing(t)]
    ends = [t for t in col("prov_finished_at") if not _missing(t)]
    gpu, host = col("prov_peak_gpu_mb").astype(float), col("prov_peak_host_mb").astype(float)
    recorded = int(col("prov_host").notna().sum())
    rows = [
        ["states with provenance", f"{recorded} of {len(states)}" + ("" if recorded == len(states) else
                                   " (the others were written before prunebench recorded it)")],
        ["prunebench", _distinct(source)],
        *[[pkg, _distinct(col(f"prov_{pkg.lower()}"))] for pkg in ("Python", "torch", "torchvision", "timm", "numpy", "scikit-learn")],
        ["CUDA build", _distinct(cuda) if cuda else "none (CPU-only torch) or not recorded"],
        ["devices", _distinct(devices)],
        ["hosts", f"{len(hosts)}: {', '.join(sorted(hosts)[:4])}{', ...' if len(hosts) > 4 else ''}" if hosts
         else "not recorded"],
        ["SLURM jobs", f"{len(jobs)}" if jobs else "none (not run under SLURM) or not recorded"],
        ["trained", f"{min(starts)} to {max(ends)}" if starts and ends else "not recorded"],
        ["peak GPU memory (MB)", num(gpu.max(), 0) if gpu.notna().any() else "-"],
        ["peak host memory (MB)", num(host.max(), 0) if host.notna().any() else "-"],
    ]  # fmt: skip
    return table(["", "recorded by the states"], rows, "ll")


def _produced(states: pd.DataFrame, experiments: dict[str, dict] | None, dataset: str, model: str) -> dict:
    """The "How it was produced" section: each group's resolved config and the versions."""
    stored = _group_configs(_stored_configs(states))
    planned = [e for e in (experiments or {}).values() if e["dataset"] == dataset and e["model_key"] == model]
    groups = []
    for group, entry in {**_group_configs(planned), **stored}.items():
        groups.append({
            "group": group,
            "source": "the summaries of its finished states" if group in stored else "the workflow's config (no state of it has finished)",
            "differ": entry["differ"],
            "block": _code_block(yaml.safe_dump(entry["config"], sort_keys=False, default_flow_style=False)),
        })  # fmt: skip
    return {"groups": sorted(groups, key=lambda g: g["group"]), "versions": _versions(states)}


def comparison_context(
    results: Results, dataset: str, model: str, plots: dict[str, str], experiments: dict[str, dict] | None = None
) -> dict:
    """Everything the comparison template shows, as formatted tables and sentences. ``experiments``
    (the workflow's resolved experiments) give the config of groups none of whose states has finished."""
    res = results.select(dataset, model)
    states, epochs = res.states, res.epochs
    ctx = {"dataset": dataset, "model": model, "plots": plots, "match_tol": A.MATCH_TOL}
    ctx["produced"] = _produced(states, experiments, dataset, model)
    ctx["completeness"], ctx["missing"], ctx["done"], ctx["planned"] = _completeness(res)
    ctx["has_results"] = not states.empty
    if states.empty:
        return ctx
    methods = A.method_order(states["method"])
    ctx["methods"] = methods
    ctx["seeds"] = {m: sorted(states[states["method"] == m]["seed"].unique().tolist()) for m in methods}
    ctx["multi_seed"] = any(len(s) > 1 for s in ctx["seeds"].values())
    ctx["accuracy"] = accuracy_by_state(states, methods)
    refs = res.references
    ctx["reference"], ctx["ref"] = _reference(refs)
    predictions = _predictions(states)
    ctx["predictions"] = {"with": len(predictions), "states": len(states)}
    matched = A.matched_cost(states)
    diffs = A.matched_differences(matched, predictions)
    ctx["matched"], ctx["matched_diffs"] = _matched(matched, diffs)
    ctx["verdicts"] = diffs.attrs.get("m", 0)
    ctx["decision"] = _decision(matched, diffs, states)
    ctx["differences"] = _differences(states, predictions)
    ctx["method_sections"], ctx["budgets"] = _method_sections(states, epochs), _budgets(states)
    ret = A.retention(states, refs)
    ctx["summary"] = _summary(states, ret, methods)
    ctx["retention"] = _retention(states, ret, methods)
    ctx["reference_kind"] = _reference_kind(ret)
    ctx["recipes"] = _recipes(states, epochs, methods)
    ctx["recovery"] = _recovery(states, epochs)
    ctx["dynamics"] = _dynamics(epochs)
    ctx["window"] = A.WINDOW
    ctx["anomalies"] = [a["message"] for a in A.anomalies(states, epochs)]
    ctx["anomaly_drop"] = A.ANOMALY_DROP
    ctx["divergence"] = A.DIVERGENCE_FACTOR
    ctx["costs"], ctx["cost_totals"], ctx["cost_sentences"] = _costs(states)
    ctx["kept"], ctx["slimmed"] = _parameters(states)
    ctx["throughput"], ctx["throughput_timed"] = _throughput(states)
    return ctx


def render_comparison(
    results: Results, dataset: str, model: str, plots: dict[str, str], experiments: dict[str, dict] | None = None
) -> str:
    ctx = comparison_context(results, dataset, model, plots, experiments)
    return _env().get_template("comparison.md.j2").render(**ctx)


def write_comparison_report(
    results: Results,
    dataset: str,
    model: str,
    output: str | Path,
    plot_dir: str | Path,
    html: str | Path | None = None,
    experiments: dict[str, dict] | None = None,
):
    """Plots into ``plot_dir``, the Markdown report (linking them by relative path) to ``output`` and,
    when given, its HTML version (plots embedded) to ``html``; ``experiments``: the workflow's resolved
    experiments, for the configs of groups with no finished state."""
    output = Path(output)
    res = results.select(dataset, model)
    paths = write_plots(res.states, res.epochs, plot_dir, f"{dataset} · {model}", res.references)
    rel = {k: Path(os.path.relpath(p, output.parent)).as_posix() for k, p in paths.items()}
    write_report(render_comparison(results, dataset, model, rel, experiments), output, html)


def index_context(results: Results, reports: dict[tuple[str, str], str]) -> dict:
    entries = []
    for dataset, model in results.comparisons():
        res = results.select(dataset, model)
        _, missing, done, planned = _completeness(res)
        line = []
        if not res.states.empty:
            for m in A.method_order(res.states["method"]):
                part = res.states[res.states["method"] == m]
                last = int(part["state"].max())
                at_last = part[part["state"] == last]
                acc, macs = at_last["final_test_acc"], at_last["macs_kept"].mean()
                cost = "" if _missing(macs) else f", {num(macs, 1)} % MACs"
                line.append(f"{m} {pm(acc.mean(), acc.std())} (state {last}{cost})")
        entries.append(
            {
                "dataset": dataset,
                "model": model,
                "link": reports.get((dataset, model)),
                "done": done,
                "planned": planned,
                "missing": missing,
                "last": "; ".join(line) or "no finished states",
            }
        )
    return {"entries": entries}


def render_index(results: Results, reports: dict[tuple[str, str], str]) -> str:
    return _env().get_template("index.md.j2").render(**index_context(results, reports))


def write_index(
    results: Results, output: str | Path, reports: dict[tuple[str, str], str | Path], html: str | Path | None = None
) -> None:
    """The index report linking every comparison report (paths made relative to the index), and
    its HTML version (linking theirs) when ``html`` is given."""
    output = Path(output)
    rel = {k: Path(os.path.relpath(v, output.parent)).as_posix() for k, v in reports.items()}
    write_report(render_index(results, rel), output, html)


def comparison_paths(reports_dir: str | Path, dataset: str, model: str) -> tuple[Path, Path]:
    """Where a comparison's Markdown report and its plot folder go."""
    name = comparison_name(dataset, model)
    return Path(reports_dir) / f"{name}.md", Path(reports_dir) / name


def build_reports(
    results_dir: str | Path, plan: pd.DataFrame | None = None, experiments: dict[str, dict] | None = None
) -> tuple[list[Path], list[str]]:
    """Every report from whatever states exist now (the partial-results path of ``prunebench report``).

    ``experiments`` (the config's resolved experiments) give the config of groups with no finished
    state in the reports' closing section. Returns the files written and one line per experiment
    with missing states.
    """
    summaries = find_summaries(results_dir)
    if plan is not None:
        # The config decides what is reported: folders of experiments it no longer has are left out.
        planned = set(plan["experiment"])
        summaries = [
            p for p in summaries if p.parent.parent.name in planned or p.parent.parent.parent.name == SHARED_DIR
        ]
    results = load_results(summaries, plan)
    reports_dir = Path(results_dir) / "reports"
    written, reports = [], {}
    for dataset, model in results.comparisons():
        md, plot_dir = comparison_paths(reports_dir, dataset, model)
        write_comparison_report(results, dataset, model, md, plot_dir, md.with_suffix(".html"), experiments)
        reports[(dataset, model)] = md
        written.append(md)
    write_index(results, reports_dir / "index.md", reports, reports_dir / "index.html")
    # the states loaded above
    write_report(render_summary(results.states), reports_dir / "summary.md", reports_dir / "summary.html")
    written += [reports_dir / "index.md", reports_dir / "summary.md"]
    written += [p.with_suffix(".html") for p in written]
    comp = A.completeness(results.plan, results.states)
    missing = [f"{r.experiment}: {r.done}/{r.planned} states done, missing {', '.join(map(str, r.missing))}"
               for r in comp.itertuples() if r.missing]  # fmt: skip
    return written, missing


def write_comparison_from_files(
    summary_paths, experiments: dict[str, dict], dataset: str, model: str, output, plot_dir, html=None
) -> None:
    """The workflow's comparison job: load the listed states, plan from the resolved experiments."""
    results = _load_planned(summary_paths, experiments)
    write_comparison_report(results, dataset, model, output, plot_dir, html, experiments)


def write_index_from_files(summary_paths, experiments: dict[str, dict], reports: list, output, html=None) -> None:
    """The workflow's index job; ``reports`` holds (dataset, model, path of the comparison report)."""
    write_index(_load_planned(summary_paths, experiments), output, {(d, m): p for d, m, p in reports}, html)


def _load_planned(summary_paths, experiments: dict[str, dict]) -> Results:
    return load_results(summary_paths, plan_from_experiments(experiments))
