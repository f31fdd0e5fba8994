"""A whole demo-sized ViT state trained slim and masked (train.slim, issue 23), side by side.

    PYTHONPATH=src python bench/bench_slim_state.py --json bench/results/slim_state_cpu_demo_vit.json
    PYTHONPATH=src python bench/bench_slim_state.py --method rsst --json bench/results/slim_state_cpu_demo_vit_rsst.json

config/demo.yaml's ViT (``vit_digits``: 4 blocks, embed 96, 3 heads, patch 8 at 32 px; digits,
batch 32, AdamW) with ``prune.states: 2``, so that its one pruned state sits at the demo's last
density (``target_sparsity`` 0.7: 30 % of the heads and MLP neurons kept, global ranking). State 0 is
trained once (``--state0-epochs``); then state 1 is trained by the real state runner
(``train.job.train_state``) ``--rounds`` times each way, alternating ``train.slim: auto`` (slim) and
``off`` (masked), each into a folder of its own. Per run the metrics rows give the epochs' training
seconds (``epoch_seconds``: the training pass only) and the summary the state's wall time; the
figure is the ratio of the medians, masked / slim. The two ways' per-epoch losses are compared
(``train_loss_max_relative_difference``), and so, as a control, are those of one more masked run with
another thread count (``--control-threads``: another float summation order, nothing else changed):
where training amplifies float rounding, masked differs from masked as much as slim does.

``--method rsst`` times an RSST state instead: with ``prune.states: 3`` (states 0 and 1 trained
once), state 2 trains the slim model of its training masks (state 1's groups, the penalised ones
alive) under the penalty, re-slims at the hard mask and fine-tunes ``--finetune-epochs`` epochs on the
narrower model; masked, it trains the dense model throughout.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # a shared CPU: threads wait passively

import torch  # noqa: E402
import yaml  # noqa: E402

from prunebench.config import resolve_config  # noqa: E402
from prunebench.io import atomic_write_json  # noqa: E402
from prunebench.provenance import versions  # noqa: E402
from prunebench.results.layout import StatePaths  # noqa: E402
from prunebench.results.metrics import read_rows  # noqa: E402
from prunebench.train.job import train_state  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def demo_experiment(epochs: int, state0_epochs: int, method: str = "refill", finetune_epochs: int = 0) -> dict:
    config = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    config["experiments"] = {"demo": {**config["experiments"]["demo"], "methods": [method]}}
    # refill: state 0 and one pruned state, at the demo chain's last density; rsst: a state 2, whose
    # training masks (state 1's) are already narrowed
    config["defaults"]["prune"]["states"] = 2 if method == "refill" else 3
    config["defaults"]["train"].update(epochs=epochs, state0_epochs=state0_epochs)
    if method == "rsst":
        config["defaults"]["rsst"] = {"finetune_epochs": finetune_epochs}
    config["defaults"]["measure"] = {"enabled": False}
    return next(iter(resolve_config(config).experiments.values()))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", type=Path, help="write the raw figures here")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--state0-epochs", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--control-threads", type=int, default=1, help="the control masked run's threads (0: none)")
    ap.add_argument("--data-dir", default=str(REPO / "data"))
    ap.add_argument("--method", choices=["refill", "rsst"], default="refill")
    ap.add_argument("--finetune-epochs", type=int, default=1, help="rsst: fine-tune epochs after the hard mask")
    args = ap.parse_args(argv)
    exp = demo_experiment(args.epochs, args.state0_epochs, args.method, args.finetune_epochs)
    timed = exp["prune"]["states"] - 1  # the state trained both ways; those before it are trained once
    root = Path(tempfile.mkdtemp(prefix="bench_slim_state_"))

    def paths(run: str, k: int) -> StatePaths:
        previous = root / f"s0/state{k - 1}/last.pt" if k else None
        return StatePaths(root / run / f"state{k}", root / run / f"rec{k}", previous, root / "s0/state0/init.pt")

    kw = {"data_dir": args.data_dir, "download": False, "device": "cpu", "threads": args.threads}
    for k in range(timed):
        train_state(exp, k, paths("s0", k), **kw)
    runs: dict[str, list[dict]] = {"slim": [], "masked": []}
    for r in range(args.rounds):
        for way in ("slim", "masked") if r % 2 == 0 else ("masked", "slim"):
            e = copy.deepcopy(exp)
            e["train"]["slim"] = "auto" if way == "slim" else "off"
            start = time.perf_counter()
            summary = train_state(e, timed, paths(f"{way}{r}", timed), **kw)
            rows = read_rows(root / f"{way}{r}" / f"state{timed}" / "metrics.jsonl")[1:]
            assert summary["run"]["training"] == way, summary["run"]
            runs[way].append({
                "epoch_seconds": [row["epoch_seconds"] for row in rows], "train_loss": [row["train_loss"] for row in rows],
                "final_test_acc": summary["final_test_acc"], "wall_seconds": time.perf_counter() - start,
                "density": summary["density"], "kept": summary["kept"],
            })  # fmt: skip
            print(
                f"  {way} round {r}: epochs {[f'{s:.2f}' for s in runs[way][-1]['epoch_seconds']]} s", file=sys.stderr
            )

    def rel(a, b):
        return max(abs(x - y) / abs(y) for x, y in zip(a, b))

    worst = rel(runs["slim"][0]["train_loss"], runs["masked"][0]["train_loss"])
    control = None
    if args.control_threads:
        e = copy.deepcopy(exp)
        e["train"]["slim"] = "off"
        summary = train_state(e, timed, paths("control", timed), **{**kw, "threads": args.control_threads})
        rows = read_rows(root / "control" / f"state{timed}" / "metrics.jsonl")[1:]
        control = {
            "threads": args.control_threads, "train_loss": [row["train_loss"] for row in rows],
            "final_test_acc": summary["final_test_acc"],
            "train_loss_max_relative_difference_to_masked": rel([row["train_loss"] for row in rows], runs["masked"][0]["train_loss"]),
        }  # fmt: skip

    def med(way, key):
        vals = [v for run in runs[way] for v in (run[key] if isinstance(run[key], list) else [run[key]])]
        return statistics.median(vals)

    out = {
        "what": f"config/demo.yaml's ViT (vit_digits), {args.method}'s state {timed} of {timed + 1}, slim vs masked",
        "method": args.method, "timed_state": timed,
        "command": "PYTHONPATH=src python bench/bench_slim_state.py " + " ".join(argv or sys.argv[1:]),
        "epochs": args.epochs, "rounds": args.rounds, "threads": args.threads,
        "density": runs["slim"][0]["density"], "kept": runs["slim"][0]["kept"],
        "epoch_seconds": {way: med(way, "epoch_seconds") for way in runs},
        "state_wall_seconds": {way: med(way, "wall_seconds") for way in runs},
        "epoch_time_ratio_masked_over_slim": med("masked", "epoch_seconds") / med("slim", "epoch_seconds"),
        "state_wall_ratio_masked_over_slim": med("masked", "wall_seconds") / med("slim", "wall_seconds"),
        "train_loss_max_relative_difference": worst,
        "control_masked_other_threads": control,
        "final_test_acc": {way: [run["final_test_acc"] for run in runs[way]] for way in runs},
        "runs": runs,
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "torch_threads": torch.get_num_threads(), "load": os.getloadavg()},
        "versions": versions(),
    }  # fmt: skip
    print(json.dumps({k: v for k, v in out.items() if k not in ("runs", "versions")}, indent=1))
    if args.json:
        atomic_write_json(args.json, out)
    return out


if __name__ == "__main__":
    main()
