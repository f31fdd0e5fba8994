"""How each method trained, as the page shows it: from the resolved experiment each state stored in
its summary (``provenance.experiment``) and from the learning rate its epochs logged.

A method run with one of its own settings away from the value that reproduces the method as
published (the schema's neutral default of a setting in the method's own section, e.g. RSST's
``peak_at`` < 1) is a variant, and its label says so: ``rsst (mask at 50 %)``.
"""

from __future__ import annotations

import json
import math

import pandas as pd

from prunebench.config import finetune_epochs, neutral_defaults, state_epochs

# How a variant's setting reads in a label; any other setting reads "name value".
_PHRASES = {
    "peak_at": lambda v: f"mask at {100 * float(v):g} %",
    "finetune_epochs": lambda v: f"{int(v)} fine-tune epoch{'s' if int(v) != 1 else ''}",
}


def _config(value) -> dict | None:
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        try:
            out = json.loads(value)
        except json.JSONDecodeError:
            return None
        return out if isinstance(out, dict) else None
    return None


def variant(experiment: dict | None) -> str | None:
    """What makes ``experiment``'s method a variant ("mask at 50 %"), None for the method as published."""
    if not experiment or "method" not in experiment:
        return None
    method = experiment["method"]
    own = experiment.get(method)
    if not isinstance(own, dict):
        return None
    found = []
    for path, default in neutral_defaults().items():
        if len(path) == 2 and path[0] == method and path[1] in own and own[path[1]] != default:
            phrase = _PHRASES.get(path[1], lambda v, k=path[1]: f"{k} {v}")
            found.append(phrase(own[path[1]]))
    return ", ".join(found) or None


def with_variants(labels: dict[str, str], states: pd.DataFrame) -> dict[str, str]:
    """``labels`` (experiment -> name) with each variant's settings added: ``rsst (mask at 50 %)``,
    ``rsst (groupname, mask at 50 %)`` where the group already names it."""
    if "experiment_config" not in states:
        return labels
    configs = states.sort_values("state").drop_duplicates("experiment", keep="last")
    out = dict(labels)
    for exp, cfg in zip(configs["experiment"], configs["experiment_config"]):
        v = variant(_config(cfg))
        if v and exp in out:
            label = out[exp]
            out[exp] = f"{label[:-1]}, {v})" if label.endswith(")") else f"{label} ({v})"
    return out


def lr_span(epochs: pd.DataFrame) -> str:
    """Whether the logged learning rate restarts at each state's start or runs one schedule over the
    chain (it goes on falling from state to state), from one method's epochs."""
    if epochs.empty or "lr" not in epochs:
        return "not recorded"
    restarts = continues = 0
    for _, part in epochs.groupby("experiment"):
        trained = part[(part["epoch"] >= 1) & part["lr"].notna()].sort_values(["state", "epoch"])
        by_state = [p["lr"].to_numpy(dtype=float) for _, p in trained.groupby("state", sort=True)]
        for prev, cur in zip(by_state, by_state[1:]):
            if len(prev) and len(cur):
                if cur[0] > prev[-1] * (1 + 1e-6) + 1e-12:
                    restarts += 1
                elif cur[0] < prev[-1] * (1 - 1e-6) - 1e-12 or len(set(cur)) > 1:
                    continues += 1
    if not restarts and not continues:
        lrs = epochs["lr"].dropna()
        return "constant" if len(lrs) and lrs.nunique() <= 1 else "one state only"
    if restarts and not continues:
        return "restarted at every state"
    if continues and not restarts:
        return "one schedule over the chain"
    return f"restarted at {restarts} of {restarts + continues} state starts"


def _num(v) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:g}"


def _epochs_text(exp: dict, states_n: int) -> str:
    try:
        e0 = state_epochs(exp, 0)
        if states_n <= 1:
            return f"state 0: {e0}"
        e1, ft = state_epochs(exp, 1), finetune_epochs(exp, 1)
    except (KeyError, TypeError, ValueError):
        return "not recorded"
    return f"state 0: {e0}; states 1-{states_n - 1}: {e1}" + (f" + {ft} masked fine-tune" if ft else "")


def recipes(states: pd.DataFrame, epochs: pd.DataFrame, methods: list[str]) -> list[dict]:
    """Per method: its training recipe, one dict of display strings (epochs per state, optimizer,
    learning-rate schedule and whether it restarts per state or spans the chain, the method's own
    settings, its pruning events); "not recorded" where its summaries predate the stored config."""
    out = []
    for m in methods:
        part = states[states["method"] == m]
        cfgs = [c for c in map(_config, part.sort_values("state")["experiment_config"]) if c] if (
            "experiment_config" in part) else []  # fmt: skip
        exp = cfgs[-1] if cfgs else None
        row = {"method": m, "seeds": ", ".join(map(str, sorted(part["seed"].unique())))}
        if exp:
            train = exp.get("train", {})
            states_n = exp.get("prune", {}).get("states", int(part["state"].max()) + 1)
            row["epochs"] = _epochs_text(exp, states_n)
            opt = train.get("optimizer", "?")
            row["optimizer"] = f"{opt}, lr {_num(train.get('lr'))}, weight decay {_num(train.get('weight_decay'))}" + (
                f", momentum {_num(train.get('momentum'))}" if opt == "sgd" else "")  # fmt: skip
            row["schedule"] = f"{train.get('lr_schedule', '?')}, warmup {_num(train.get('warmup_epochs'))} epochs"
            own = exp.get(exp.get("method"))
            row["own"] = ", ".join(f"{k} {v}" for k, v in own.items()) if isinstance(own, dict) else "none"
        else:
            got = part.groupby("state")["epochs"].max() if "epochs" in part else pd.Series(dtype=float)
            row["epochs"] = "; ".join(f"state {k}: {_num(v)}" for k, v in got.items()) or "not recorded"
            row["optimizer"] = row["schedule"] = row["own"] = "not recorded (summaries predate the stored config)"
        row["lr_span"] = lr_span(epochs[epochs["method"] == m]) if len(epochs) else "not recorded"
        events = []
        if "event_epochs" in part:
            first = part.sort_values(["seed", "state"]).drop_duplicates("state")
            for k, ev in zip(first["state"], first["event_epochs"]):
                if isinstance(ev, list) and ev:
                    events.append(f"state {int(k)}: epoch{'s' if len(ev) > 1 else ''} {', '.join(map(str, ev))}")
        row["events"] = "; ".join(events) or "-"
        out.append(row)
    return out
