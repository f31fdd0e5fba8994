"""A state with train.gpus: N is planned as one job holding N GPUs (and, for SLURM, a task per GPU)."""

import json
import re

from tests.conftest import TINY_CONFIG, run_snakemake


def planned_resources(tmp_path, gpus):
    config = json.loads(json.dumps(TINY_CONFIG))
    config["defaults"]["train"]["gpus"] = gpus
    proc = run_snakemake(tmp_path / f"gpus{gpus}", config, "-n", "--resources", "gpu=4")
    jobs = re.findall(r"rule (train_state0?):.*?resources: ([^\n]*)", proc.stdout, re.S)
    assert [rule for rule, _ in jobs] == ["train_state0", "train_state"], proc.stdout
    return [dict(item.split("=", 1) for item in res.split(", ")) for _, res in jobs]


def test_a_two_gpu_state_is_one_job_with_two_gpus_and_one_gpu_states_are_as_before(tmp_path):
    for res in planned_resources(tmp_path, 2):
        assert res["gpu"] == "2" and res["nodes"] == "1" and res["tasks"] == "2" and res["tasks_per_gpu"] == "1"
        assert res["mpi"] == "srun"  # the job starts its tasks itself (srun under SLURM, torchrun locally)
    for res in planned_resources(tmp_path, 1):
        assert res["gpu"] == "1" and not {"nodes", "tasks", "tasks_per_gpu", "mpi"} & set(res)
