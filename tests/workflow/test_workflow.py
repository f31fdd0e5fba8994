"""The real Snakemake workflow on a tiny config, the reference plan, and config errors."""

import json
import re

import pytest
import torch

from prunebench.train.metrics import read_rows
from tests.conftest import REPO, run_snakemake

STATE_FILES = ("last.pt", "best.pt", "metrics.jsonl", "summary.json")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """2 states x 1 epoch of Refill and RSST on synthetic data, run by real Snakemake."""
    from tests.conftest import TINY_CONFIG

    config = json.loads(json.dumps(TINY_CONFIG))
    config["experiments"]["t"]["methods"] = ["refill", "rsst"]
    workdir = tmp_path_factory.mktemp("run")
    proc = run_snakemake(workdir, config)
    return workdir, proc


@pytest.mark.slow
def test_every_declared_file_is_written(finished_run):
    workdir, _ = finished_run
    for method in ("refill", "rsst"):
        exp = f"t-synthetic-tiny_vit-{method}-s0"
        for k in (0, 1):
            sdir = workdir / "results" / exp / f"state{k}"
            for name in STATE_FILES + (("init.pt",) if k == 0 else ()):
                assert (sdir / name).stat().st_size > 0, sdir / name
            ckpt = torch.load(sdir / "last.pt", weights_only=True)
            assert (ckpt["experiment"], ckpt["state"], ckpt["method"]) == (exp, k, method)
            summary = json.loads((sdir / "summary.json").read_text())
            assert summary["state"] == k and summary["device"] == "cpu"
            assert [r["epoch"] for r in read_rows(sdir / "metrics.jsonl")] == [0, 1]
            log = (workdir / "logs" / "train_state" / exp / f"state{k}.log").read_text()
            assert re.search(rf"state {k} epoch 1/1 loss [\d.]+ acc [\d.]+ .* img/s ETA 0:00:00", log)
            assert "no GPU in use: training on the CPU" in log
            assert (workdir / "benchmarks" / "train_state" / exp / f"state{k}.tsv").is_file()
        assert not (workdir / "results" / exp / "recovery").exists() or not any(
            (workdir / "results" / exp / "recovery").iterdir()
        )
    report = (workdir / "results" / "reports" / "summary.md").read_text()
    assert "## synthetic · tiny_vit" in report and "refill best" in report and "rsst final" in report


@pytest.mark.slow
def test_state_k_is_trained_from_state_k_minus_1(finished_run):
    workdir, _ = finished_run
    exp = workdir / "results" / "t-synthetic-tiny_vit-refill-s0"
    s0 = torch.load(exp / "state0/last.pt", weights_only=True)
    s1 = torch.load(exp / "state1/last.pt", weights_only=True)
    assert all(m.all() for m in s0["masks"].values())
    assert not all(m.all() for m in s1["masks"].values())
    assert s1["config"] == s0["config"]


@pytest.mark.slow
def test_a_finished_run_has_nothing_left_to_do(finished_run):
    workdir, _ = finished_run
    proc = run_snakemake(workdir, None, "-n", "--configfile", str(workdir / "config.yaml"))
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_reference_config_plans_the_full_matrix(tmp_path):
    proc = run_snakemake(tmp_path, None, "-n", "--configfile", str(REPO / "config.yaml"))
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", proc.stdout, re.M))
    # 4 ViT-S experiments x 16 states, 7 ResNet-56 experiments x 10 states
    assert counts["train_state0"] == "11" and counts["train_state"] == str(4 * 15 + 7 * 9)
    assert (
        counts["export_compact"] == "11" and counts["report_comparison"] == "3"
    )  # cifar10/100 ViT-S, cifar10 ResNet-56
    assert counts["report_summary"] == counts["report_index"] == "1" and counts["total"] == "151"


def test_invalid_config_stops_before_any_job(tmp_path):
    import yaml

    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["experiments"]["vit"]["methods"] = ["refill", "RSSTX"]
    proc = run_snakemake(tmp_path, config, check=False)
    assert proc.returncode != 0
    output = proc.stdout + proc.stderr
    assert "experiments.vit.methods[1] = 'RSSTX': must be one of dense, refill, rsst" in output
    assert "Traceback" not in output
    assert not (tmp_path / "results").exists() and not (tmp_path / "logs").exists()
