"""Accelerator settings both training and timing use: the device's kernels, bf16 autocast, the memory
format, torch.compile and its caches.

Training (prunebench.train) and the throughput timing (prunebench.export) follow the same rules here,
so that a timing runs the model as it trains.
"""

from __future__ import annotations

import contextlib
import os

import torch
from torch import nn


def autocast(device: torch.device, enabled: bool):
    """bf16 autocast on CUDA; a no-op elsewhere (CPU bf16 matmuls are slower than fp32 on most CPUs)."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def uses_channels_last(family: str, device: torch.device) -> bool:
    """NHWC for CNNs on CUDA, where cuDNN's tensor-core convolutions want it; ViTs have a single conv."""
    return family == "cnn" and device.type == "cuda"


def configure_device(device: torch.device) -> None:
    """Let cuDNN pick the fastest convolution kernels, and use TF32 for matmuls left in fp32 by autocast."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.set_float32_matmul_precision("high")


# Inputs up to this many pixels a side make a step too short to hide the host's kernel launches even
# when compiled (CIFAR ResNets, ViTs at 32 px): `compile_mode: auto` then replays CUDA graphs.
GRAPH_MAX_PX = 64
CACHE_ENV = "TORCHINDUCTOR_CACHE_DIR"


def compiles(setting: bool | str, device: torch.device) -> bool:
    """Whether a state compiles: ``train.compile`` true/false as given, ``auto`` on CUDA only."""
    if setting == "auto":
        return device.type == "cuda"
    return bool(setting)


def compile_mode_for(setting: str, img_size: int, device: torch.device) -> str:
    """torch.compile's mode: ``train.compile_mode`` as given, or for ``auto`` CUDA graphs
    (``reduce-overhead``) for inputs of at most :data:`GRAPH_MAX_PX` pixels on CUDA, ``default`` otherwise."""
    if setting != "auto":
        return setting
    return "reduce-overhead" if device.type == "cuda" and img_size <= GRAPH_MAX_PX else "default"


def use_compile_cache(cache_dir: str | None) -> str:
    """Point torch.compile's persistent caches (Inductor's FX graph cache, the AOTAutograd cache, Triton's
    kernels) at ``cache_dir`` (``~`` expanded), unless the environment already names one; returns the
    folder in use. Both caches are on by default in torch 2.x; the switches make that explicit.

    One folder serves every job of a machine (or of a shared file system) at once: the caches are
    keyed by a hash of the graph, its input shapes, the configuration and the versions, and every
    entry is written to a temporary file of the writing process and thread, then renamed into place
    (``torch._inductor.codecache.write_atomic``), so concurrent writers of one entry leave one whole
    file and readers never see a partial one; C++ builds take a file lock per output. PyTorch's
    "Compile Time Caching Configuration" recipe
    (https://docs.pytorch.org/tutorials/recipes/torch_compile_caching_configuration_tutorial.html)
    describes ``TORCHINDUCTOR_CACHE_DIR`` as the folder these cross-process caches share. The folder
    must be set before the process's first compile.

    Importing ``torch._dynamo`` writes Inductor's default folder (``/tmp/torchinductor_<user>``) into
    the environment: that value counts as unset, so that ``cache_dir`` still applies after it."""
    named = _cache_dir_of_environment()
    if named:
        return named
    if cache_dir:
        folder = os.path.abspath(os.path.expanduser(cache_dir))
        os.makedirs(folder, exist_ok=True)
        os.environ[CACHE_ENV] = folder
    os.environ.setdefault("TORCHINDUCTOR_FX_GRAPH_CACHE", "1")
    os.environ.setdefault("TORCHINDUCTOR_AUTOGRAD_CACHE", "1")
    return os.environ.get(CACHE_ENV, "")


def _cache_dir_of_environment() -> str | None:
    """The cache folder the environment names, unless it is the default Inductor put there itself."""
    folder = os.environ.get(CACHE_ENV)
    if not folder:
        return None
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    return None if os.path.abspath(folder) == os.path.abspath(default_cache_dir()) else folder


def prepare_model(
    model: nn.Module,
    family: str,
    device: torch.device,
    compile: bool = False,
    mode: str = "default",
    backend: str = "inductor",
) -> nn.Module:
    """Move ``model`` to ``device`` in its fastest memory format; returns the module to call for training.

    With ``compile`` the returned module is ``torch.compile(model, dynamic=False, ...)``: it shares
    ``model``'s parameters, so masks, optimizer and checkpoints keep using ``model`` and its plain
    state_dict keys. Static shapes: each batch shape it is called with (the training batch, the padded
    evaluation batch) gets a graph of its own, specialised to it, instead of a second shape turning
    the batch dimension symbolic for every later graph. ``backend`` is torch.compile's (``inductor``;
    ``aot_eager`` traces forward and backward through AOTAutograd without generating code, for tests
    on a CPU); ``mode`` applies to Inductor only.
    """
    model.to(device)
    if uses_channels_last(family, device):
        model.to(memory_format=torch.channels_last)
    if not compile:
        return model
    if backend == "inductor" and mode != "default":
        return torch.compile(model, mode=mode, dynamic=False)
    return torch.compile(model, backend=backend, dynamic=False)


def allow_recompiles(limit: int = 64) -> None:
    """Let dynamo keep ``limit`` graphs per code object. Every timm ViT runs the same ``forward``, so
    dense and compact models at 3 batch sizes (and a training graph) share dynamo's default 8 entries;
    past them it silently runs eager, and "compiled" figures would be eager ones."""
    import torch._dynamo

    for key in ("recompile_limit", "cache_size_limit", "accumulated_recompile_limit", "accumulated_cache_size_limit"):
        if hasattr(torch._dynamo.config, key):
            setattr(torch._dynamo.config, key, max(getattr(torch._dynamo.config, key), limit))
