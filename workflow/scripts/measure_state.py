"""Snakemake adapter: time a finished state's dense and compact models (logic in prunebench.export.measure)."""

import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)

from prunebench.config import runtime_settings
from prunebench.logs import configure_logging
from prunebench.prepare import use_job_environment

use_job_environment(snakemake.config.get("weights_dir"))  # a job never downloads

from prunebench.export.measure import measure_state

configure_logging()
measure_state(
    snakemake.input.last,
    snakemake.output.throughput,
    snakemake.params.measure,
    device=runtime_settings(snakemake.config)["device"],
    threads=snakemake.threads,  # every core of --cores locally: nothing else runs beside a timing
)
