"""A state's torch.compile time, cold and warm, across processes sharing ``train.compile_cache_dir``.

Runs the same demo-sized dense state (config/demo.yaml's ViT on the shipped digits, 1 epoch of 256 images, compiled
with ``train.compile: true``) through the real state runner (``train_state``) in fresh processes, one
after the other, all with one new, empty ``train.compile_cache_dir``: the first compiles cold (an
empty cache), the next ones start warm, as every state after the first of a workflow does. Each
process is a new interpreter, so nothing but the on-disk caches carries over (Dynamo's in-memory
caches do not). Per process it reports what the state's summary.json records (``compile``: Dynamo's
compile seconds, graphs, graph breaks, FX graph and AOTAutograd cache hits and misses;
:mod:`prunebench.accel.compile_stats`), the state's wall time and the process's own wall time.

With ``--backend inductor`` (the default, what a GPU state runs) Inductor generates C++ on the CPU,
Triton on a GPU, and the FX graph and AOTAutograd caches serve the warm runs. ``--backend aot_eager``
traces through AOTAutograd but keeps nothing on disk: warm = cold, a check of the counting only.

    PYTHONPATH=src python bench/bench_compile_cache.py --json bench/results/compile_cache_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def experiment(model: str, backend: str, cache_dir: str) -> dict:
    import yaml

    from prunebench.config import resolve_config

    config = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())
    config.update(device="cpu", download=False, data_dir=str(ROOT / "data"))
    config["defaults"]["train"].update(
        state0_epochs=1, warmup_epochs=0, compile=True, compile_backend=backend, compile_cache_dir=cache_dir
    )
    config["defaults"]["measure"] = {"enabled": False}
    config["defaults"]["data"] = {"train_limit": 256}  # the compile is the same; the epoch short
    config["experiments"] = {"bench": {"datasets": ["digits"], "models": [model], "methods": ["dense"], "seeds": [0]}}
    return next(iter(resolve_config(config).experiments.values()))


def child(args) -> None:
    """One state in this (fresh) process; its summary's compile figures as JSON on stdout's last line."""
    from prunebench.results.layout import StatePaths
    from prunebench.train.job import train_state

    exp = experiment(args.model, args.backend, args.cache_dir)
    with tempfile.TemporaryDirectory(prefix="compile-cache-") as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        summary = train_state(
            exp, 0, StatePaths(root / "state0", root / "recovery" / "state0"), device="cpu", download=False,
            threads=args.threads, data_dir=str(ROOT / "data"),
        )  # fmt: skip
        state_seconds = time.perf_counter() - start
        rows = [json.loads(line) for line in (root / "state0" / "metrics.jsonl").read_text().splitlines()]
    out = {
        "compile": summary["compile"],
        "state_seconds": state_seconds,
        "first_eval_seconds": rows[0]["eval_seconds"],
        "epoch1_train_seconds": rows[1]["train_seconds"],
        "epoch1_eval_seconds": rows[1]["eval_seconds"],
    }
    print(json.dumps(out))


def run_process(args, cache_dir: str) -> dict:
    cmd = [
        sys.executable, str(Path(__file__).resolve()), "--child", "--model", args.model, "--backend", args.backend,
        "--cache-dir", cache_dir, "--threads", str(args.threads),
    ]  # fmt: skip
    # the configured folder, not one the environment names (that would win), and Triton's kernels in it too
    env = {k: v for k, v in os.environ.items() if k != "TORCHINDUCTOR_CACHE_DIR"}
    env["TRITON_CACHE_DIR"] = os.path.join(cache_dir, "triton")
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"the state's process failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["process_seconds"] = time.perf_counter() - start
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="vit_digits", help="a model of config/demo.yaml")
    ap.add_argument("--backend", default="inductor", choices=["inductor", "aot_eager"])
    ap.add_argument("--warm-runs", type=int, default=2, help="processes after the cold one")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--cache-dir", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    runs = []
    with tempfile.TemporaryDirectory(prefix="inductor-cache-") as cache:
        for i in range(1 + args.warm_runs):
            run = run_process(args, cache)
            run["run"] = "cold" if i == 0 else "warm"
            runs.append(run)
            c = run["compile"]
            print(
                f"{run['run']}: compile {c['seconds']:.1f} s ({c['graphs']} graphs, {c['graph_breaks']} graph "
                f"breaks, cache {c['cache']}), state {run['state_seconds']:.1f} s, process {run['process_seconds']:.1f} s",
                flush=True,
            )
    import torch

    result = {
        "what": "one demo-sized dense state (1 epoch) per fresh process, all sharing one new compile cache",
        "model": args.model,
        "backend": args.backend,
        "threads": args.threads,
        "torch": torch.__version__,
        "host": platform.node(),
        "cpu": platform.processor() or platform.machine(),
        "runs": runs,
        "cold_compile_seconds": runs[0]["compile"]["seconds"],
        "warm_compile_seconds": [r["compile"]["seconds"] for r in runs[1:]],
    }
    if args.json:
        from prunebench.io import atomic_write_json

        atomic_write_json(args.json, result)
    print(json.dumps({k: result[k] for k in ("cold_compile_seconds", "warm_compile_seconds")}))


if __name__ == "__main__":
    main()
