#!/usr/bin/env bash
# Create .venv beside this file and install prunebench into it (safe to rerun).
#   ./install.sh                 torch built for this machine's NVIDIA driver (CUDA 13 from PyPI for a
#                                driver >= 580 or no GPU; PyTorch's CUDA 12.6 build for a driver >= 525)
#   ./install.sh --torch cu126   force a build: cu130, cu126 or cpu (or PRUNEBENCH_TORCH=cu126)
#   ./install.sh --dali          also NVIDIA DALI, built for the same CUDA as torch
set -euo pipefail
cd "$(dirname "$0")"
python=${PYTHON:-python3}
build=${PRUNEBENCH_TORCH:-auto}
dali=0
while [ $# -gt 0 ]; do
  case "$1" in
    --torch) build=${2:?--torch needs a build: auto, cu130, cu126 or cpu}; shift 2 ;;
    --torch=*) build=${1#--torch=}; shift ;;
    --dali) dali=1; shift ;;
    *) echo "install.sh: unknown option $1 (use --torch BUILD, --dali)" >&2; exit 2 ;;
  esac
done
# Decided before anything is installed (the script needs the standard library only): PyTorch pinned
# to the version prunebench is tested with, in the build the driver runs.
choose() { "$python" src/prunebench/torch_build.py --torch "$build" "$@"; }
choice=$(choose) || exit 2
read -r -a torch_args <<<"$choice"
name=$(choose --print name 2>/dev/null)
extras="dev,slurm,tensorboard"
if [ "$dali" = 1 ]; then
  dali_extra=$(choose --print dali-extra 2>/dev/null) ||
    { echo "install.sh: --dali needs a CUDA build of torch, not --torch $build" >&2; exit 2; }
  extras="$extras,$dali_extra"
fi
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
# `torch==2.14.1` is satisfied by any local build of 2.14.1: replace one of another build explicitly
force=()
if [ -f .venv/torch-build ] && [ "$(cat .venv/torch-build)" != "$name" ]; then force=(--force-reinstall --no-deps); fi
.venv/bin/python -m pip install --quiet "${force[@]}" "${torch_args[@]}"
echo "$name" >.venv/torch-build
.venv/bin/python -m pip install --quiet -e ".[$extras]"
.venv/bin/python -c "import prunebench, torch, timm, snakemake; print(f'prunebench {prunebench.__version__} | torch {torch.__version__} (CUDA {torch.version.cuda}) | timm {timm.__version__}')"
