"""The statistics behind a report's verdicts: paired tests on stored predictions, intervals over
seeds, and Holm's correction. Accuracies and differences are in percentage points.

A verdict is about methods, so its unit is the seed: one seed gives one trained model per method.

- Within a seed, two models are compared on the same test images: the exact McNemar test (an exact
  binomial test on the discordant images, ``scipy.stats.binomtest``) and the paired test-set
  variance of their difference, from the per-image correctness (``predictions.npz``).
- Over seeds, the mean of the per-seed paired differences has a 95 % t interval (n - 1 degrees of
  freedom) whose variance is the larger of the seeds' sample variance and the mean test-set
  variance of one seed's difference. The per-seed differences already carry both the training
  variance and the test-set sampling, so their sample variance estimates the two together; the
  floor keeps the interval from shrinking to nothing when two or three seeds happen to agree
  (A beating B by one image in each seed gives no sample variance at all), and makes it never
  narrower than the test-set interval alone.
- Every test-set variance adds half an image to each cell of the paired 2 x 2 table (Agresti and
  Min 2005), so it is never 0, not even for two models that agree on every image.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
ALPHA = 1.0 - CONFIDENCE
Z95 = float(stats.norm.ppf(0.5 + CONFIDENCE / 2))


def mcnemar_exact(a_correct: np.ndarray, b_correct: np.ndarray) -> dict:
    """The exact McNemar test of two models on the same images: ``a_only`` images only a gets right,
    ``b_only`` images only b gets right, and the two-sided p of an exact binomial test of a_only out
    of the discordant images at 1/2 (2 x the smaller tail, at most 1)."""
    a, b = np.asarray(a_correct, dtype=bool), np.asarray(b_correct, dtype=bool)
    a_only, b_only = int(np.sum(a & ~b)), int(np.sum(~a & b))
    n = a_only + b_only
    p = float(stats.binomtest(a_only, n, 0.5).pvalue) if n else 1.0
    return {"a_only": a_only, "b_only": b_only, "p": p}


def paired_variance(a_correct: np.ndarray, b_correct: np.ndarray) -> float:
    """Test-set variance (points²) of the accuracy difference of two models scored on the same images.

    ``a_correct`` / ``b_correct``: per-image correctness, 0/1, or a weighted mean of two states' 0/1
    where a value is interpolated between them. Half an image is added to each cell of the paired
    table (Agresti-Min): the per-image differences gain +1/2 at +1, 1/2 at -1 and 1 at 0."""
    d = np.asarray(a_correct, dtype=float) - np.asarray(b_correct, dtype=float)
    n = len(d) + 2.0
    mean = float(d.sum()) / n
    second = (float(np.square(d).sum()) + 1.0) / n
    return 1e4 * (second - mean * mean) / n


def binomial_variance(acc: float, n: float) -> float:
    """Test-set variance (points²) of one accuracy ``acc`` (%) on ``n`` images, half an image added to
    each outcome (never 0); NaN when ``n`` is unknown."""
    if n is None or not np.isfinite(n) or n <= 0 or acc is None or not np.isfinite(acc):
        return math.nan
    p = (acc / 100.0 * n + 0.5) / (n + 1.0)
    return 1e4 * p * (1 - p) / (n + 1.0)


def floored_t(values, test_variances) -> dict:
    """Mean of per-seed ``values`` with its 95 % t interval over seeds (n >= 2), the variance floored
    at the mean of the seeds' ``test_variances``, and the two-sided p of mean = 0; ``test_lo`` /
    ``test_hi``: the test-set interval alone (normal, the floor's variance), which it always contains."""
    v = np.asarray(values, dtype=float)
    tv = np.asarray(test_variances, dtype=float)
    n = len(v)
    mean = float(v.mean())
    sample = float(np.var(v, ddof=1))
    floor = float(np.mean(tv))
    var = max(sample, floor)
    se = math.sqrt(var / n)
    t = float(stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1))
    p = float(2 * stats.t.sf(abs(mean) / se, n - 1)) if se > 0 else (0.0 if mean else 1.0)
    test_half = Z95 * math.sqrt(floor / n)
    return {"mean": mean, "lo": mean - t * se, "hi": mean + t * se, "p": p, "n": n, "sample_var": sample,
            "floor_var": floor, "floored": floor > sample, "test_lo": mean - test_half, "test_hi": mean + test_half}  # fmt: skip


def normal_interval(value: float, variance: float) -> tuple[float, float]:
    """95 % normal interval of ``value`` with test-set ``variance`` (one model, one test set)."""
    if not np.isfinite(variance):
        return math.nan, math.nan
    half = Z95 * math.sqrt(variance)
    return value - half, value + half


def holm(pvalues) -> list[float]:
    """Holm's step-down adjusted p-values, in the given order: the i-th smallest p times (m - i + 1),
    made monotone, at most 1. A hypothesis is rejected at level alpha when its adjusted p < alpha."""
    p = [float(x) for x in pvalues]
    m = len(p)
    order = sorted(range(m), key=lambda i: p[i])
    out, running = [math.nan] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out
