"""Snakemake adapter: the index of the comparison reports (logic in prunebench.report.build)."""

import sys

sys.stderr = open(snakemake.log[0], "w")

from prunebench.config import load_plugins

load_plugins(snakemake.config)  # the methods the config's plugins register: their report sections and metrics

from prunebench.report.build import write_index_from_files

write_index_from_files(
    summary_paths=snakemake.input.summaries,
    experiments=snakemake.params.experiments,
    reports=snakemake.params.reports,
    output=snakemake.output.index,
    html=snakemake.output.html,
)
