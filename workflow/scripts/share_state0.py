"""Snakemake adapter: an experiment's own copy of its shared state 0 (logic in prunebench.train.share)."""

import sys

sys.stderr = open(snakemake.log[0], "a", buffering=1)

import logging
from pathlib import Path

from prunebench.cli import configure_logging
from prunebench.train.share import adopt_state0


def main(experiment, source, output):
    configure_logging()
    summary = adopt_state0(source, Path(output.summary).parent, experiment)
    logging.getLogger("prunebench").info(
        "state 0 of %s is the dense state 0 trained once in %s (final test %.2f)",
        experiment["name"], source, summary["final_test_acc"],
    )  # fmt: skip


main(experiment=snakemake.params.experiment, source=str(Path(snakemake.input.summary).parent), output=snakemake.output)
