"""Exact chunked top-k and the FAISS path, against brute force."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nemo_hf.mining.search import auto_chunk_size, chunked_topk, faiss_available, faiss_topk, ranked_topk

torch.set_num_threads(1)


def unit_rows(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.normal(size=(n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def brute_ranked(scores: np.ndarray, k: int, largest: bool = True) -> np.ndarray:
    """The ranking by definition: score (desc or asc), ties by column (asc or desc)."""
    cols = np.arange(scores.shape[1])
    out = []
    for row in scores.astype(np.float64):
        key = sorted(cols, key=lambda c: (-row[c], c) if largest else (row[c], -c))
        out.append(key[:k])
    return np.asarray(out)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(1, 30),
    n_keys=st.integers(1, 40),
    k=st.integers(1, 40),
    chunk=st.integers(1, 12),
    largest=st.booleans(),
)
def test_chunked_topk_is_the_brute_force_ranking(seed, n, n_keys, k, chunk, largest) -> None:
    rng = np.random.default_rng(seed)
    k = min(k, n_keys)
    queries, keys = unit_rows(rng, n, 6), unit_rows(rng, n_keys, 6)
    scores, cols = chunked_topk(queries, keys, k, largest=largest, chunk_size=chunk)
    expected = brute_ranked(queries @ keys.T, k, largest)
    np.testing.assert_array_equal(cols, expected)
    np.testing.assert_allclose(scores, np.take_along_axis(queries @ keys.T, expected, 1), atol=1e-6)


def test_ties_are_broken_by_column_index_even_across_the_cut() -> None:
    # Keys 1..6 are identical: every score ties, wherever the top-k boundary falls.
    keys = np.tile(np.array([[1.0, 0.0]], dtype=np.float32), (7, 1))
    keys[0] = [0.0, 1.0]
    query = np.array([[1.0, 0.0]], dtype=np.float32)
    for k in range(1, 7):
        _, cols = chunked_topk(query, keys, k)
        assert cols[0].tolist() == list(range(1, k + 1))
        _, low = chunked_topk(query, keys, k, largest=False)
        assert low[0].tolist() == [0, 6, 5, 4, 3, 2][:k]
        if faiss_available():
            assert faiss_topk(query, keys, k)[1][0].tolist() == list(range(1, k + 1))


def test_ranked_topk_fixes_order_and_redoes_tied_cuts() -> None:
    scores = torch.tensor([[0.2, 0.9, 0.9, 0.9, 0.1]])
    values, cols = torch.topk(scores, 3)  # which two of the tied 0.9s come first is unspecified
    v, c = ranked_topk(values, cols, 2, lambda rows: scores[rows])
    assert c.tolist() == [[1, 2]]
    assert v[0].tolist() == pytest.approx([0.9, 0.9])


def test_chunked_topk_rejects_k_beyond_the_keys() -> None:
    with pytest.raises(ValueError, match="k=5"):
        chunked_topk(np.eye(3, dtype=np.float32), np.eye(3, dtype=np.float32), 5)


def test_auto_chunk_size_bounds_the_score_block() -> None:
    assert auto_chunk_size(16_994) * 16_994 * 4 <= 192 * 2**20
    assert auto_chunk_size(10**9) == 16
    assert auto_chunk_size(1) == 8192


@pytest.mark.skipif(not faiss_available(), reason="faiss not installed")
@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 40), n_keys=st.integers(2, 60), k=st.integers(1, 20))
def test_faiss_topk_equals_exact(seed, n, n_keys, k) -> None:
    rng = np.random.default_rng(seed)
    k = min(k, n_keys)
    queries, keys = unit_rows(rng, n, 16), unit_rows(rng, n_keys, 16)
    exact_scores, exact_cols = chunked_topk(queries, keys, k)
    faiss_scores, faiss_cols = faiss_topk(queries, keys, k, chunk_size=7)
    np.testing.assert_allclose(faiss_scores, exact_scores, atol=1e-5)
    # Same lists up to scores that tie to within float error.
    differs = faiss_cols != exact_cols
    assert np.all(np.abs(faiss_scores - exact_scores)[differs] < 1e-5)
    assert differs.mean() < 0.05
