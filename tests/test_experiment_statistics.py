"""Paired sentence-bootstrap differences: exact values, intervals that bracket them, and the pairing itself."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nemo_hf.experiment.statistics import paired_difference, paired_ratio_difference


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.booleans()), min_size=5, max_size=200))
def test_the_value_is_the_difference_of_means_and_the_interval_brackets_it(pairs) -> None:
    a, b = (np.array(column, dtype=float) for column in zip(*pairs))
    difference = paired_difference(a, b, resamples=300, seed=1)
    assert difference.value == pytest.approx(a.mean() - b.mean())
    assert difference.low <= difference.value + 1e-12 and difference.value - 1e-12 <= difference.high
    assert -1.0 <= difference.low <= difference.high <= 1.0


def test_identical_arms_differ_by_exactly_nothing() -> None:
    a = np.random.default_rng(0).integers(0, 2, 300).astype(float)
    difference = paired_difference(a, a.copy())
    assert (difference.value, difference.low, difference.high) == (0.0, 0.0, 0.0)


def test_pairing_narrows_the_interval_of_correlated_arms() -> None:
    """Arms that agree on most sentences: the paired interval is far narrower than unpaired resampling gives."""
    rng = np.random.default_rng(3)
    a = rng.integers(0, 2, 1000).astype(float)
    b = a.copy()
    b[rng.choice(1000, 30, replace=False)] = 0.0  # b loses a few sentences a gets right
    paired = paired_difference(a, b, resamples=2000, seed=0)
    unpaired = [a[rng.integers(0, 1000, 1000)].mean() - b[rng.integers(0, 1000, 1000)].mean() for _ in range(2000)]
    assert paired.high - paired.low < 0.3 * (np.quantile(unpaired, 0.975) - np.quantile(unpaired, 0.025))
    assert paired.low > 0  # a is better on those sentences, and only there


def test_ratio_difference_is_the_difference_of_overall_ious() -> None:
    rng = np.random.default_rng(5)
    unions = rng.integers(50, 100, 400)
    inter_a, inter_b = rng.integers(0, 50, 400), rng.integers(0, 50, 400)
    difference = paired_ratio_difference((inter_a, inter_b), (unions, unions), resamples=500)
    assert difference.value == pytest.approx(inter_a.sum() / unions.sum() - inter_b.sum() / unions.sum())
    assert difference.low <= difference.value <= difference.high


def test_unpaired_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="equal, non-empty"):
        paired_difference(np.ones(3), np.ones(4))
