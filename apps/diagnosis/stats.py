"""The few statistics the learning loop needs (no Django): confidence intervals on rates, and the
distances the drift monitor compares distributions with. SciPy provides the distributions."""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence

from scipy import stats as _scipy_stats

#: Added to empty bins before a PSI so that a bin empty on one side gives a large, finite term.
PSI_EPSILON = 1e-4


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float] | None:
    """The Wilson score interval of a proportion (Wilson 1927), or None when ``n`` is 0.

    Unlike the normal approximation it stays inside [0, 1] and is honest for small ``n`` and rates
    near 0 or 1, which is what a hospital's first weeks of feedback look like.
    """
    if n <= 0:
        return None
    if not 0 <= successes <= n:
        raise ValueError(f"successes ({successes}) must be between 0 and n ({n})")
    z = float(_scipy_stats.norm.ppf(0.5 + confidence / 2))
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def proportions(counts: Mapping[str, float]) -> dict[str, float]:
    """Counts → shares (empty when the total is 0)."""
    total = float(sum(counts.values()))
    return {k: v / total for k, v in counts.items()} if total > 0 else {}


def total_variation(p: Mapping[str, float], q: Mapping[str, float]) -> float:
    """Total-variation distance between two distributions given as shares (or counts, which are
    normalised): half the sum of absolute differences, 0 (same) to 1 (disjoint)."""
    p, q = proportions(p), proportions(q)
    keys = set(p) | set(q)
    return 0.5 * sum(abs(p.get(k, 0.0) - q.get(k, 0.0)) for k in keys)


def chi_square_p(observed: Mapping[str, int], expected_shares: Mapping[str, float]) -> float | None:
    """p-value of Pearson's chi-square goodness-of-fit test of ``observed`` counts against the
    ``expected_shares`` (the categories of ``expected_shares``; observations outside them are
    ignored). None when there are fewer than two categories or no observations."""
    keys = [k for k, v in expected_shares.items() if v > 0]
    n = sum(observed.get(k, 0) for k in keys)
    if len(keys) < 2 or n == 0:
        return None
    shares = proportions({k: expected_shares[k] for k in keys})
    result = _scipy_stats.chisquare([observed.get(k, 0) for k in keys], [shares[k] * n for k in keys])
    return float(result.pvalue)


def population_stability_index(reference: Sequence[float], current: Sequence[float]) -> float:
    """PSI between two histograms over the same bins: sum of (c - r) * ln(c / r) over the bins'
    shares. Conventional reading: < 0.1 stable, 0.1-0.25 moderate shift, > 0.25 significant."""
    if len(reference) != len(current):
        raise ValueError("both histograms need the same bins")
    r_total, c_total = float(sum(reference)), float(sum(current))
    if r_total <= 0 or c_total <= 0:
        raise ValueError("both histograms need at least one observation")
    psi = 0.0
    for r, c in zip(reference, current, strict=True):
        rs = max(r / r_total, PSI_EPSILON)
        cs = max(c / c_total, PSI_EPSILON)
        psi += (cs - rs) * math.log(cs / rs)
    return psi


def histogram(values: Sequence[float], edges: Sequence[float]) -> list[int]:
    """Counts of ``values`` in the bins ``[edges[i], edges[i+1])``; the last bin is closed, and
    values outside the edges go to the first or last bin."""
    counts = [0] * (len(edges) - 1)
    for value in values:
        counts[min(max(bisect.bisect_right(edges, value) - 1, 0), len(counts) - 1)] += 1
    return counts


def histogram_quantile(counts: Sequence[int], edges: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile of data known only as a histogram, interpolated linearly inside its bin
    (a bin with an infinite upper edge answers its lower edge). None without data."""
    total = sum(counts)
    if total == 0:
        return None
    target = q * total
    seen = 0.0
    for index, count in enumerate(counts):
        if count and seen + count >= target:
            lo, hi = edges[index], edges[index + 1]
            if math.isinf(hi):
                return float(lo)
            return float(lo + (hi - lo) * (target - seen) / count)
        seen += count
    return float(edges[-2])
