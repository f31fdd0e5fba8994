"""Snakemake adapter: check a model, fetch its dataset and pretrained weights (prunebench.prepare)."""

import sys

sys.stderr = open(snakemake.log[0], "w", buffering=1)

from pathlib import Path

from prunebench.errors import PrunebenchError
from prunebench.logs import configure_logging
from prunebench.prepare import prepare


def main(config, dataset, model, marker):
    configure_logging()
    try:
        prepare(config, "config", only=(dataset, model), markers=Path(marker).parent)
    except PrunebenchError as exc:
        sys.exit(f"prunebench: {exc}")


main(snakemake.config, snakemake.wildcards.dataset, snakemake.wildcards.model, snakemake.output[0])
