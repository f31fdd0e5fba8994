"""Snakemake adapter: export an experiment's final state as a compact model (logic in prunebench.export)."""

import sys

sys.stderr = open(snakemake.log[0], "w")

from prunebench.cli import configure_logging
from prunebench.export.run import export_checkpoint

configure_logging()
export_checkpoint(
    snakemake.input.checkpoint, snakemake.output.model, snakemake.output.cost, summary=snakemake.input.summary
)
