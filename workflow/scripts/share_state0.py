"""Snakemake adapter: an experiment's own copy of its shared state 0 (logic in prunebench.train.share)."""

import sys

sys.stderr = open(snakemake.log[0], "a", buffering=1)

from pathlib import Path

from prunebench.config import job_experiment
from prunebench.logs import configure_logging
from prunebench.train.share import adopt_state0

configure_logging()
experiment, resolved = job_experiment(snakemake.config, snakemake.params.experiment, snakemake.params.config_hash)
adopt_state0(
    Path(snakemake.input.summary).parent,
    Path(snakemake.output.summary).parent,
    experiment,
    tracking=resolved.runtime.get("logging"),
)
