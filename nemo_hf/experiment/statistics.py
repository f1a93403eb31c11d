"""Paired differences between two arms scored on the same sentences, with sentence-bootstrap intervals.

Two arms of one seed see the same world, data order and initial weights, and are scored on
the same evaluation sentences, so the difference is paired: resampling the *sentences* (with
replacement, the same draw for both arms) gives the interval of the difference that the
choice of evaluation sentences allows. Seeds are compared as separate experiments (their
worlds differ), never pooled into one resample.

A statistic is a mean of per-sentence values (object accuracy: 1 when the prediction chose
the target) or a ratio of sums (oIoU: Σ intersections / Σ unions).

    >>> a = np.array([1, 1, 1, 0] * 50, dtype=float)   # 75% correct
    >>> b = np.array([1, 0, 1, 0] * 50, dtype=float)   # 50% correct, on the same sentences
    >>> difference = paired_difference(a, b, resamples=500, seed=0)
    >>> round(difference.value, 3), difference.low > 0.1, difference.high < 0.4
    (0.25, True, True)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = ["Difference", "mean_paired_difference", "paired_difference", "paired_ratio_difference"]


@dataclass(frozen=True)
class Difference:
    """``value`` = statistic(a) − statistic(b) on all sentences; ``low``/``high`` its bootstrap interval."""

    value: float
    low: float
    high: float
    confidence: float
    resamples: int
    sentences: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return asdict(self)

    def points(self) -> str:
        """``+2.31 [+0.80, +3.90]`` in percentage points (for shares in [0, 1])."""
        return f"{100 * self.value:+.2f} [{100 * self.low:+.2f}, {100 * self.high:+.2f}]"


def _resampled_indices(n: int, resamples: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def _interval(draws: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = (1 - confidence) / 2
    low, high = np.quantile(draws, [tail, 1 - tail])
    return float(low), float(high)


def paired_difference(
    a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, *, resamples: int = 2000, seed: int = 0,
    confidence: float = 0.95,
) -> Difference:
    """mean(a) − mean(b) over the same sentences, with a percentile sentence-bootstrap interval."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 1 or not a.size:
        raise ValueError(f"paired values need two equal, non-empty 1-D arrays, got shapes {a.shape} and {b.shape}")
    diff = a - b
    draws = diff[_resampled_indices(diff.size, resamples, seed)].mean(axis=1)
    return Difference(float(diff.mean()), *_interval(draws, confidence), confidence, resamples, int(diff.size))


def paired_ratio_difference(
    numerators: tuple[np.ndarray, np.ndarray], denominators: tuple[np.ndarray, np.ndarray], *, resamples: int = 2000,
    seed: int = 0, confidence: float = 0.95,
) -> Difference:
    """Σnum_a/Σden_a − Σnum_b/Σden_b (oIoU: intersections over unions) with a paired sentence bootstrap.

    >>> inter = (np.array([5, 5, 0, 5]), np.array([5, 0, 0, 5]))
    >>> union = (np.array([10, 10, 10, 10]), np.array([10, 10, 10, 10]))
    >>> paired_ratio_difference(inter, union, resamples=200).value
    0.125
    """
    num_a, num_b = (np.asarray(x, dtype=float) for x in numerators)
    den_a, den_b = (np.asarray(x, dtype=float) for x in denominators)
    if not num_a.shape == num_b.shape == den_a.shape == den_b.shape or num_a.ndim != 1 or not num_a.size:
        raise ValueError("paired ratios need four equal, non-empty 1-D arrays")
    index = _resampled_indices(num_a.size, resamples, seed)
    draws = num_a[index].sum(1) / den_a[index].sum(1) - num_b[index].sum(1) / den_b[index].sum(1)
    value = num_a.sum() / den_a.sum() - num_b.sum() / den_b.sum()
    return Difference(float(value), *_interval(draws, confidence), confidence, resamples, int(num_a.size))


def mean_paired_difference(
    pairs: Sequence[tuple[np.ndarray, np.ndarray]], *, resamples: int = 2000, seed: int = 0, confidence: float = 0.95,
) -> Difference:
    """The mean over seeds of each seed's mean(a) − mean(b), with an interval that resamples each seed's sentences.

    Seeds are separate experiments (their worlds differ), so each keeps its own sentences:
    every bootstrap draw resamples each seed's sentences on their own and averages the
    seeds' differences.

    >>> pairs = [(np.array([1.0, 1, 0, 1]), np.array([1.0, 0, 0, 1])), (np.array([1.0, 0]), np.array([0.0, 0]))]
    >>> mean_paired_difference(pairs, resamples=100).value
    0.375
    """
    if not pairs:
        raise ValueError("no seeds to average")
    diffs = [np.asarray(a, dtype=float) - np.asarray(b, dtype=float) for a, b in pairs]
    rng = np.random.default_rng(seed)
    draws = np.mean([d[rng.integers(0, d.size, size=(resamples, d.size))].mean(axis=1) for d in diffs], axis=0)
    return Difference(float(np.mean([d.mean() for d in diffs])), *_interval(draws, confidence), confidence, resamples,
                      int(sum(d.size for d in diffs)))
