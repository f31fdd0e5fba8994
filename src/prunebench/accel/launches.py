"""How many CUDA kernel launches a region of eager PyTorch code makes, counted from the aten ops it runs.

:class:`LaunchCounter` is a ``TorchDispatchMode``: inside it every aten op is recorded with the number
of kernels it would launch on a CUDA device (:func:`op_launches`), whatever device the region really
runs on, so the count is taken on the CPU too. It is a model, not a profiler trace; its rules:

- views, metadata and allocation ops (``detach``, ``view``, ``empty``, profiler markers) launch
  nothing; a read of a tensor's value to the host (``_local_scalar_dense``) counts one (a copy);
  any other op that writes a non-empty tensor counts one kernel (reductions such as ``sum`` or
  ``nll_loss_forward`` are one kernel on CUDA);
- a ``_foreach_*`` op takes CUDA's multi-tensor fast path only when :func:`foreach_fast_path` holds,
  and then launches :func:`multi_tensor_launches` kernels (one per chunk of tensors, usually one);
  otherwise it falls back to one kernel per non-empty tensor. ``_foreach_norm``'s fast path adds
  the zero fill of its partial norms and one clean-up reduction per 400 tensors
  (``ForeachReduceOp.cu``: ``lpnorm_cleanup``, ``MAX_TENSORS_PER_KERNEL``);
- a fused optimizer (``_fused_sgd_``, ``_fused_adam_``, ``_fused_adamw_``, ...) is one multi-tensor
  kernel per chunk of its parameters, of depth the number of its non-empty tensor lists other than
  ``state_steps``.

The fast-path conditions and the chunking are PyTorch's own, read in torch 2.14's headers:
``ATen/native/ForeachUtils.h`` (``check_fast_path_restrictions``: every tensor of every list on one
device, strided, non-overlapping and dense, of one dtype; the tensors at each index of all lists of
equal sizes and strides, strides of size-1 dims ignored; no scalar that would promote a tensor's dtype)
and ``ATen/native/cuda/MultiTensorApply.cuh`` (``multi_tensor_apply``: tensors are packed in order,
one block per chunk of ``kChunkSize`` = 65536 elements, and a kernel is launched whenever the blocks
reach ``depth_to_max_blocks`` or the tensors reach ``depth_to_max_tensors`` (with the last tensor's
chunks all packed); a tensor cut by a launch starts the next one). CUDA 13 builds (``CUDART_VERSION
>= 13000``) use the 32 KB kernel-argument tables (:data:`LIMITS_32KB`), older ones the 4 KB tables.
"""

from __future__ import annotations

import contextlib
import math
import numbers
from collections import Counter
from dataclasses import dataclass

import torch
from torch.utils._python_dispatch import TorchDispatchMode


@dataclass(frozen=True)
class Limits:
    """``multi_tensor_apply``'s limits per launch: tensors by depth (tensor lists), and blocks."""

    max_tensors: tuple[int, ...]
    max_tensors_scalarlist: tuple[int, ...]
    max_blocks: int
    chunk: int = 65536


LIMITS_32KB = Limits((770, 448, 336, 252, 210), (672, 448, 336, 252, 210), 2240)
LIMITS_4KB = Limits((110, 64, 48, 36, 30), (96, 64, 48, 36, 30), 320)


def default_limits() -> Limits:
    """The tables of the installed torch's CUDA build: the 32 KB ones from CUDA 13 on, and for a torch
    built without CUDA (counting on the CPU for today's CUDA 13 wheels)."""
    cuda = torch.version.cuda
    return LIMITS_32KB if cuda is None or int(cuda.split(".")[0]) >= 13 else LIMITS_4KB


def multi_tensor_launches(numels: list[int], depth: int, limits: Limits, scalar_list: bool = False) -> int:
    """Kernels ``multi_tensor_apply`` launches for tensors of ``numels`` elements (in order) and
    ``depth`` tensor lists; ``scalar_list``: the op carries one scalar per tensor (smaller tables)."""
    table = limits.max_tensors_scalarlist if scalar_list else limits.max_tensors
    max_tensors = table[depth - 1]
    launches = blocks = tensors = 0
    for n in numels:
        if n == 0:
            continue  # empty tensors are skipped
        tensors += 1
        chunks = math.ceil(n / limits.chunk)
        for c in range(chunks):
            blocks += 1
            if blocks == limits.max_blocks or (tensors == max_tensors and c == chunks - 1):
                launches += 1
                blocks = 0
                tensors = 0 if c == chunks - 1 else 1  # a tensor cut mid-way opens the next launch
    return launches + (blocks > 0)


# ops that give float results for integer inputs: the fast path refuses integer tensors for them
_FLOAT_RESULT = {"div", "sqrt", "rsqrt", "exp", "expm1", "log", "log10", "log1p", "log2", "reciprocal", "sigmoid"}


def _non_overlapping_and_dense(t: torch.Tensor) -> bool:
    """Whether ``t``'s elements fill a block of memory without gaps or overlaps, in some dim order
    (as ``TensorImpl::is_non_overlapping_and_dense``)."""
    expected = 1
    for stride, size in sorted((s, n) for n, s in zip(t.shape, t.stride()) if n != 1):
        if stride != expected:
            return False
        expected *= size
    return True


def _same_layout(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal sizes, and equal strides along every dim longer than 1."""
    return a.shape == b.shape and all(n == 1 or s == t for n, s, t in zip(a.shape, a.stride(), b.stride()))


def foreach_fast_path(
    lists: list[list[torch.Tensor]], scalars: list = (), other: torch.Tensor | None = None, name: str = ""
) -> bool:
    """Whether a ``_foreach_*`` op over tensor ``lists`` takes CUDA's multi-tensor fast path.

    ``scalars``: its Python number(s) (one, or one per tensor); ``other``: a tensor scalar (``_foreach_mul_
    .Tensor``), which must be on the lists' device; ``name``: the op's base name (``div``...), for the
    ops whose integer inputs give float results.
    """
    first = lists[0][0]
    for tensors in lists:
        for t in tensors:
            if t.device != first.device or t.layout != torch.strided or t.dtype != first.dtype:
                return False
            if not _non_overlapping_and_dense(t):
                return False
    for tensors in lists[1:]:
        if len(tensors) != len(lists[0]) or not all(_same_layout(a, b) for a, b in zip(lists[0], tensors)):
            return False
    if other is not None and other.device != first.device:
        return False
    if name in _FLOAT_RESULT and not first.is_floating_point():
        return False
    for i, t in enumerate(lists[0]):
        if scalars:
            s = scalars[0] if len(scalars) == 1 else scalars[i]
            if torch.result_type(t, s) != t.dtype:
                return False
    return True


def _arguments(func, args, kwargs) -> tuple[dict[str, list[torch.Tensor]], list, torch.Tensor | None]:
    """The op's tensor-list arguments by name (in schema order), its number arguments and its tensor scalar."""
    bound = dict(zip((a.name for a in func._schema.arguments), args)) | (kwargs or {})
    lists, scalars, other = {}, [], None
    for arg in func._schema.arguments:
        value = bound.get(arg.name)
        if isinstance(value, (list, tuple)) and value and all(isinstance(t, torch.Tensor) for t in value):
            lists[arg.name] = list(value)
        elif isinstance(value, (list, tuple)) and value and all(isinstance(s, numbers.Number) for s in value):
            scalars.extend(value)
        elif isinstance(value, numbers.Number) and not isinstance(value, bool):
            scalars.append(value)
        elif isinstance(value, torch.Tensor):
            other = value
    return lists, scalars, other


_NO_KERNEL = {"empty", "empty_strided", "empty_like", "new_empty", "new_empty_strided", "lift_fresh", "set_", "resize_"}


@dataclass(frozen=True)
class OpLaunches:
    """One op as counted: its name, how it ran (``kernel``, ``fast``, ``slow``, ``fused``, ``none``), launches."""

    op: str
    path: str
    launches: int


def op_launches(func, args, kwargs, out, limits: Limits) -> OpLaunches:
    """The kernel launches of one aten op call on a CUDA device (see the module's rules)."""
    name = func.name().split("::")[-1].split(".")[0]
    label = f"{func.namespace}.{func.__name__}"
    if func.namespace != "aten" or func.is_view or name in _NO_KERNEL:
        return OpLaunches(label, "none", 0)
    if name == "_local_scalar_dense":
        return OpLaunches(label, "kernel", 1)
    if name.startswith("_fused_"):
        lists, _, _ = _arguments(func, args, kwargs)
        lists.pop("state_steps", None)  # one number per tensor, read through a pointer: not a list of the depth
        tensors = next(iter(lists.values()))
        depth = sum(1 for t in lists.values() if t)
        return OpLaunches(label, "fused", multi_tensor_launches([t.numel() for t in tensors], depth, limits))
    if name.startswith("_foreach_"):
        base = name.removeprefix("_foreach_").rstrip("_")
        named, scalars, other = _arguments(func, args, kwargs)
        lists = list(named.values())
        if not lists:
            return OpLaunches(label, "none", 0)
        scalar_list = "ScalarList" in func._overloadname
        if other is not None and base in ("addcmul", "addcdiv"):  # a CPU tensor of one scalar per tensor
            scalars, other, scalar_list = other.tolist(), None, True
        numels = [t.numel() for t in lists[0]]
        if not foreach_fast_path(lists, scalars, other, base):
            return OpLaunches(label, "slow", sum(n > 0 for n in numels))
        depth = len(lists) + (not name.endswith("_") and base != "norm")  # an out-of-place op writes a new list
        launches = multi_tensor_launches(numels, depth, limits, scalar_list=scalar_list)
        if base == "norm":
            launches += 1 + math.ceil(sum(n > 0 for n in numels) / 400)
        return OpLaunches(label, "fast", launches)
    outs = out if isinstance(out, (list, tuple)) else [out]
    writes = any(isinstance(t, torch.Tensor) and t.numel() > 0 for t in outs)
    return OpLaunches(label, "kernel" if writes else "none", int(writes))


class LaunchCounter(TorchDispatchMode):
    """Records every aten op run inside it, with its CUDA kernel launches (:func:`op_launches`).

    ``with LaunchCounter() as counter: ...`` then ``counter.total`` and ``counter.by_op()``. Ops run
    inside :meth:`paused` (e.g. a compiled model's forward and backward, given to the epoch loop as
    its ``compiled_region``) are not counted.
    """

    def __init__(self, limits: Limits | None = None):
        super().__init__()
        self.limits = limits or default_limits()
        self.records: list[OpLaunches] = []
        self._paused = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if not self._paused:
            self.records.append(op_launches(func, args, kwargs, out, self.limits))
        return out

    @contextlib.contextmanager
    def paused(self):
        """A region whose ops are not counted."""
        self._paused += 1
        try:
            yield
        finally:
            self._paused -= 1

    @property
    def total(self) -> int:
        return sum(r.launches for r in self.records)

    def by_op(self) -> dict[str, int]:
        """Launches per op (name and path, e.g. ``aten._foreach_mul_.List [slow]``), largest first."""
        counts: Counter = Counter()
        for r in self.records:
            if r.launches:
                counts[f"{r.op} [{r.path}]"] += r.launches
        return dict(counts.most_common())
