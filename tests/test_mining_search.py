"""The chunked search that selection runs (torch and FAISS backends), against brute force."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nemo_hf.mining.search import ChunkedSearch, auto_chunk_size, faiss_available, ranked_topk, resolve_backend

torch.set_num_threads(1)


def unit_rows(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.normal(size=(n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def search(queries: np.ndarray, keys: np.ndarray, k: int, **kwargs) -> tuple[np.ndarray, np.ndarray]:
    """``(scores, cols)`` of every query: the blocks of a :class:`ChunkedSearch`, stacked."""
    blocks = list(ChunkedSearch(queries, keys, k, **kwargs))
    assert [b.start for b in blocks] == [0] + [b.stop for b in blocks[:-1]] and blocks[-1].stop == len(queries)
    return np.concatenate([b.scores.numpy() for b in blocks]), np.concatenate([b.cols.numpy() for b in blocks])


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
)
def test_chunked_search_is_the_brute_force_ranking(seed, n, n_keys, k, chunk) -> None:
    rng = np.random.default_rng(seed)
    k = min(k, n_keys)
    queries, keys = unit_rows(rng, n, 6), unit_rows(rng, n_keys, 6)
    scores, cols = search(queries, keys, k, chunk_size=chunk)
    expected = brute_ranked(queries @ keys.T, k)
    np.testing.assert_array_equal(cols, expected)
    np.testing.assert_allclose(scores, np.take_along_axis(queries @ keys.T, expected, 1), atol=1e-6)


def test_a_block_gives_its_full_score_rows_and_k_can_grow_between_blocks() -> None:
    rng = np.random.default_rng(3)
    queries, keys = unit_rows(rng, 5, 6), unit_rows(rng, 9, 6)
    chunks = ChunkedSearch(queries, keys, 2, chunk_size=2)
    widths = []
    for block in chunks:
        full = block.row_scores(torch.arange(block.stop - block.start))
        np.testing.assert_allclose(full.numpy(), queries[block.start : block.stop] @ keys.T, atol=1e-6)
        widths.append(block.cols.shape[1])
        chunks.k += 3
    assert widths == [2, 5, 8]


def test_ties_are_broken_by_column_index_even_across_the_cut() -> None:
    # Keys 1..6 are identical: every score ties, wherever the top-k boundary falls.
    keys = np.tile(np.array([[1.0, 0.0]], dtype=np.float32), (7, 1))
    keys[0] = [0.0, 1.0]
    query = np.array([[1.0, 0.0]], dtype=np.float32)
    backends = ["exact", "faiss"] if faiss_available() else ["exact"]
    for k in range(1, 7):
        for backend in backends:
            assert search(query, keys, k, backend=backend)[1][0].tolist() == list(range(1, k + 1))
        # the least similar end, as the fallback walks it: score ascending, ties by the larger column
        scores = torch.from_numpy(query @ keys.T)
        values, cols = torch.topk(scores, min(k + 1, 7), largest=False)
        low = ranked_topk(values, cols, k, lambda rows: scores[rows], largest=False)[1]
        assert low[0].tolist() == [0, 6, 5, 4, 3, 2][:k]


def test_ranked_topk_fixes_order_and_redoes_tied_cuts() -> None:
    scores = torch.tensor([[0.2, 0.9, 0.9, 0.9, 0.1]])
    values, cols = torch.topk(scores, 3)  # which two of the tied 0.9s come first is unspecified
    v, c = ranked_topk(values, cols, 2, lambda rows: scores[rows])
    assert c.tolist() == [[1, 2]]
    assert v[0].tolist() == pytest.approx([0.9, 0.9])


def test_k_beyond_the_keys_and_unknown_backends_are_refused() -> None:
    with pytest.raises(ValueError, match="k=5"):
        search(np.eye(3, dtype=np.float32), np.eye(3, dtype=np.float32), 5)
    with pytest.raises(ValueError, match="search_backend='annoy'"):
        ChunkedSearch(np.eye(3, dtype=np.float32), np.eye(3, dtype=np.float32), 1, backend="annoy")  # type: ignore[arg-type]
    assert resolve_backend("auto") == "exact"


def test_auto_chunk_size_bounds_the_score_block() -> None:
    assert auto_chunk_size(16_994) * 16_994 * 4 <= 192 * 2**20
    assert auto_chunk_size(10**9) == 16
    assert auto_chunk_size(1) == 8192


@pytest.mark.skipif(not faiss_available(), reason="faiss not installed")
@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 40), n_keys=st.integers(2, 60), k=st.integers(1, 20))
def test_faiss_backend_equals_exact(seed, n, n_keys, k) -> None:
    rng = np.random.default_rng(seed)
    k = min(k, n_keys)
    queries, keys = unit_rows(rng, n, 16), unit_rows(rng, n_keys, 16)
    exact_scores, exact_cols = search(queries, keys, k, chunk_size=7)
    faiss_scores, faiss_cols = search(queries, keys, k, chunk_size=7, backend="faiss")
    np.testing.assert_allclose(faiss_scores, exact_scores, atol=1e-5)
    # Same lists up to scores that tie to within float error.
    differs = faiss_cols != exact_cols
    assert np.all(np.abs(faiss_scores - exact_scores)[differs] < 1e-5)
    assert differs.mean() < 0.05
