"""Snakemake adapter: the per-state accuracy summary (logic in prunebench.report.summary)."""

import sys

sys.stderr = open(snakemake.log[0], "w")

from prunebench.config import load_plugins

load_plugins(snakemake.config)  # the methods the config's plugins register: their report sections and metrics

from prunebench.report.summary import write_summary_report

write_summary_report(
    summary_paths=snakemake.input.summaries, output=snakemake.output.report, html=snakemake.output.html
)
