"""The comparison report's context: for one dataset x model, every section's table (:mod:`.sections`)
and the "How it was produced" section (each group's resolved config and what the states ran on).

Every number is computed from the loaded results (``prunebench.report.load``) by the analyses in
``prunebench.report.analysis``; the templates only lay the tables out (:mod:`.render`)."""

from __future__ import annotations

import json
import re

import pandas as pd
import yaml

from prunebench.report import analysis as A
from prunebench.report.load import Results
from prunebench.report.sections import (
    budgets_table,
    completeness_table,
    cost_tables,
    decision,
    differences_table,
    dynamics_table,
    matched_tables,
    method_sections,
    parameter_tables,
    recipes_table,
    recovery_table,
    reference_kind,
    reference_table,
    retention_table,
    stored_predictions,
    summary_table,
    throughput_table,
)
from prunebench.report.tables import _missing, accuracy_by_state, num, table

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


def produced(states: pd.DataFrame, experiments: dict[str, dict] | None, dataset: str, model: str) -> dict:
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
    ctx["produced"] = produced(states, experiments, dataset, model)
    ctx["completeness"], ctx["missing"], ctx["done"], ctx["planned"] = completeness_table(res)
    ctx["has_results"] = not states.empty
    if states.empty:
        return ctx
    methods = A.method_order(states["method"])
    ctx["methods"] = methods
    ctx["seeds"] = {m: sorted(states[states["method"] == m]["seed"].unique().tolist()) for m in methods}
    ctx["multi_seed"] = any(len(s) > 1 for s in ctx["seeds"].values())
    ctx["accuracy"] = accuracy_by_state(states, methods)
    refs = res.references
    ctx["reference"], ctx["ref"] = reference_table(refs)
    predictions = stored_predictions(states)
    ctx["predictions"] = {"with": len(predictions), "states": len(states)}
    matched = A.matched_cost(states)
    diffs = A.matched_differences(matched, predictions)
    ctx["matched"], ctx["matched_diffs"] = matched_tables(matched, diffs)
    ctx["verdicts"] = diffs.attrs.get("m", 0)
    ctx["decision"] = decision(matched, diffs, states)
    ctx["differences"] = differences_table(states, predictions)
    ctx["method_sections"], ctx["budgets"] = method_sections(states, epochs), budgets_table(states)
    ret = A.retention(states, refs)
    ctx["summary"] = summary_table(states, ret, methods)
    ctx["retention"] = retention_table(states, ret, methods)
    ctx["reference_kind"] = reference_kind(ret)
    ctx["recipes"] = recipes_table(states, epochs, methods)
    ctx["recovery"] = recovery_table(states, epochs)
    ctx["dynamics"] = dynamics_table(epochs)
    ctx["window"] = A.WINDOW
    ctx["anomalies"] = [a["message"] for a in A.anomalies(states, epochs)]
    ctx["anomaly_drop"] = A.ANOMALY_DROP
    ctx["divergence"] = A.DIVERGENCE_FACTOR
    ctx["costs"], ctx["cost_totals"], ctx["cost_sentences"] = cost_tables(states)
    ctx["kept"], ctx["slimmed"] = parameter_tables(states)
    ctx["throughput"], ctx["throughput_timed"] = throughput_table(states)
    return ctx
