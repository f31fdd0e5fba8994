#!/usr/bin/env bash
# Run by Snakemake once, inside the new environment, after creating it from prunebench.yaml:
# installs prunebench from the checkout the workflow runs from (the Snakefile exports its folder
# as PRUNEBENCH_SOURCE). Editable, like ./install.sh: the jobs run the checkout's code.
set -euo pipefail
if [ -z "${PRUNEBENCH_SOURCE:-}" ] || [ ! -f "$PRUNEBENCH_SOURCE/pyproject.toml" ]; then
  echo "PRUNEBENCH_SOURCE='${PRUNEBENCH_SOURCE:-}' is not a prunebench checkout: create this environment" \
    "through the workflow (snakemake --sdm conda --conda-create-envs-only), or by hand:" \
    "conda env create -f envs/prunebench.yaml -p ENV && conda run -p ENV pip install --no-deps -e ." >&2
  exit 1
fi
python -m pip install --no-deps --editable "$PRUNEBENCH_SOURCE"
python -c "import prunebench, torch, timm; print('prunebench', prunebench.__file__, '| torch', torch.__version__)"
