"""REPrune's kernel clustering and greedy maximum coverage on hand-made layers."""

import numpy as np
import pytest
import torch

from prunebench.pruning.representatives import cluster_kernels, greedy_coverage, select_layer


def _layer(ch0, ch1):
    """A conv weight (4 filters, 2 input channels, 1x1 kernels) with the given kernel values."""
    return torch.tensor([ch0, ch1], dtype=torch.float32).T.reshape(4, 2, 1, 1)


# Channel 0 groups filters {0,1} and {2,3}; channel 1 groups {0,2} and {1,3}.
KNOWN = _layer([0.0, 0.1, 5.0, 5.1], [0.0, 5.0, 0.1, 5.1])
ALIVE = torch.ones(4, dtype=torch.bool)


@pytest.mark.parametrize("method", ["ward", "single", "complete", "average"])
def test_clusters_of_a_known_layer(method):
    labels = cluster_kernels(KNOWN, ALIVE, 2, method)
    assert labels[0, 0] == labels[0, 1] != labels[0, 2] == labels[0, 3]
    assert labels[1, 0] == labels[1, 2] != labels[1, 1] == labels[1, 3]


def test_coverage_picks_the_filters_that_cover_every_cluster():
    # Filter 3 has the largest L1 norm and is taken first; filter 0 then covers both clusters left,
    # although its norm is the smallest. Keeping the two largest norms would cover 3 of 4 clusters.
    res = select_layer(KNOWN, ALIVE, 2, "ward", regrow=0.0)
    assert res.keep.tolist() == [True, False, False, True]
    assert res.coverage == 1.0


def test_ties_are_broken_by_filter_norm_then_index():
    labels = np.zeros((1, 4), dtype=int)  # one cluster: every filter covers it equally
    chosen, coverage = greedy_coverage(labels, 1, torch.tensor([1.0, 3.0, 3.0, 2.0]))
    assert chosen == [1] and coverage == 1.0


def test_layer_cut_at_the_largest_per_channel_height():
    # Channel 0 needs a high cut to get down to 2 clusters; channel 1 is then cut at that height too,
    # so its close kernels 0.0/0.3 and 1.0/1.3 fall into one cluster instead of staying apart.
    weight = _layer([0.0, 4.0, 8.0, 20.0], [0.0, 0.3, 1.0, 1.3])
    labels = cluster_kernels(weight, ALIVE, 2, "single")
    assert len(set(labels[0])) == 2
    assert len(set(labels[1])) == 1


@pytest.mark.parametrize("seed", range(5))
def test_every_cluster_covered_when_the_budget_allows(seed):
    gen = torch.Generator().manual_seed(seed)
    weight = torch.randn(12, 1, 3, 3, generator=gen)  # one input channel: at most n_keep clusters
    res = select_layer(weight, torch.ones(12, dtype=torch.bool), 4, "ward", regrow=0.0)
    assert int(res.keep.sum()) == 4 and res.coverage == 1.0


def test_only_live_filters_are_clustered_and_kept():
    weight = torch.randn(8, 3, 3, 3, generator=torch.Generator().manual_seed(0))
    alive = torch.tensor([True, False, True, True, False, True, True, True])
    res = select_layer(weight, alive, 3, "average", regrow=0.0)
    assert int(res.keep.sum()) == 3
    assert not bool((res.keep & ~alive).any())


def test_regrowth_keeps_back_the_largest_dropped_filters():
    weight = torch.zeros(6, 1, 1, 1)
    weight[:, 0, 0, 0] = torch.tensor([1.0, 1.1, 1.2, 9.0, 9.1, 9.2])
    res = select_layer(weight, torch.ones(6, dtype=torch.bool), 2, "ward", regrow=0.25)
    assert res.regrown == 1  # a quarter of the 4 dropped filters
    assert int(res.keep.sum()) == 3
