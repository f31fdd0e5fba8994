"""The real Snakemake workflow on a tiny config, the reference plan, and config errors."""

import json
import re

import pytest
import torch

from prunebench.results.metrics import read_rows
from tests.conftest import REPO, run_snakemake

STATE_FILES = ("last.pt", "best.pt", "metrics.jsonl", "summary.json")
SHARED = "shared/t-synthetic-tiny_vit-s0"  # the state 0 that Refill and RSST both start from


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
            run = SHARED if k == 0 else exp
            log = (workdir / "logs" / "train_state" / run / f"state{k}.log").read_text()
            split = r"\(train [\d.]+ s, eval [\d.]+ s, checkpoints [\d.]+ s\)"
            assert re.search(rf"state {k} epoch 1/1 loss [\d.]+ acc [\d.]+ .* img/s {split} ETA 0:00:00", log)
            assert "no GPU in use: training on the CPU" in log
            assert (workdir / "benchmarks" / "train_state" / run / f"state{k}.tsv").is_file()
        assert not (workdir / "results" / exp / "recovery").exists() or not any(
            (workdir / "results" / exp / "recovery").iterdir()
        )
    report = (workdir / "results" / "reports" / "summary.md").read_text()
    assert "## synthetic · tiny_vit" in report and "refill best" in report and "rsst final" in report


@pytest.mark.slow
def test_state0_is_trained_once_and_each_method_gets_its_own_copy(finished_run):
    workdir, proc = finished_run
    out = proc.stdout + proc.stderr
    assert re.search(r"^train_state0\s+1$", out, re.M) and re.search(r"^share_state0\s+2$", out, re.M)
    shared = workdir / "results" / SHARED / "state0"
    source = torch.load(shared / "last.pt", weights_only=True)
    source_rows = read_rows(shared / "metrics.jsonl")
    for method in ("refill", "rsst"):
        exp = f"t-synthetic-tiny_vit-{method}-s0"
        sdir = workdir / "results" / exp / "state0"
        for name in ("last.pt", "best.pt", "init.pt"):
            ckpt = torch.load(sdir / name, weights_only=True)
            assert (ckpt["experiment"], ckpt["method"], ckpt["config"]["name"]) == (exp, method, exp)
        ckpt = torch.load(sdir / "last.pt", weights_only=True)
        assert all(torch.equal(v, source["state_dict"][k]) for k, v in ckpt["state_dict"].items())
        rows = read_rows(sdir / "metrics.jsonl")
        assert all(r["experiment"] == exp and r["method"] == method for r in rows)
        assert [{**r, "experiment": None, "method": None} for r in rows] == [
            {**r, "experiment": None, "method": None} for r in source_rows
        ]
        summary = json.loads((sdir / "summary.json").read_text())
        assert summary["shared_state0"] == f"results/{SHARED}/state0" and summary["method"] == method
        assert "is the dense state 0 trained once" in (workdir / "logs" / "share_state0" / f"{exp}.log").read_text()
    report = (workdir / "results" / "reports" / "synthetic_tiny_vit.md").read_text()
    assert "cpu (shared)" in report


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
    # Three seeds. 30 ViT-S experiments (2 datasets x refill, rsst, random, oneshot and the dense control
    # chain x 3 seeds) x 16 states, 27 ResNet-56 experiments (6 methods + 3 linkages, x 3 seeds) x 10
    # states. State 0 is trained once per dataset and seed for the ViT-S methods, once per seed for the
    # ResNet-56 methods but REPrune, and once per REPrune. The three REPrune-only linkage groups (no dense
    # control of their own: the cnn group's stands for them) also train their dense reference (a shared
    # state 0).
    assert counts["train_state0"] == str(6 + 3 + 12 + 9) and counts["share_state0"] == str(30 + 15)
    assert counts["train_state"] == str(30 * 15 + 27 * 9)
    assert (
        counts["export_compact"] == "57" and counts["report_comparison"] == "3"
    )  # cifar10/100 ViT-S, cifar10 ResNet-56
    # measure.states: last (the default): each experiment's last state is timed by a job of its own,
    # and the dense state 0 of each group and seed (6 ViT-S, 3 ResNet-56, 9 linkage), not once per copy
    assert counts["measure_state"] == str(57 + 18)
    # one local announce_state job per trained state (its line in Snakemake's console)
    assert counts["announce_state"] == str(30 + 30 * 15 + 27 * 9)
    assert counts["report_summary"] == counts["report_index"] == "1" and counts["total"] == str(834 + 75 + 723)
    # one prepare job (check the model, fetch its data and weights) per dataset x model, before the states
    assert counts["prepare"] == "3"
    # each state asks for what its model and epochs need: ViT-S at 224 px (60 epochs), ResNet-56 (30)
    resources = dict(re.findall(r"wildcards: run=shared/(\w+)-\S+\n\s+resources: .*?runtime=(\d+)", proc.stdout))
    assert int(resources["vit"]) > 2 * int(resources["cnn"]) > 0


@pytest.mark.parametrize(
    ("states", "timed"),
    [
        # every trained state (30 x 15 + 27 x 9 pruned states, 9 + 12 states 0 of their own: the shared
        # runs and REPrune's) and the dense state 0 of the 3 REPrune-only linkage groups x 3 seeds
        ("all", 30 * 15 + 27 * 9 + 9 + 12 + 9),
        # states 0 and 5 only: the 9 shared states 0 that sharing experiments copy, 12 REPrune states 0
        # (the linkage groups' dense state 0 is no state of theirs), and state 5 of all 57
        ([0, 5], 9 + 12 + 57),
    ],
)
def test_measure_states_choose_the_timing_jobs(tmp_path, states, timed):
    import yaml

    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["defaults"]["measure"] = {"states": states}
    proc = run_snakemake(tmp_path, config, "-n")
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", proc.stdout, re.M))
    assert counts["measure_state"] == str(timed)
    assert counts["train_state"] == str(30 * 15 + 27 * 9)  # the training plan is the same


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
