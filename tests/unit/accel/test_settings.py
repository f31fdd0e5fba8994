"""prepare_model compiles at static shapes with the configured backend; use_compile_cache applies the
configured folder also after torch._dynamo wrote Inductor's default into the environment."""

import os

from prunebench.accel.compile_stats import compile_counts, compile_since
from prunebench.accel.settings import CACHE_ENV, prepare_model, use_compile_cache


def test_every_batch_shape_gets_a_static_graph_of_its_own():
    import torch._dynamo

    torch._dynamo.reset()
    net = prepare_model(torch.nn.Linear(4, 3), "cnn", torch.device("cpu"), compile=True, backend="aot_eager")
    before = compile_counts()
    for batch in (5, 7, 9, 7):
        net(torch.randn(batch, 4))
    # a symbolic batch (automatic dynamic shapes) would serve the third and fourth shapes with the second graph
    assert compile_since(before)["graphs"] == 3


def test_inductors_own_default_does_not_hide_the_configured_cache(tmp_path, monkeypatch):
    import torch._dynamo  # noqa: F401 (its import writes Inductor's default folder into the environment)
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    monkeypatch.setenv(CACHE_ENV, default_cache_dir())
    assert use_compile_cache(str(tmp_path / "shared")) == str(tmp_path / "shared") == os.environ[CACHE_ENV]
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "the users own"))
    assert use_compile_cache(str(tmp_path / "shared")) == str(tmp_path / "the users own")
