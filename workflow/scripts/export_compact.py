"""Snakemake adapter: export an experiment's final state as a compact model (logic in prunebench.export)."""

import sys

sys.stderr = open(snakemake.log[0], "w")

from pathlib import Path

from prunebench.cli import configure_logging
from prunebench.export.run import export_checkpoint
from prunebench.train.recovery import release_finished

configure_logging()
# this job reads the final state, so Snakemake has recorded it: its sealed copy is no longer needed
release_finished(Path(snakemake.input.checkpoint).parent)
export_checkpoint(
    snakemake.input.checkpoint,
    snakemake.output.model,
    snakemake.output.cost,
    summary=snakemake.input.summary,
    experiment=snakemake.params.experiment,
)
