"""The dense chain (state 0, nothing pruned): its compact model is its dense model, and the timing
must say so: a speedup of 1.00 within its spread, not a "speedup" that is noise or a difference in
how the two sides were run."""

import pytest
import torch

from prunebench.export.compact import compact_model
from prunebench.export.measure import measures
from prunebench.models import build_model, model_spec
from tests.conftest import TINY_VIT


@pytest.fixture
def one_thread():
    """One CPU thread: on a shared, oversubscribed CPU a multi-threaded forward waits on its threads'
    barriers for up to 100x its run time, noise that would cover 1.0 whatever the timing did."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_a_dense_model_timed_against_its_compact_copy_is_within_noise(one_thread):
    torch.manual_seed(0)
    spec = model_spec(TINY_VIT, 10)
    dense = build_model(spec).eval()
    compact, cspec = compact_model(dense, spec, {})  # state 0: no masks
    # the same module types and the same memory layout: nothing but the widths could differ
    assert [type(m) for m in dense.modules()] == [type(m) for m in compact.modules()]
    assert [p.stride() for p in dense.parameters()] == [p.stride() for p in compact.parameters()]
    timing = {"batch_sizes": [1, 8], "warmup": 1, "repeats": 12, "amp": True, "round_seconds": 0.01}
    tp = measures(dense, compact, spec, cspec, timing)["throughput"]
    for b in ("1", "8"):
        s = tp["speedup"][b]
        # identical models: each round is as likely to favour either, so all 12 agreeing (the range
        # missing 1.0) happens by chance with probability 2 / 2**12
        assert s["rounds"] == 12 and s["min"] <= 1.0 <= s["max"] and s["within_noise"], s
        assert s["min"] <= s["median"] <= s["max"]
