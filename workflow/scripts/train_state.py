"""Snakemake adapter: train one prune state (all logic lives in prunebench.train.state)."""

import sys

from prunebench.logs import log_every_attempt  # no torch: loads in an instant

# Snakemake deletes the log before a rerun: the lines of every attempt also go to logs/attempts/.
sys.stderr = log_every_attempt(snakemake.log[0])

from prunebench.cli import configure_logging
from prunebench.config import job_experiment
from prunebench.prepare import use_job_environment

# before torch and timm load: the data and weights come from what the prepare rule fetched
use_job_environment(snakemake.config.get("weights_dir"))

from prunebench.train.state import StatePaths, run_state


def main(name, config_hash, state, output, inputs, recovery, config, threads):
    configure_logging()
    # the rule passes only the name and the training hash it was planned with (its rerun trigger)
    experiment, resolved = job_experiment(config, name, config_hash)
    paths = StatePaths(output.last.rsplit("/", 1)[0], recovery, inputs.get("previous"), inputs.get("init"))
    # its line on Snakemake's console comes from the announce_state rule, which runs where Snakemake does
    run_state(experiment, state, paths, threads=threads, **{**resolved.runtime, "download": False})


main(
    name=snakemake.params.experiment,
    config_hash=snakemake.params.config_hash,
    state=int(snakemake.wildcards.get("state", 0)),
    output=snakemake.output,
    inputs=snakemake.input,
    recovery=snakemake.params.recovery,
    config=snakemake.config,
    threads=snakemake.threads,
)
