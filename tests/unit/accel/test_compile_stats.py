"""compile_counts / compile_since count what torch.compile did: seconds, graphs, graph breaks."""

from prunebench.accel.compile_stats import compile_counts, compile_since, compile_text


def test_a_graph_break_and_the_graphs_around_it_are_counted():
    import torch._dynamo

    def split(x):
        y = x.sin()
        torch._dynamo.graph_break()
        return y.cos()

    torch._dynamo.reset()
    before = compile_counts()
    torch.compile(split, backend="aot_eager")(torch.randn(3))
    stats = compile_since(before)
    assert (stats["graphs"], stats["graph_breaks"]) == (2, 1) and stats["seconds"] > 0
    assert stats["cache"] == {
        "fx_graph_hits": 0,
        "fx_graph_misses": 0,
        "aot_autograd_hits": 0,
        "aot_autograd_misses": 0,
    }
    again = compile_counts()
    torch.compile(split, backend="aot_eager")(torch.randn(3))  # compiled already: nothing new
    assert compile_since(again)["graphs"] == 0
    assert compile_text({**stats, "seconds": 4.21}) == "4.2 s, 2 graphs, 1 graph breaks (cache: 0 hits, 0 misses)"
