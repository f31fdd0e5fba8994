"""Snakemake adapter: train one prune state (the job is prunebench.train.job, as for `prunebench train-state`)."""

import sys

from prunebench.logs import log_every_attempt  # no torch: loads in an instant

# Snakemake deletes the log before a rerun: the lines of every attempt also go to logs/attempts/.
sys.stderr = log_every_attempt(snakemake.log[0])

from prunebench.config import job_experiment, output_paths
from prunebench.logs import configure_logging
from prunebench.prepare import use_job_environment

# before torch and timm load: the data and weights come from what the prepare rule fetched
use_job_environment(snakemake.config.get("weights_dir"))

from prunebench.results.layout import StatePaths
from prunebench.train.job import run_job


def main(name, config_hash, state, output, inputs, recovery, config, threads):
    configure_logging()
    # the rule passes only the name and the training hash it was planned with (its rerun trigger)
    _, resolved = job_experiment(config, name, config_hash)
    # where Snakemake planned the state's files (rules/common.smk builds them from prunebench.results)
    paths = StatePaths(output.last.rsplit("/", 1)[0], recovery, inputs.get("previous"), inputs.get("init"))
    # its line on Snakemake's console comes from the announce_state rule, which runs where Snakemake does
    run_job(resolved, name, state, output_paths(config).results, threads=threads, paths=paths)


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
