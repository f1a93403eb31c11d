"""τ/top-K selection of negative images for every sentence.

The rule, for a sentence ``s`` whose own image is ``q``:

1. candidates are the pool images other than ``q``;
2. drop ``c`` when ``cos(text(s), image(c)) > tau_text`` (if set), when
   ``cos(text(s), image(c)) > cos(text(s), image(q)) + tau_own`` (if set: relative to the
   sentence's own image, so it needs no knowledge of the CLIP's cosine scale) and when
   ``cos(image(q), image(c)) > tau_image`` (if set);
3. rank the rest by ``cos(text(s), image(c))`` descending, ties by the smaller pool
   index (pool columns are in ascending ``image_id`` order, so: smaller image_id first);
4. keep the first ``top_k``.

When fewer than ``needed`` (the mosaic's negatives) survive, the list is filled up to
``needed`` from the least similar end of the ranking of all candidates and the sentence
is flagged as a fallback.

How it stays fast and exact: per chunk of sentences one score block ``S`` is computed;
a fast path looks only at each row's exact ranked top ``top_k + margin`` and applies the
rule there, checking ``tau_image`` only on the pairs it would keep. Rows where that short
list cannot prove the answer (too many dropped, a ``tau_image`` hit) are redone on their
full, masked score row. Every row's answer is the exact rule either way.

    >>> import torch
    >>> pool = torch.nn.functional.normalize(torch.randn(30, 8), dim=1)
    >>> sel = select_negatives(pool[:4], pool[:4], [0, 1, 2, 3], pool, [0, 1, 2, 3],
    ...                        top_k=5, needed=3, tau_image=0.99)
    >>> sel.cols.shape, bool((sel.cols != [[0], [1], [2], [3]]).all())
    ((4, 5), True)
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any
from dataclasses import dataclass

import numpy as np
import torch

from nemo_hf.mining.device import resolve_device
from nemo_hf.mining.search import Backend, ChunkedSearch, RowScores, ranked_topk

__all__ = [
    "HIST_BINS",
    "Selection",
    "SelectionStats",
    "require_candidates",
    "require_pool_candidates",
    "select_negatives",
]

# Histograms of cosine similarities: fixed bins over [-1, 1].
HIST_BINS = 200
# The fast path first looks at top_k + margin ranked candidates per sentence: room for
# the own image and, with a text limit (tau_text, tau_own), for a few candidates above it. The margin doubles
# while many rows need the full-row path (that changes speed only, never results).
_TEXT_MARGIN = 8


@dataclass
class SelectionStats:
    """Similarity distributions on an evenly spaced sample of sentences (for the report).

    ``*_candidates`` count every candidate (pool image other than the sentence's own) of
    the sampled sentences; ``image_chosen`` the chosen negatives of the same sentences.
    ``above_tau_text`` counts candidates above the sentence's text→image limit (the lower
    of ``tau_text`` and own score + ``tau_own``).
    Histograms share ``HIST_BINS`` equal bins over [-1, 1].
    """

    sample_sentences: int
    candidates: int
    text_candidates: np.ndarray
    image_candidates: np.ndarray
    image_chosen: np.ndarray
    above_tau_text: int
    above_tau_image: int


@dataclass
class Selection:
    """Chosen negatives: row ``i`` holds sentence ``i``'s first ``counts[i]`` picks.

    ``cols`` are pool column indices (``-1`` past ``counts``), ``scores`` the text→image
    cosines in ranking order (``NaN`` past ``counts``), ``fallback`` marks sentences whose
    list was filled from the least similar end.
    """

    cols: np.ndarray
    scores: np.ndarray
    counts: np.ndarray
    fallback: np.ndarray
    stats: SelectionStats


class _PairSims:
    """cos(image(q), image(c)) for chosen (sentence, candidate) pairs only.

    A sampled dense-dense product (``torch.sparse.sampled_addmm``): each pair's dot
    product is computed straight from the pool rows, with no gathered copy of them.
    """

    def __init__(self, query_images: torch.Tensor, pool: torch.Tensor) -> None:
        self.query_images, self.pool_t = query_images, pool.T

    def __call__(self, image_index: torch.Tensor, cols: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Similarities for ``cols[i, j]`` where ``valid[i, j]`` (each row's valid cols distinct); -inf elsewhere."""
        n, n_pool = cols.shape[0], self.pool_t.shape[1]
        # CSR wants each row's columns sorted and distinct: sort, invalid entries last.
        sorted_cols, order = torch.sort(torch.where(valid, cols, n_pool), dim=1)
        kept = sorted_cols < n_pool
        out_sorted = torch.full(cols.shape, float("-inf"), device=cols.device)
        if kept.any():
            crow = torch.zeros(n + 1, dtype=torch.int64, device=cols.device)
            crow[1:] = kept.sum(dim=1).cumsum(0)
            col_indices = sorted_cols[kept]
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
                pattern = torch.sparse_csr_tensor(
                    crow, col_indices, torch.zeros(len(col_indices), device=cols.device),
                    size=(n, n_pool), check_invariants=False,
                )  # fmt: skip
                sims = torch.sparse.sampled_addmm(
                    pattern, self.query_images.index_select(0, image_index), self.pool_t, beta=0.0
                )
            out_sorted[kept] = sims.values()
        return torch.empty_like(out_sorted).scatter_(1, order, out_sorted)


class _StatsAccumulator:
    """Accumulates :class:`SelectionStats` over the sampled rows of each chunk."""

    def __init__(self, tau_image: float | None, device: torch.device) -> None:
        self.tau_image = tau_image
        self.text, self.image, self.image_chosen = (
            torch.zeros(HIST_BINS, dtype=torch.float64, device=device) for _ in range(3)
        )
        self.sentences = self.candidates = self.above_text = self.above_image = 0

    def _masked_hist(
        self, sims: torch.Tensor, own: torch.Tensor, limit: torch.Tensor | float | None
    ) -> tuple[torch.Tensor, int]:
        """Histogram of one block of full rows (modified in place), own images left out."""
        sims.clamp_(-1.0, 1.0)
        has_own = own >= 0
        # histc ignores values outside [-1, 1]: this leaves each row's own image out.
        sims[torch.nonzero(has_own).flatten(), own[has_own]] = -3.0
        above = int((sims > limit).sum()) if limit is not None else 0
        return torch.histc(sims, HIST_BINS, -1.0, 1.0).double(), above

    def add(
        self,
        text_rows: torch.Tensor,
        image_rows: torch.Tensor,
        own: torch.Tensor,
        chosen_cols: torch.Tensor,
        text_limit: torch.Tensor | None,
    ) -> None:
        picked = chosen_cols >= 0
        rows = torch.nonzero(picked)[:, 0]
        chosen = image_rows[rows, chosen_cols[picked]].clamp(-1.0, 1.0)
        self.image_chosen += torch.histc(chosen, HIST_BINS, -1.0, 1.0).double()
        hist, above = self._masked_hist(text_rows, own, None if text_limit is None else text_limit[:, None])
        self.text += hist
        self.above_text += above
        hist, above = self._masked_hist(image_rows, own, self.tau_image)
        self.image += hist
        self.above_image += above
        self.sentences += len(own)
        self.candidates += int(text_rows.numel() - (own >= 0).sum())

    def result(self) -> SelectionStats:
        text, image, image_chosen = (h.round().long().cpu().numpy() for h in (self.text, self.image, self.image_chosen))
        return SelectionStats(
            sample_sentences=self.sentences,
            candidates=self.candidates,
            text_candidates=text,
            image_candidates=image,
            image_chosen=image_chosen,
            above_tau_text=self.above_text,
            above_tau_image=self.above_image,
        )


def require_candidates(available: int, needed: int, what: str, remedy: str) -> None:
    """Raise ``ValueError`` when ``available`` candidate negatives cannot fill a mosaic.

    ``needed`` is the mosaic's negatives (``grid**2 - 1``); ``what`` says where the
    candidates come from and ``remedy`` what to change.

    >>> require_candidates(2, 3, "top_k=2 keeps", "raise top_k")
    Traceback (most recent call last):
    ...
    ValueError: top_k=2 keeps only 2 candidate negatives, but a 2x2 mosaic needs 3: raise top_k
    """
    if available < needed:
        grid = math.isqrt(needed + 1)
        mosaic = f"a {grid}x{grid} mosaic" if grid * grid == needed + 1 else "a mosaic"
        raise ValueError(f"{what} only {available} candidate negatives, but {mosaic} needs {needed}: {remedy}")


def require_pool_candidates(n_pool: int, own_in_pool: bool, needed: int) -> None:
    """:func:`require_candidates` for a pool of ``n_pool`` images, less a sentence's own.

    >>> require_pool_candidates(4, True, 3)
    """
    require_candidates(
        n_pool - int(own_in_pool), needed,
        f"the pool has {n_pool} distinct images, so besides its own image a sentence has",
        "use a larger pool or a smaller grid",
    )  # fmt: skip


def _sample_rows(n: int, size: int) -> np.ndarray:
    """Evenly spaced row indices, at most ``size`` of them (all rows when ``n <= size``)."""
    if n <= size:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, size).round().astype(np.int64))


def _check_inputs(
    text: torch.Tensor,
    query_images: torch.Tensor,
    image_index: torch.Tensor,
    pool: torch.Tensor,
    own: torch.Tensor,
    top_k: int,
    needed: int,
) -> None:
    n, n_pool = text.shape[0], pool.shape[0]
    if text.shape[1] != pool.shape[1] or query_images.shape[1] != pool.shape[1]:
        raise ValueError(
            f"embedding sizes differ: text {tuple(text.shape)}, query images "
            f"{tuple(query_images.shape)}, pool {tuple(pool.shape)}"
        )
    if image_index.shape != (n,) or own.shape != (n,):
        raise ValueError(f"query_image_index and own_col need one entry per sentence ({n})")
    if needed < 1:
        raise ValueError(f"needed={needed} must be at least 1")
    require_candidates(top_k, needed, f"top_k={top_k} keeps", "raise top_k")
    if n and (int(own.min()) < -1 or int(own.max()) >= n_pool):
        raise ValueError(f"own_col must be -1 or a pool column in [0, {n_pool})")
    if n and (int(image_index.min()) < 0 or int(image_index.max()) >= query_images.shape[0]):
        raise ValueError(f"query_image_index must index the {query_images.shape[0]} query images")
    if n:
        require_pool_candidates(n_pool, bool((own >= 0).any()), needed)


def select_negatives(
    text_emb: torch.Tensor | np.ndarray,
    query_image_emb: torch.Tensor | np.ndarray,
    query_image_index: Sequence[int] | np.ndarray | torch.Tensor,
    pool_emb: torch.Tensor | np.ndarray,
    own_col: Sequence[int] | np.ndarray | torch.Tensor,
    *,
    top_k: int,
    needed: int,
    tau_text: float | None = None,
    tau_image: float | None = None,
    tau_own: float | None = None,
    backend: Backend = "exact",
    chunk_size: int | None = None,
    device: str | torch.device | None = None,
    stats_sample: int = 1024,
) -> Selection:
    """Apply the τ/top-K rule (module docstring) to every sentence.

    Args:
        text_emb: ``(N, d)`` L2-normalised sentence embeddings.
        query_image_emb: ``(U, d)`` L2-normalised embeddings of the sentences' own images.
        query_image_index: ``(N,)`` row of ``query_image_emb`` holding sentence i's image.
        pool_emb: ``(P, d)`` L2-normalised pool image embeddings, in ascending image_id
            order (the tie-break follows this order).
        own_col: ``(N,)`` pool column of sentence i's own image, ``-1`` when not in the pool.
        top_k, needed: list length kept, and the minimum a mosaic needs.
        tau_text, tau_image: thresholds (``None`` = off); a candidate is dropped when its
            cosine is strictly greater.
        tau_own: the relative text→image threshold (``None`` = off): a candidate is
            dropped when its cosine with the sentence exceeds the sentence's own image's
            by more than ``tau_own`` (0: anything CLIP prefers to the true image).
        backend: ``"exact"`` (torch, chunked), ``"faiss"`` (FAISS flat index) or ``"auto"``
            (see :class:`~nemo_hf.mining.search.ChunkedSearch`).
        chunk_size: sentences per score block (default: a block of about 192 MB).
        device: where the products run (default: this process's accelerator, else CPU).
        stats_sample: sentences (evenly spaced) whose full candidate lists feed the report.

    >>> pool = torch.eye(4)
    >>> sel = select_negatives(pool[:1], pool[:1], [0], pool, [0], top_k=2, needed=2)
    >>> sel.cols.tolist(), sel.fallback.tolist()
    ([[1, 2]], [False])
    """
    dev = resolve_device(device)
    text = torch.as_tensor(text_emb, dtype=torch.float32)
    pool = torch.as_tensor(pool_emb, dtype=torch.float32).to(dev)
    query_images = torch.as_tensor(query_image_emb, dtype=torch.float32).to(dev)
    image_index = torch.as_tensor(np.asarray(query_image_index), dtype=torch.int64)
    own = torch.as_tensor(np.asarray(own_col), dtype=torch.int64)
    _check_inputs(text, query_images, image_index, pool, own, top_k, needed)
    n, n_pool = text.shape[0], pool.shape[0]
    rule = _Rule(top_k, needed, tau_text, tau_image, tau_own,
                 _PairSims(query_images, pool) if tau_image is not None else None)
    stats = _StatsAccumulator(tau_image, dev)
    sampled = torch.zeros(n, dtype=torch.bool)
    sampled[torch.from_numpy(_sample_rows(n, stats_sample))] = True
    out = _Output.empty(n, top_k)
    # the search returns a few more than top_k per sentence, so that a threshold can drop some without a full row
    margin = 1 + _TEXT_MARGIN if rule.limited else 1
    search = ChunkedSearch(text, pool, min(n_pool, top_k + margin), backend=backend, chunk_size=chunk_size)
    for block in search:
        chosen = _select_block(block, text, query_images, image_index, own, pool.T, rule, dev)
        if chosen.too_short * 8 > block.stop - block.start:  # too few kept past the thresholds: widen the search
            margin = min(n_pool, 2 * margin)
            search.k = min(n_pool, top_k + margin)
        out.store(block.start, chosen)
        local = torch.nonzero(sampled[block.start : block.stop]).flatten().to(dev)
        if local.numel():
            c_index = image_index[block.start : block.stop].to(dev)[local]
            unique, inverse = torch.unique(c_index, return_inverse=True)
            stats.add(block.row_scores(local), (query_images[unique] @ pool.T)[inverse],
                      own[block.start : block.stop].to(dev)[local], torch.from_numpy(chosen.cols).to(dev)[local],
                      None if chosen.limit is None else chosen.limit[local])
    return Selection(out.cols, out.scores, out.counts, out.fallback, stats.result())


@dataclass(frozen=True)
class _Rule:
    """The τ/top-K rule of one selection, and the image-image similarities its ``tau_image`` reads."""

    top_k: int
    needed: int
    tau_text: float | None
    tau_image: float | None
    tau_own: float | None
    pair_sims: Any

    @property
    def limited(self) -> bool:
        """Whether a text→image threshold drops candidates (then the search keeps a margin beyond top_k)."""
        return self.tau_text is not None or self.tau_own is not None


@dataclass
class _Chosen:
    """One block's choice: candidate columns and scores per sentence, which fell back, and the text limits used."""

    cols: np.ndarray
    scores: np.ndarray
    fallback_rows: np.ndarray
    limit: torch.Tensor | None
    too_short: int  # sentences the search's margin did not cover (filled from their full rows)


@dataclass
class _Output:
    """The selection being filled in, block by block."""

    cols: np.ndarray
    scores: np.ndarray
    counts: np.ndarray
    fallback: np.ndarray

    @classmethod
    def empty(cls, n: int, top_k: int) -> _Output:
        return cls(np.full((n, top_k), -1, dtype=np.int64), np.full((n, top_k), np.nan, dtype=np.float32),
                   np.zeros(n, dtype=np.int32), np.zeros(n, dtype=bool))

    def store(self, start: int, chosen: _Chosen) -> None:
        stop = start + chosen.cols.shape[0]
        self.cols[start:stop, : chosen.cols.shape[1]] = chosen.cols
        self.scores[start:stop, : chosen.scores.shape[1]] = chosen.scores
        self.counts[start:stop] = (chosen.cols >= 0).sum(axis=1)
        self.fallback[start + chosen.fallback_rows] = True


def _select_block(
    block: Any, text: torch.Tensor, query_images: torch.Tensor, image_index: torch.Tensor, own: torch.Tensor,
    pool_t: torch.Tensor, rule: _Rule, dev: torch.device,
) -> _Chosen:
    """The rule applied to one block of sentences: the search's top candidates where they suffice, full rows where
    a threshold dropped too many or the image filter needs them, the least similar where fewer than needed survive."""
    start, stop, row_scores = block.start, block.stop, block.row_scores
    c_own, c_index = own[start:stop].to(dev), image_index[start:stop].to(dev)
    saw_all = block.cols.shape[1] == pool_t.shape[1]
    limit = (_text_limit(text[start:stop].to(dev), query_images, c_index, rule.tau_text, rule.tau_own)
             if rule.limited else None)
    cols, vals, too_short, image_hit = _fast_path(
        block.scores, block.cols, c_own, c_index, saw_all, rule.top_k, limit, rule.tau_image, rule.pair_sims
    )
    hard_rows = torch.nonzero(too_short | image_hit).flatten()
    if hard_rows.numel():
        cols[hard_rows], vals[hard_rows] = _full_rows(
            row_scores(hard_rows), c_own[hard_rows], c_index[hard_rows], query_images, pool_t,
            rule.top_k, None if limit is None else limit[hard_rows], rule.tau_image,
        )  # fmt: skip
    cols_np, vals_np = cols.cpu().numpy(), vals.cpu().numpy()
    chunk_counts = (cols_np >= 0).sum(axis=1)
    short = np.flatnonzero(chunk_counts < rule.needed)
    if short.size:
        _fill_from_least_similar(cols_np, vals_np, chunk_counts, short, row_scores, c_own, rule.needed)
    return _Chosen(cols_np, vals_np, short, limit, int(too_short.sum()))


def _text_limit(
    text: torch.Tensor,
    query_images: torch.Tensor,
    image_index: torch.Tensor,
    tau_text: float | None,
    tau_own: float | None,
) -> torch.Tensor:
    """Each sentence's text→image limit: the lower of ``tau_text`` and own score + ``tau_own``."""
    limit = torch.full((len(text),), float("inf") if tau_text is None else tau_text, device=text.device)
    if tau_own is not None:
        own_score = (text * query_images.index_select(0, image_index)).sum(dim=1)
        limit = torch.minimum(limit, own_score + tau_own)
    return limit


def _fast_path(
    v: torch.Tensor,
    c: torch.Tensor,
    own: torch.Tensor,
    image_index: torch.Tensor,
    saw_all: bool,
    top_k: int,
    text_limit: torch.Tensor | None,
    tau_image: float | None,
    pair_sims: _PairSims | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Apply the rule to each row's ranked prefix; flag rows the prefix cannot settle.

    Returns ``(cols, scores, too_short, image_hit)``: picks (``-1``/``NaN`` after each
    row's last), rows whose prefix held too few survivors, rows where a ``tau_image`` hit
    among the picks means later candidates are needed.
    """
    valid = c != own[:, None]
    if text_limit is not None:
        valid &= v <= text_limit[:, None]
    keep = min(top_k, v.shape[1])
    # Compact each row's valid entries to the front, in ranking order: valid entry j goes
    # to slot (number of valid entries before it); the rest go to a spare last slot.
    slot = torch.where(valid, valid.cumsum(dim=1) - 1, keep).clamp_(max=keep)
    cols = torch.full((len(c), keep + 1), -1, dtype=c.dtype, device=c.device).scatter_(1, slot, c)
    vals = torch.full((len(c), keep + 1), float("nan"), device=c.device).scatter_(1, slot, v)
    cols, vals = cols[:, :keep], vals[:, :keep]
    ok = torch.arange(keep, device=c.device) < valid.sum(dim=1, keepdim=True)
    cols, vals = torch.where(ok, cols, -1), torch.where(ok, vals, float("nan"))
    too_short = ~ok[:, -1] if not saw_all else torch.zeros_like(ok[:, 0])
    image_hit = torch.zeros_like(too_short)
    if tau_image is not None and pair_sims is not None:
        image_hit = (pair_sims(image_index, cols, ok) > tau_image).any(dim=1)
    return (*_pad(cols, vals, top_k), too_short, image_hit)


def _pad(cols: torch.Tensor, vals: torch.Tensor, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    extra = width - cols.shape[1]
    if extra <= 0:
        return cols, vals
    return (
        torch.nn.functional.pad(cols, (0, extra), value=-1),
        torch.nn.functional.pad(vals, (0, extra), value=float("nan")),
    )


def _full_rows(
    rows: torch.Tensor,
    own: torch.Tensor,
    image_index: torch.Tensor,
    query_images: torch.Tensor,
    pool_t: torch.Tensor,
    top_k: int,
    text_limit: torch.Tensor | None,
    tau_image: float | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The rule on full score rows: mask every dropped candidate, then exact ranked top-k."""
    masked = rows.clone()
    n_pool = masked.shape[1]
    has_own = own >= 0
    masked[torch.nonzero(has_own).flatten(), own[has_own]] = float("-inf")
    if text_limit is not None:
        masked.masked_fill_(masked > text_limit[:, None], float("-inf"))
    if tau_image is not None:
        unique, inverse = torch.unique(image_index, return_inverse=True)
        masked.masked_fill_(((query_images[unique] @ pool_t) > tau_image)[inverse], float("-inf"))
    keep = min(top_k, n_pool)
    v, c = torch.topk(masked, min(keep + 1, n_pool), dim=1)
    v, c = ranked_topk(v, c, keep, masked.__getitem__)
    ok = torch.isfinite(v)
    return _pad(torch.where(ok, c, -1), torch.where(ok, v, float("nan")), top_k)


def _fill_from_least_similar(
    cols: np.ndarray,
    vals: np.ndarray,
    counts: np.ndarray,
    short: np.ndarray,
    row_scores: RowScores,
    own: torch.Tensor,
    needed: int,
) -> None:
    """Fill rows ``short`` up to ``needed`` from the least similar candidates (in place)."""
    rows_t = torch.from_numpy(short).to(own.device)
    full = row_scores(rows_t).clone()
    row_own = own[rows_t]
    has_own = row_own >= 0
    # +inf keeps the sentence's own image out of the least-similar end.
    full[torch.nonzero(has_own).flatten(), row_own[has_own]] = float("inf")
    n_pool = full.shape[1]
    depth = min(n_pool, needed + int(counts[short].max()))
    v, c = torch.topk(full, min(depth + 1, n_pool), dim=1, largest=False)
    v, c = ranked_topk(v, c, depth, full.__getitem__, largest=False)
    v_np, c_np = v.cpu().numpy(), c.cpu().numpy()
    for j, row in enumerate(short):
        have = int(counts[row])
        taken = set(cols[row, :have].tolist())
        picks_c, picks_v = list(cols[row, :have]), list(vals[row, :have])
        for col, score in zip(c_np[j], v_np[j], strict=True):
            if len(picks_c) == needed:
                break
            if np.isfinite(score) and int(col) not in taken:
                picks_c.append(int(col))
                picks_v.append(float(score))
        order = np.lexsort((np.asarray(picks_c), -np.asarray(picks_v, dtype=np.float64)))
        cols[row, :needed] = np.asarray(picks_c)[order]
        vals[row, :needed] = np.asarray(picks_v, dtype=np.float32)[order]
        counts[row] = needed
