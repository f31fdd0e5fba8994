"""The launch model: CUDA's foreach fast path (equal shapes) against its per-tensor fallback, the
multi-tensor chunking, fused optimizers, and views that launch nothing."""

import torch

from prunebench.accel.launches import LIMITS_4KB, LIMITS_32KB, LaunchCounter, multi_tensor_launches


def test_multi_tensor_apply_launches_when_its_tensors_or_its_blocks_are_full():
    chunk = LIMITS_32KB.chunk
    assert multi_tensor_launches([10, 20, 30], 2, LIMITS_32KB) == 1
    assert multi_tensor_launches([10] * 448, 2, LIMITS_32KB) == 1
    assert multi_tensor_launches([10] * 449, 2, LIMITS_32KB) == 2
    assert multi_tensor_launches([10] * 449, 2, LIMITS_4KB) == 8  # 64 tensors per launch at depth 2
    assert multi_tensor_launches([10] * 97, 1, LIMITS_4KB, scalar_list=True) == 2  # 96 with a scalar list
    assert multi_tensor_launches([0, 0, 5], 1, LIMITS_32KB) == 1 and multi_tensor_launches([0], 1, LIMITS_32KB) == 0
    assert multi_tensor_launches([2240 * chunk], 1, LIMITS_32KB) == 1
    assert multi_tensor_launches([2240 * chunk + 1], 1, LIMITS_32KB) == 2
    # a tensor cut by a full launch opens the next one, which then holds 63 more tensors at most
    assert multi_tensor_launches([320 * chunk + 1] + [1] * 63, 2, LIMITS_4KB) == 2
    assert multi_tensor_launches([320 * chunk + 1] + [1] * 64, 2, LIMITS_4KB) == 3


def counted(fn) -> LaunchCounter:
    with LaunchCounter(LIMITS_32KB) as counter:
        fn()
    return counter


def test_foreach_takes_the_fast_path_only_for_equal_shapes():
    params = [torch.randn(6, 4), torch.randn(6), torch.randn(3, 2, 2)]
    full = [torch.ones_like(p) for p in params]
    broadcast = [torch.ones(6, 1), torch.ones(6), torch.ones(1, 2, 1)]
    fast = counted(lambda: torch._foreach_mul_(params, full))
    assert fast.total == 1 and fast.by_op() == {"aten._foreach_mul_.List [fast]": 1}
    slow = counted(lambda: torch._foreach_mul_(params, broadcast))
    assert slow.total == 3 and slow.by_op() == {"aten._foreach_mul_.List [slow]": 3}
    grads = [torch.randn_like(p) for p in params]
    assert counted(lambda: torch._foreach_addcmul_(grads, params, full, value=0.1)).total == 1
    assert counted(lambda: torch._foreach_addcmul_(grads, params, broadcast, value=0.1)).total == 3
    # equal shapes but other strides, or another dtype: per tensor
    transposed = [full[0].t().contiguous().t(), full[1], full[2]]
    assert counted(lambda: torch._foreach_mul_(params, transposed)).total == 3
    doubles = [f.double() for f in full]
    assert counted(lambda: torch._foreach_add_([d.clone() for d in doubles], full)).by_op() == {
        "aten._foreach_add_.List [slow]": 3,
        "aten.clone.default [kernel]": 3,
    }
    assert counted(lambda: torch._foreach_mul_(params, 0.5)).total == 1  # one list and a scalar


def test_fused_optimizers_are_one_multi_tensor_kernel_per_chunk():
    params = [torch.nn.Parameter(torch.randn(8, 4)), torch.nn.Parameter(torch.randn(8))]
    for p in params:
        p.grad = torch.randn_like(p)
    sgd = torch.optim.SGD(params, lr=0.1, momentum=0.9, fused=True)
    sgd.step()  # the first step makes the momentum buffers
    assert counted(sgd.step).by_op() == {"aten._fused_sgd_.default [fused]": 1}
    adamw = torch.optim.AdamW(params, lr=0.1, fused=True)
    adamw.step()
    assert counted(adamw.step).by_op() == {
        "aten._foreach_add_.Scalar [fast]": 1,
        "aten._fused_adamw_.default [fused]": 1,
    }
    foreach = torch.optim.SGD(params, lr=0.1, momentum=0.9, foreach=True)
    foreach.step()
    assert counted(foreach.step).total == 3  # momentum mul_, add_ of the grads, then the weight update


def test_views_and_metadata_launch_nothing_and_a_paused_region_is_not_counted():
    x = torch.randn(4, 6)
    counter = counted(lambda: (x.view(6, 4), x.detach(), x.t(), torch.empty(3)))
    assert counter.total == 0 and counter.records
    with LaunchCounter(LIMITS_32KB) as counter:
        y = x.sum(1)
        with counter.paused():
            (x * 2).exp()
        float(y[0])
    assert counter.by_op() == {"aten.sum.dim_IntList [kernel]": 1, "aten._local_scalar_dense.default [kernel]": 1}


def test_gradient_clipping_is_a_few_launches_whatever_the_number_of_parameters():
    params = [torch.nn.Parameter(torch.randn(5, 3)) for _ in range(30)]
    for p in params:
        p.grad = torch.randn_like(p)
    counter = counted(lambda: torch.nn.utils.clip_grad_norm_(params, 0.1))
    ops = counter.by_op()
    # the norms: one multi-tensor kernel, the zero fill of the partial sums and one clean-up reduction
    assert ops["aten._foreach_norm.Scalar [fast]"] == 3 and ops["aten._foreach_mul_.Tensor [fast]"] == 1
    assert counter.total == 10  # + stack, total norm, the clip factor (add, reciprocal, mul, clamp)
