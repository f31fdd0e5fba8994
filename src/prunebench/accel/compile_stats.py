"""What torch.compile did in this process: compile seconds, graphs, graph breaks and cache hits.

A state reads these around its run (:func:`compile_counts` when it starts, :func:`compile_since` when
it ends) from TorchDynamo's own bookkeeping, the numbers ``TORCH_LOGS`` would print, without parsing
any log:

- ``seconds``: Dynamo's timers of every whole compile in the process: each frame's compile (tracing,
  AOTAutograd, the backend's code generation, or its load from the cache;
  ``_compile.compile_inner``) plus each backward graph's lazy compile at the first backward pass
  (``backward._backward_impl``). Timed around the compiler itself, so neither the first steps'
  run time nor a busy host's noise around them counts, as it would in "the first step's seconds
  minus a steady step's". A cold compile generates code; a warm one (the persistent caches of
  :func:`prunebench.accel.settings.use_compile_cache` hit) mostly traces and loads.
- ``graphs``: graphs compiled (a recompile is one more graph of the same code); ``graph_breaks``:
  the times Dynamo split a frame into several graphs; ``frames``: frames compiled.
- ``cache``: hits and misses of Inductor's FX graph cache and of the AOTAutograd cache (none with
  a backend other than Inductor, which keeps nothing on disk).

The counters are the process's: a state reads what changed since its own start.
"""

from __future__ import annotations

COMPILE_TIMERS = ("_compile.compile_inner", "backward._backward_impl")
CACHE_COUNTERS = {
    "fx_graph_hits": ("inductor", "fxgraph_cache_hit"),
    "fx_graph_misses": ("inductor", "fxgraph_cache_miss"),
    "aot_autograd_hits": ("aot_autograd", "autograd_cache_hit"),
    "aot_autograd_misses": ("aot_autograd", "autograd_cache_miss"),
}


def compile_counts() -> dict:
    """The process's torch.compile totals so far (see the module's docstring)."""
    from torch._dynamo import utils

    counters, timers = utils.counters, utils.compilation_time_metrics
    return {
        "seconds": sum(sum(timers.get(name, ())) for name in COMPILE_TIMERS),
        "graphs": counters["stats"]["unique_graphs"],
        "graph_breaks": sum(counters["graph_break"].values()),
        "frames": counters["frames"]["ok"],
        "cache": {key: counters[group][name] for key, (group, name) in CACHE_COUNTERS.items()},
    }


def compile_since(before: dict) -> dict:
    """What torch.compile did since ``before`` (a :func:`compile_counts`), in its shape."""
    now = compile_counts()
    out = {key: now[key] - before[key] for key in ("seconds", "graphs", "graph_breaks", "frames")}
    out["cache"] = {key: now["cache"][key] - before["cache"][key] for key in CACHE_COUNTERS}
    return out


def compile_text(stats: dict) -> str:
    """``"4.2 s, 2 graphs, 0 graph breaks (cache: 2 hits, 0 misses)"``: a state log's compile line."""
    cache = stats["cache"]
    hits = cache["fx_graph_hits"] + cache["aot_autograd_hits"]
    misses = cache["fx_graph_misses"] + cache["aot_autograd_misses"]
    return (
        f"{stats['seconds']:.1f} s, {stats['graphs']} graphs, {stats['graph_breaks']} graph breaks "
        f"(cache: {hits} hits, {misses} misses)"
    )
