"""Start-up time of the light commands: `snakemake -n` on the reference matrix and on the demo profile,
`prunebench status` and `prunebench validate` (none of which may import torch or timm), and
Snakemake's own floor (a one-rule workflow). Prints a Markdown table.

    PYTHONPATH=src python bench/bench_startup.py                # 7 interleaved rounds
    PYTHONPATH=src python bench/bench_startup.py --runs 11 --models

Each command runs in a fresh process in an empty scratch folder holding a copy of the configs (no
results: `status` reads no files, `snakemake -n` plans every job). The commands take turns, round by
round, so that a change of the machine's load touches them all alike; each gets the minimum (the
figure least disturbed by other processes) and the median of its wall-clock seconds, as a user
waits, and the minimum of its CPU seconds. The load average (`uptime`) is printed before and after:
on a shared machine, compare figures taken under the same load. `--models` adds `validate --models`
(builds the models: torch and timm), for scale.
"""

from __future__ import annotations

import argparse
import os
import resource
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


def commands(models: bool) -> dict[str, list[str]]:
    py = sys.executable
    loud = [py, "-m", "snakemake", "-n", "--cores", "1"]
    snakemake = [*loud, "--quiet"]
    out = {
        "snakemake -n --quiet (reference matrix, config.yaml)": [*snakemake, "--snakefile", str(REPO / "Snakefile")],
        "snakemake -n (the same, printing every job and its resources)": [
            *loud,
            "--snakefile",
            str(REPO / "Snakefile"),
        ],
        "snakemake -n --quiet --profile profiles/demo": [
            *snakemake,
            "--snakefile",
            str(REPO / "Snakefile"),
            "--profile",
            str(REPO / "profiles" / "demo"),
            "--configfile",
            "demo.yaml",
        ],
        "snakemake -n --quiet (a one-rule workflow: Snakemake's own floor)": [*snakemake, "--snakefile", "empty.smk"],
        "prunebench status": [py, "-m", "prunebench.cli", "status", "--config", "config.yaml"],
        "prunebench validate": [py, "-m", "prunebench.cli", "validate", "config.yaml"],
    }
    if models:
        out["prunebench validate --models (torch + timm)"] = [
            py, "-m", "prunebench.cli", "validate", "--models", "config.yaml"
        ]  # fmt: skip
    return out


def run_once(cmd: list[str], cwd: Path) -> tuple[float, float]:
    """Wall-clock and CPU seconds (user + system, the command and its children) of one run."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")]))}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def uptime() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f}, {five:.2f}, {fifteen:.2f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="interleaved rounds (each command once per round)")
    parser.add_argument("--models", action="store_true", help="also time `validate --models` (torch and timm)")
    args = parser.parse_args(argv)
    cmds = commands(args.models)
    load_before = uptime()
    with tempfile.TemporaryDirectory(prefix="prunebench-startup-") as tmp:
        work = Path(tmp)
        shutil.copy(REPO / "config.yaml", work / "config.yaml")
        shutil.copy(REPO / "config" / "demo.yaml", work / "demo.yaml")
        (work / "empty.smk").write_text(EMPTY_WORKFLOW)
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in cmds}
        for _ in range(args.runs):
            for name, cmd in cmds.items():
                times[name].append(run_once(cmd, work))
    print(
        f"{args.runs} interleaved runs each; {os.cpu_count()} CPUs; load average (1, 5, 15 min) "
        f"{load_before} before, {uptime()} after\n"
    )
    print("| command | min s | median s | max s | CPU s (min) |")
    print("|---|---:|---:|---:|---:|")
    for name, runs in times.items():
        wall = [w for w, _ in runs]
        cpu = min(c for _, c in runs)
        print(f"| `{name}` | {min(wall):.2f} | {statistics.median(wall):.2f} | {max(wall):.2f} | {cpu:.2f} |")


if __name__ == "__main__":
    main()
