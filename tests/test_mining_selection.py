"""The τ/top-K rule against a brute-force reading of its definition."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nemo_hf.mining.report import DifficultyReport
from nemo_hf.mining.search import faiss_available
from nemo_hf.mining.selection import HIST_BINS, select_negatives

torch.set_num_threads(1)


def unit_rows(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.normal(size=(n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@dataclass
class Problem:
    text: np.ndarray
    query_images: np.ndarray
    image_index: np.ndarray
    pool: np.ndarray
    own: np.ndarray

    def select(self, **kwargs):
        return select_negatives(self.text, self.query_images, self.image_index, self.pool, self.own, **kwargs)


def make_problem(rng: np.random.Generator, n: int, n_pool: int, n_extra: int = 0, d: int = 8) -> Problem:
    """Sentences whose images are pool images (own = that column) or extra images (own = -1)."""
    pool = unit_rows(rng, n_pool, d)
    query_images = np.concatenate([pool, unit_rows(rng, n_extra, d)])
    image_index = rng.integers(0, n_pool + n_extra, size=n)
    own = np.where(image_index < n_pool, image_index, -1)
    # Texts lean towards their own image, so rankings are not pure noise.
    text = unit_rows(rng, n, d) + 1.5 * query_images[image_index]
    text = (text / np.linalg.norm(text, axis=1, keepdims=True)).astype(np.float32)
    return Problem(text, query_images, image_index, pool, own)


def brute_force(
    p: Problem, top_k: int, needed: int, tau_text, tau_image, tau_own=None
) -> tuple[list[list[int]], list[bool]]:
    """The rule, word for word, in float64 and plain Python."""
    text_scores = p.text.astype(np.float64) @ p.pool.T.astype(np.float64)
    image_scores = p.query_images.astype(np.float64) @ p.pool.T.astype(np.float64)
    lists, fallback = [], []
    for i in range(len(p.text)):
        s, im = text_scores[i], image_scores[p.image_index[i]]
        own_score = float(p.text[i].astype(np.float64) @ p.query_images[p.image_index[i]].astype(np.float64))
        ranking = sorted((c for c in range(len(p.pool)) if c != p.own[i]), key=lambda c: (-s[c], c))
        kept = [
            c for c in ranking
            if (tau_text is None or s[c] <= tau_text)
            and (tau_own is None or s[c] <= own_score + tau_own)
            and (tau_image is None or im[c] <= tau_image)
        ]  # fmt: skip
        chosen = kept[:top_k]
        short = len(chosen) < needed
        if short:
            fill = [c for c in reversed(ranking) if c not in chosen][: needed - len(chosen)]
            chosen = sorted(chosen + fill, key=lambda c: (-s[c], c))
        lists.append(chosen)
        fallback.append(short)
    return lists, fallback


def selected_lists(selection) -> list[list[int]]:
    return [row[:count].tolist() for row, count in zip(selection.cols, selection.counts, strict=True)]


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 100_000),
    n=st.integers(1, 50),
    n_pool=st.integers(4, 40),
    n_extra=st.integers(0, 5),
    needed=st.sampled_from([3, 8]),
    extra_k=st.integers(0, 12),
    tau_text=st.sampled_from([None, 0.9, 0.6, 0.3, -0.2]),
    tau_image=st.sampled_from([None, 0.95, 0.5, 0.0]),
    tau_own=st.sampled_from([None, None, 0.0, -0.15, 0.2]),
    chunk=st.integers(1, 17),
    backend=st.sampled_from(["exact", "faiss"] if faiss_available() else ["exact"]),
)
def test_selection_equals_brute_force(
    seed, n, n_pool, n_extra, needed, extra_k, tau_text, tau_image, tau_own, chunk, backend
):
    rng = np.random.default_rng(seed)
    p = make_problem(rng, n, n_pool, n_extra)
    if n_pool - 1 < needed:
        return
    top_k = needed + extra_k
    sel = p.select(top_k=top_k, needed=needed, tau_text=tau_text, tau_image=tau_image, tau_own=tau_own,
                   chunk_size=chunk, backend=backend, stats_sample=5)  # fmt: skip
    expected, fallback = brute_force(p, top_k, needed, tau_text, tau_image, tau_own)
    assert selected_lists(sel) == expected
    assert sel.fallback.tolist() == fallback
    text_scores = p.text @ p.pool.T
    for i, chosen in enumerate(expected):
        np.testing.assert_allclose(sel.scores[i, : len(chosen)], text_scores[i, chosen], atol=1e-5)
        assert np.isnan(sel.scores[i, len(chosen) :]).all() and (sel.cols[i, len(chosen) :] == -1).all()


def test_own_image_is_never_chosen_even_when_everything_else_is_filtered() -> None:
    p = make_problem(np.random.default_rng(1), n=40, n_pool=10)
    for tau_text in (None, -1.0):
        sel = p.select(top_k=9, needed=3, tau_text=tau_text, tau_image=-1.0)
        for own, row, count in zip(p.own, sel.cols, sel.counts, strict=True):
            assert own not in row[:count].tolist()
        assert sel.fallback.all()  # tau_image=-1 drops every candidate


def test_tau_semantics_are_strictly_greater() -> None:
    p = make_problem(np.random.default_rng(2), n=30, n_pool=25)
    text_scores = p.text @ p.pool.T
    image_scores = p.query_images @ p.pool.T
    sel = p.select(top_k=24, needed=1, tau_text=0.2, tau_image=0.1)
    for i, (row, count) in enumerate(zip(sel.cols, sel.counts, strict=True)):
        if sel.fallback[i]:
            continue
        chosen = row[:count]
        assert (text_scores[i, chosen] <= 0.2).all()
        assert (image_scores[p.image_index[i], chosen] <= 0.1).all()
        # Everything passing both thresholds was kept (top_k is large enough).
        image_row = image_scores[p.image_index[i]]
        passing = [c for c in range(25) if c != p.own[i] and text_scores[i, c] <= 0.2 and image_row[c] <= 0.1]
        assert sorted(chosen.tolist()) == sorted(passing)


def test_top_k_keeps_the_highest_ranked_and_scores_descend() -> None:
    p = make_problem(np.random.default_rng(3), n=20, n_pool=30)
    wide = p.select(top_k=29, needed=3)
    for k in (3, 7, 20):
        sel = p.select(top_k=k, needed=3)
        assert (sel.counts == k).all()
        np.testing.assert_array_equal(sel.cols, wide.cols[:, :k])
        assert (np.diff(sel.scores, axis=1) <= 0).all()


def test_fallback_fills_from_the_least_similar_end() -> None:
    p = make_problem(np.random.default_rng(4), n=10, n_pool=12)
    text_scores = p.text @ p.pool.T
    sel = p.select(top_k=5, needed=3, tau_text=-1.0)  # nothing survives
    assert sel.fallback.all() and (sel.counts == 3).all()
    for i, row in enumerate(sel.cols):
        others = [c for c in range(12) if c != p.own[i]]
        lowest = sorted(others, key=lambda c: (text_scores[i, c], -c))[:3]
        assert sorted(row[:3].tolist()) == sorted(lowest)


def test_results_do_not_depend_on_chunking_or_repetition() -> None:
    p = make_problem(np.random.default_rng(5), n=300, n_pool=60, n_extra=4)
    runs = [p.select(top_k=10, needed=3, tau_text=0.8, tau_image=0.5, chunk_size=c) for c in (None, 1, 7, 64)]
    for other in runs[1:]:
        np.testing.assert_array_equal(other.cols, runs[0].cols)
        np.testing.assert_array_equal(other.fallback, runs[0].fallback)


@pytest.mark.skipif(not faiss_available(), reason="faiss not installed")
def test_faiss_backend_equals_exact_at_a_larger_size() -> None:
    p = make_problem(np.random.default_rng(6), n=2000, n_pool=3000, d=64)
    exact = p.select(top_k=20, needed=3, tau_text=0.7, tau_image=0.3, backend="exact")
    fast = p.select(top_k=20, needed=3, tau_text=0.7, tau_image=0.3, backend="faiss")
    differs = exact.cols != fast.cols
    assert differs.sum() <= 2  # only exact-score ties may swap
    np.testing.assert_allclose(exact.scores, fast.scores, atol=1e-5)


def test_a_pool_too_small_for_the_mosaic_is_an_error() -> None:
    p = make_problem(np.random.default_rng(7), n=5, n_pool=3)
    with pytest.raises(ValueError, match=r"only 2 candidate negatives.*needs 3"):
        p.select(top_k=3, needed=3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"top_k": 2, "needed": 3}, "top_k=2 keeps only 2 candidate negatives, but a 2x2 mosaic needs 3"),
        ({"top_k": 3, "needed": 0}, "needed=0"),
        ({"top_k": 3, "needed": 3, "backend": "annoy"}, "annoy"),
    ],
)
def test_bad_settings_are_errors(kwargs, message) -> None:
    p = make_problem(np.random.default_rng(8), n=3, n_pool=10)
    with pytest.raises(ValueError, match=message):
        p.select(**kwargs)


def test_stats_count_every_candidate_of_the_sampled_sentences() -> None:
    p = make_problem(np.random.default_rng(9), n=50, n_pool=20, n_extra=3)
    sel = p.select(top_k=5, needed=3, tau_text=0.5, tau_image=0.2, stats_sample=10)
    stats = sel.stats
    rows = np.unique(np.linspace(0, 49, 10).round().astype(int))
    n_candidates = sum(20 - (p.own[i] >= 0) for i in rows)
    assert stats.sample_sentences == len(rows) and stats.candidates == n_candidates
    assert stats.text_candidates.sum() == stats.image_candidates.sum() == n_candidates
    assert stats.image_chosen.sum() == sel.counts[rows].sum()
    text_scores = p.text @ p.pool.T
    above = sum(int(((text_scores[i] > 0.5) & (np.arange(20) != p.own[i])).sum()) for i in rows)
    assert stats.above_tau_text == above
    expected_hist = np.zeros(HIST_BINS, dtype=np.int64)
    for i in rows:
        values = np.delete(text_scores[i], p.own[i]) if p.own[i] >= 0 else text_scores[i]
        expected_hist += np.histogram(values, bins=HIST_BINS, range=(-1, 1))[0]
    assert np.abs(stats.text_candidates - expected_hist).sum() <= 2  # bin-edge rounding only

    report = DifficultyReport.from_selection(sel, model="m", n_pool=20, top_k=5, needed=3, tau_text=0.5, tau_image=0.2)
    assert report.n_fallback == int(sel.fallback.sum())
    assert sum(report.chosen_text_hist) == int(sel.counts.sum())
    assert report.candidates_above_tau_text == pytest.approx(above / n_candidates, abs=1e-6)


def test_a_score_equal_to_tau_is_kept() -> None:
    # Orthogonal unit vectors: every cosine is exactly 0 (or 1 for the image itself).
    pool = np.eye(6, dtype=np.float32)
    sel = select_negatives(pool[:2], pool[:2], [0, 1], pool, [0, 1], top_k=5, needed=3, tau_text=0.0, tau_image=0.0)
    assert not sel.fallback.any()
    assert sel.cols.tolist() == [[1, 2, 3, 4, 5], [0, 2, 3, 4, 5]]  # all tie at 0: by index
    dropped = select_negatives(pool[:1], pool[:1], [0], pool, [0], top_k=5, needed=3, tau_text=-1e-6)
    assert dropped.fallback.all()
