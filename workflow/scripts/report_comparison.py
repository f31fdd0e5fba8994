"""Snakemake adapter: one dataset x model comparison report (logic in prunebench.report.build)."""

import sys
from pathlib import Path

sys.stderr = open(snakemake.log[0], "w")

from prunebench.config import load_plugins

load_plugins(snakemake.config)  # the methods the config's plugins register: their report sections and metrics

from prunebench.report.build import write_comparison_from_files

write_comparison_from_files(
    summary_paths=snakemake.input.summaries,
    experiments=snakemake.params.experiments,
    dataset=snakemake.wildcards.dataset,
    model=snakemake.wildcards.model,
    output=snakemake.output.report,
    html=snakemake.output.html,
    plot_dir=Path(snakemake.output.accuracy_vs_state).parent,
)
