"""config/imagenet.yaml validates, and its dry run plans every state as one 8-GPU job with its resources."""

import re

from prunebench.config import load_config_file, resolve_config
from prunebench.estimates import state_resources
from tests.conftest import REPO, run_snakemake

CONFIG = REPO / "config" / "imagenet.yaml"


def test_the_imagenet_config_validates_with_its_models_built():
    resolved = resolve_config(load_config_file(CONFIG))  # builds ResNet-50 and DeiT-S on the meta device
    methods = {(e["model_key"], e["method"]) for e in resolved.experiments.values()}
    assert methods == {("resnet50", m) for m in ("dense", "reprune", "refill", "rsst")} | {
        ("deit_small", "refill"),
        ("deit_small", "rsst"),
        ("deit_small", "dense"),  # the dense control chain (dense_control)
    }
    for exp in resolved.experiments.values():
        assert exp["dataset_source"]["kind"] == "imagefolder"
        assert exp["train"]["gpus"] * exp["train"]["nodes"] == 8 and exp["train"]["batch_size"] == 1024
    same_macs = {e["prune"]["target_sparsity"] for e in resolved.experiments.values() if e["model_key"] == "resnet50"}
    assert len(same_macs) == 1 and {e["prune"]["budget"] for e in resolved.experiments.values()} == {"macs"}


def test_the_dry_run_plans_eight_gpu_jobs_with_their_memory_and_time(tmp_path):
    proc = run_snakemake(tmp_path, None, "-n", "--configfile", str(CONFIG), "--resources", "gpu=8")
    out = proc.stdout + proc.stderr
    jobs = re.findall(r"rule (train_state0?):.*?wildcards: ([^\n]*).*?resources: ([^\n]*)", out, re.S)
    counts = dict(re.findall(r"^(train_state0?)\s+(\d+)$", out, re.M))
    assert counts == {"train_state0": "3", "train_state": "51"}, out[-3000:]  # 2 shared dense + REPrune's own
    assert len(jobs) == 54
    resolved = resolve_config(load_config_file(CONFIG))
    for _rule, wildcards, res in jobs:
        res = dict(item.split("=", 1) for item in res.split(", "))
        assert (res["gpu"], res["nodes"], res["tasks"], res["tasks_per_gpu"], res["mpi"]) == (
            "8",
            "1",
            "8",
            "1",
            "srun",
        )
        name = dict(w.split("=", 1) for w in wildcards.split(", "))
        run = name.get("experiment") or name["run"]
        exp = resolved.experiments.get(run) or resolved.state0_runs[run]
        state = int(name.get("state", 0))
        expected = state_resources(exp, state, resolved.resources)
        assert int(res["runtime"]) == expected["runtime"]
        assert int(res["mem_mb"]) == expected["mem_mb"] * 8  # per node: 8 processes, each with 8 decoding workers
    resnet = [r for _, w, r in jobs if "resnet50" in w and "state=1" in w]
    assert resnet and all("runtime=139" in r for r in resnet)  # 25 epochs of ImageNet on 8 GPUs: ~2.3 h
