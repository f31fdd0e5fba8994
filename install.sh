#!/usr/bin/env bash
# Create .venv beside this file and install prunebench into it (safe to rerun).
set -euo pipefail
cd "$(dirname "$0")"
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
# PyTorch first, pinned to the build prunebench is tested with (a CUDA build; it also runs on CPU).
.venv/bin/python -m pip install --quiet torch==2.14.1 torchvision==0.29.1
.venv/bin/python -m pip install --quiet -e ".[dev,slurm,tensorboard]"
.venv/bin/python -c "import prunebench, torch, timm, snakemake; print('prunebench', prunebench.__version__, '| torch', torch.__version__, '| timm', timm.__version__)"
