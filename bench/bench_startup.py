"""Start-up time of the light commands: `snakemake -n` on the reference matrix, `prunebench status`
and `prunebench validate` (none of which may import torch or timm). Prints a Markdown table.

    PYTHONPATH=src python bench/bench_startup.py                # median of 5 runs each
    PYTHONPATH=src python bench/bench_startup.py --runs 9 --config config/demo.yaml

Each command runs in a fresh process in an empty scratch folder holding a copy of the config (no
results: `status` reads no files, `snakemake -n` plans every job). Wall-clock seconds, as a user
waits. `validate --models` (which builds the models, importing torch and timm) and Snakemake on a
one-rule workflow are timed for scale.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


# Snakemake's own start-up, for scale: a workflow of one rule
EMPTY_WORKFLOW = 'rule all:\n    output:\n        "done"\n    shell:\n        "touch {output}"\n'


def commands(config: str) -> dict[str, list[str]]:
    py = sys.executable
    snakemake = [py, "-m", "snakemake", "-n", "--quiet", "--cores", "1"]
    return {
        "snakemake -n": [*snakemake, "--snakefile", str(REPO / "Snakefile")],
        "snakemake -n (a one-rule workflow, for scale)": [*snakemake, "--snakefile", "empty.smk"],
        "prunebench status": [py, "-m", "prunebench.cli", "status", "--config", config],
        "prunebench validate": [py, "-m", "prunebench.cli", "validate", config],
        "prunebench validate --models": [py, "-m", "prunebench.cli", "validate", "--models", config],
    }


def time_command(cmd: list[str], cwd: Path, runs: int) -> list[float]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")]))}
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
        times.append(time.perf_counter() - start)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return times


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--config", default=str(REPO / "config.yaml"), help="config to time (default: the reference matrix)"
    )
    parser.add_argument("--runs", type=int, default=5, help="runs per command (the median is reported)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="prunebench-startup-") as tmp:
        work = Path(tmp)
        shutil.copy(args.config, work / "config.yaml")
        (work / "empty.smk").write_text(EMPTY_WORKFLOW)
        rows = []
        for name, cmd in commands("config.yaml").items():
            times = time_command(cmd, work, args.runs)
            rows.append((name, statistics.median(times), min(times), max(times)))
    print(
        f"config: {args.config}; {args.runs} runs each; {os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f}\n"
    )
    print("| command | median s | min s | max s |")
    print("|---|---:|---:|---:|")
    for name, median, low, high in rows:
        print(f"| `{name}` | {median:.2f} | {low:.2f} | {high:.2f} |")


if __name__ == "__main__":
    main()
