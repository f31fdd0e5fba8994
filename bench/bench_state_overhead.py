"""Per-epoch overheads of a prune state: evaluation and checkpoint writes against training.

Runs a demo-sized dense state (config/demo.yaml's ViT on the shipped digits, or another model
there; 5 epochs, as the demo's pruned states) on the CPU through the real state runner
(``train_state``: evaluation, best checkpoints, ``resume.pt`` every epoch, metrics) under the
settings of :data:`SETTINGS`, side by side: ``train.eval_test: every`` (test with val at every
evaluated epoch, the behaviour before issue 24) against the default ``best_and_final`` (val every
epoch; test at epoch 0, the last epoch and once for the best), and ``best_and_final`` with
``train.eval_every`` 2 and 3; checkpoints on the background writer (the default) throughout. Rounds
interleave the settings in a rotating order, so a noisy shared machine slows all alike; each round
is a fresh state in a fresh folder. Reported per setting, medians over rounds:

- the shares of the trained epochs' time (train + eval + checkpoint seconds of the epochs >= 1 in
  metrics.jsonl; the best epoch's test, evaluated at the state's end, is in the last epoch's
  eval_seconds) spent evaluating and blocked on checkpoint writes, and both together;
- the state's ``time_split`` from summary.json (shares of its whole wall time, start-up included);
- the epochs' wall time and the training images/s.

The demo model's checkpoints are small (a few MB); the time the training thread blocks on the
``resume.pt`` of a larger model (ViT-S's weights and AdamW moments, ~260 MB) is timed apart, inline
(atomic, fsynced) against the background writer (its copy of the tensors only).

    PYTHONPATH=src python bench/bench_state_overhead.py --rounds 3 --epochs 5 \
        --json bench/results/state_overhead_eval_test_cpu.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
import yaml

from prunebench.config import resolve_config
from prunebench.io import atomic_write_json
from prunebench.results.layout import StatePaths
from prunebench.train.job import train_state

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = [
    {"name": "eval_test every (before)", "eval_every": 1, "eval_test": "every", "background_checkpoints": True},
    {
        "name": "eval_test best_and_final (default)",
        "eval_every": 1,
        "eval_test": "best_and_final",
        "background_checkpoints": True,
    },
    *(
        {
            "name": f"best_and_final, eval_every {n}",
            "eval_every": n,
            "eval_test": "best_and_final",
            "background_checkpoints": True,
        }
        for n in (2, 3)
    ),
]


def experiment(model: str, epochs: int, setting: dict, eval_batch: int | None) -> dict:
    config = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())
    config["device"] = "cpu"
    config["download"] = False
    config["data_dir"] = str(ROOT / "data")
    train = config["defaults"]["train"]
    train.update(
        state0_epochs=epochs,
        eval_every=setting["eval_every"],
        eval_test=setting["eval_test"],
        background_checkpoints=setting["background_checkpoints"],
    )
    if eval_batch:
        train["eval_batch_size"] = eval_batch
    config["defaults"]["measure"] = {"enabled": False}
    config["experiments"] = {"bench": {"datasets": ["digits"], "models": [model], "methods": ["dense"], "seeds": [0]}}
    return next(iter(resolve_config(config).experiments.values()))


def one_state(exp: dict, threads: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="overhead-") as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        summary = train_state(
            exp, 0, StatePaths(root / "state0", root / "recovery" / "state0"), device="cpu", download=False,
            threads=threads, data_dir=str(ROOT / "data"),
        )  # fmt: skip
        wall = time.perf_counter() - start
        rows = [json.loads(line) for line in (root / "state0" / "metrics.jsonl").read_text().splitlines()]
    trained = [r for r in rows if r["epoch"] > 0]
    train = sum(r["train_seconds"] for r in trained)
    evals = sum(r["eval_seconds"] for r in trained)
    ckpt = sum(r["checkpoint_seconds"] for r in trained)
    epochs_time = train + evals + ckpt
    return {
        "eval_share": evals / epochs_time,
        "checkpoint_share": ckpt / epochs_time,
        "overhead_share": (evals + ckpt) / epochs_time,
        "tested_epochs": sum("test_acc" in r for r in trained),
        "best_epoch": summary["best_epoch"],
        "best_test_acc": summary["best_test_acc"],
        "final_test_acc": summary["final_test_acc"],
        "epoch_seconds": epochs_time / len(trained),
        "images_per_second": statistics.mean(r["images_per_second"] for r in trained),
        "evaluated_epochs": summary["evaluated_epochs"],
        "time_split": summary["time_split"],
        "checkpoint_seconds_state": summary["checkpoint_seconds"],
        "wall_seconds": wall,
    }


def checkpoint_blocking(model_name: str, rounds: int) -> dict:
    """The training thread's time per resume.pt of a larger model (weights + AdamW state), written
    inline (atomic, fsynced) vs handed to the background writer (the copy only), interleaved rounds."""
    from prunebench.models import build_model, model_spec
    from prunebench.train.writer import CheckpointWriter

    spec = model_spec({"arch": model_name, "img_size": 32, "patch_size": 4}, 10)
    model = build_model(spec)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, foreach=True)
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    opt.step()
    resume = {"model": model.state_dict(), "optimizer": opt.state_dict(), "progress": {"epoch": 1}}
    size = sum(t.numel() * t.element_size() for t in model.state_dict().values()) * 3  # weights + 2 moments
    blocked: dict[str, list[float]] = {"sync": [], "background": []}
    with tempfile.TemporaryDirectory(prefix="ckpt-") as tmp:
        # one writer per mode, as in a state: epoch after epoch the same resume.pt (the first is a warm-up)
        writers = {mode: CheckpointWriter(background=mode == "background") for mode in blocked}
        for r in range(rounds + 1):
            for mode in ("sync", "background") if r % 2 == 0 else ("background", "sync"):
                writer, before = writers[mode], writers[mode].blocked_seconds
                writer.save(Path(tmp) / mode / "resume.pt", resume)
                if r:
                    blocked[mode].append(writer.blocked_seconds - before)
                time.sleep(2.0)  # an epoch's training, while the background write finishes
        for writer in writers.values():
            writer.close()
    return {
        "model": model_name, "bytes": size, "rounds": rounds,
        "blocked_seconds": {k: statistics.median(v) for k, v in blocked.items()}, "raw": blocked,
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="vit_digits", help="a model of config/demo.yaml")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--eval-batch", type=int, default=None)
    ap.add_argument("--settings", type=int, nargs="+", help="indices into SETTINGS (default: all of them)")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--checkpoint-model", default="vit_small_patch16_224", help="timm model for the resume.pt timing")
    ap.add_argument("--checkpoint-rounds", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    settings = [SETTINGS[i] for i in args.settings] if args.settings else SETTINGS
    exps = [experiment(args.model, args.epochs, s, args.eval_batch) for s in settings]
    one_state(exps[0], args.threads)  # warm-up: imports, dataset, allocator
    runs: dict[str, list[dict]] = {s["name"]: [] for s in settings}
    for r in range(args.rounds):
        order = list(range(len(settings)))
        order = order[r % len(order) :] + order[: r % len(order)]
        for i in order:
            result = one_state(exps[i], args.threads)
            runs[settings[i]["name"]].append(result)
            print(
                f"round {r + 1} {settings[i]['name']}: eval {100 * result['eval_share']:.1f} %, "
                f"checkpoint {100 * result['checkpoint_share']:.2f} %, epoch {result['epoch_seconds']:.2f} s, "
                f"best epoch {result['best_epoch']} test {result['best_test_acc']:.2f}, "
                f"final test {result['final_test_acc']:.2f}",
                flush=True,
            )
    table = {}
    for name, results in runs.items():
        med = {
            k: statistics.median(x[k] for x in results)
            for k in ("eval_share", "checkpoint_share", "overhead_share", "epoch_seconds", "images_per_second")
        }
        med["time_split"] = {
            k: statistics.median(x["time_split"][k] for x in results) for k in results[0]["time_split"]
        }
        med["evaluated_epochs"] = results[0]["evaluated_epochs"]
        med["tested_epochs"] = results[0]["tested_epochs"]
        table[name] = med
    print(
        "\n| setting | evaluated epochs (with test) | eval share | checkpoint share | eval + checkpoint "
        "| s/epoch | train img/s |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, m in table.items():
        print(
            f"| {name} | {m['evaluated_epochs']} of {args.epochs} ({m['tested_epochs']}) | "
            f"{100 * m['eval_share']:.1f} % | {100 * m['checkpoint_share']:.2f} % | "
            f"{100 * m['overhead_share']:.1f} % | {m['epoch_seconds']:.2f} | {m['images_per_second']:.0f} |"
        )
    ckpt = checkpoint_blocking(args.checkpoint_model, args.checkpoint_rounds) if args.checkpoint_rounds else None
    if ckpt:
        b = ckpt["blocked_seconds"]
        print(
            f"\nresume.pt of {ckpt['model']} ({ckpt['bytes'] / 2**20:.0f} MiB): the training thread blocked "
            f"{b['sync']:.3f} s inline, {b['background']:.3f} s with the background writer (medians)"
        )
    if args.json:
        atomic_write_json(args.json, {
            "benchmark": "state_overhead", "model": args.model, "epochs": args.epochs, "rounds": args.rounds,
            "threads": args.threads, "eval_batch_size": exps[0]["train"]["eval_batch_size"],
            "batch_size": exps[0]["train"]["batch_size"], "device": "cpu",
            "host": platform.node(), "processor": platform.processor() or platform.machine(),
            "torch": torch.__version__, "date": time.strftime("%Y-%m-%d", time.gmtime()),
            "medians": table, "runs": runs, "resume_checkpoint": ckpt,
        })  # fmt: skip


if __name__ == "__main__":
    main()
