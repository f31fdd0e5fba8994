"""Snakemake adapter: export an experiment's final state as a compact model (logic in prunebench.export)."""

import sys

sys.stderr = open(snakemake.log[0], "w")

from pathlib import Path

from prunebench.config import job_experiment
from prunebench.export.run import export_checkpoint
from prunebench.logs import configure_logging
from prunebench.train.recovery import release_finished

configure_logging()
experiment, _ = job_experiment(snakemake.config, snakemake.params.experiment, snakemake.params.config_hash)
# this job reads the final state, so Snakemake has recorded it: its sealed copy is no longer needed
release_finished(Path(snakemake.input.checkpoint).parent)
export_checkpoint(
    snakemake.input.checkpoint,
    snakemake.output.model,
    snakemake.output.cost,
    summary=snakemake.input.summary,
    throughput=snakemake.input.get("throughput"),
    experiment=experiment,
)
