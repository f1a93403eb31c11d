"""Exact top-k similarity search that never holds the full queries × keys matrix.

The *ranking* of keys for a query is by score, descending, ties broken by the smaller
key index (``largest=False`` walks the same ranking from its other end: score ascending,
ties by the larger key index). Everything here returns exact prefixes of that ranking,
so results do not depend on the backend, the chunk size or the number of threads
except for scores that tie to the last bit.

    >>> import torch
    >>> keys = torch.nn.functional.normalize(torch.randn(50, 8), dim=1)
    >>> scores, cols = chunked_topk(keys[:3], keys, k=2, chunk_size=2)
    >>> cols[:, 0].tolist()  # each key is its own nearest neighbour
    [0, 1, 2]
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    import faiss

__all__ = [
    "auto_chunk_size",
    "chunked_topk",
    "faiss_available",
    "faiss_index",
    "faiss_topk",
    "product_rows",
    "ranked_topk",
]

# A chunk's score block is at most this large; with the copies selection makes of a few
# rows this keeps peak memory well under a gigabyte whatever the sizes.
_CHUNK_BYTES = 192 * 2**20

RowScores = Callable[[torch.Tensor], torch.Tensor]
"""Given row indices (into the current block of queries), their full score rows."""


def product_rows(queries: torch.Tensor, keys_t: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Full score rows ``queries[rows] @ keys_t`` (a :data:`RowScores` once ``partial``-bound).

    >>> product_rows(torch.eye(2), torch.eye(2), torch.tensor([1])).tolist()
    [[0.0, 1.0]]
    """
    return queries[rows] @ keys_t


def auto_chunk_size(n_keys: int, budget_bytes: int = _CHUNK_BYTES) -> int:
    """Number of query rows per chunk so that one float32 score block fits ``budget_bytes``.

    >>> auto_chunk_size(16_994)
    2961
    """
    return int(min(8192, max(16, budget_bytes // (4 * max(1, n_keys)))))


def _exact_rows_topk(rows: torch.Tensor, k: int, largest: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact ranked top-k of a few full rows by a full lexicographic sort (for tied rows)."""
    values = rows.detach().cpu().numpy()
    cols = np.arange(values.shape[1])
    out_v = np.empty((values.shape[0], k), dtype=values.dtype)
    out_c = np.empty((values.shape[0], k), dtype=np.int64)
    for i, row in enumerate(values):
        order = np.lexsort((cols, -row)) if largest else np.lexsort((-cols, row))
        out_c[i] = order[:k]
        out_v[i] = row[order[:k]]
    return torch.from_numpy(out_v).to(rows.device), torch.from_numpy(out_c).to(rows.device)


def _sort_ranked(values: torch.Tensor, cols: torch.Tensor, largest: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Order rows by the ranking: score, then column index as the tie-break.

    ``values`` arrive sorted by score (as ``torch.topk`` and FAISS return them), so
    only rows holding equal scores need their column order fixed.
    """
    tied = torch.nonzero((values[:, 1:] == values[:, :-1]).any(dim=1)).flatten()
    if tied.numel() == 0:
        return values, cols
    v, c = values[tied], cols[tied]
    by_col = torch.argsort(c, dim=1, descending=not largest, stable=True)
    v, c = v.gather(1, by_col), c.gather(1, by_col)
    by_score = torch.argsort(v, dim=1, descending=largest, stable=True)
    values, cols = values.clone(), cols.clone()
    values[tied], cols[tied] = v.gather(1, by_score), c.gather(1, by_score)
    return values, cols


def ranked_topk(
    values: torch.Tensor,
    cols: torch.Tensor,
    k: int,
    row_scores: RowScores,
    *,
    largest: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Turn an approximate-order top-(k+1) into the exact ranked top-k.

    ``values``/``cols`` are any top-(k+1) of each row (as ``torch.topk`` or FAISS give
    them: right set up to ties, unspecified order among ties). When the k-th and
    (k+1)-th scores of a row tie, which of the tied keys made the cut is arbitrary, so
    that row is redone exactly from ``row_scores``. Infinite scores mark masked keys and
    their ties are not resolved. With ``values.shape[1] <= k`` the input already holds
    every key and only the ordering is fixed.

    >>> s = torch.tensor([[0.5, 0.9, 0.5, 0.1]])
    >>> v, c = torch.topk(s, 3)
    >>> ranked_topk(v, c, 2, lambda r: s[r])[1].tolist()
    [[1, 0]]
    """
    if values.shape[1] > k:
        last, first_out = values[:, k - 1], values[:, k]
        tied = torch.nonzero((last == first_out) & torch.isfinite(last)).flatten()
        values, cols = values[:, :k].clone(), cols[:, :k].clone()
        if tied.numel():
            exact_v, exact_c = _exact_rows_topk(row_scores(tied), k, largest)
            values[tied], cols[tied] = exact_v.to(values.dtype), exact_c
    return _sort_ranked(values, cols, largest)


def chunked_topk(
    queries: torch.Tensor | np.ndarray,
    keys: torch.Tensor | np.ndarray,
    k: int,
    *,
    largest: bool = True,
    chunk_size: int | None = None,
    device: str | torch.device | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact ranked top-k of ``queries @ keys.T``, one bounded block of queries at a time.

    Returns ``(scores, cols)``, both ``(n_queries, k)`` (float32, int64), each row in
    ranking order. Memory is one ``chunk_size × n_keys`` block, never the full matrix.

    >>> q = torch.eye(3)
    >>> chunked_topk(q, q, k=1)[1].ravel().tolist()
    [0, 1, 2]
    """
    keys_t = torch.as_tensor(keys, dtype=torch.float32, device=device)
    queries_t = torch.as_tensor(queries, dtype=torch.float32)
    n, n_keys = queries_t.shape[0], keys_t.shape[0]
    if not 0 < k <= n_keys:
        raise ValueError(f"k={k} must be between 1 and the number of keys ({n_keys})")
    chunk = chunk_size or auto_chunk_size(n_keys)
    out_v = np.empty((n, k), dtype=np.float32)
    out_c = np.empty((n, k), dtype=np.int64)
    keys_tt = keys_t.T
    for start in range(0, n, chunk):
        block = queries_t[start : start + chunk].to(keys_t.device)
        scores = block @ keys_tt
        v, c = torch.topk(scores, min(k + 1, n_keys), dim=1, largest=largest)
        v, c = ranked_topk(v, c, k, scores.__getitem__, largest=largest)
        out_v[start : start + len(block)] = v.cpu().numpy()
        out_c[start : start + len(block)] = c.cpu().numpy()
    return out_v, out_c


def faiss_available() -> bool:
    """Whether the optional ``faiss`` package (``pip install nemo_hf[faiss]``) imports.

    >>> isinstance(faiss_available(), bool)
    True
    """
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def faiss_index(keys: np.ndarray) -> faiss.Index:
    """An exact inner-product FAISS index over ``keys`` (float32, one row per key).

    >>> faiss_index(np.eye(3, dtype=np.float32)).ntotal
    3
    """
    try:
        import faiss
    except ImportError as error:
        raise ImportError("search backend 'faiss' needs the faiss package: pip install 'nemo_hf[faiss]'") from error
    keys = np.ascontiguousarray(keys, dtype=np.float32)
    index = faiss.IndexFlatIP(keys.shape[1])
    index.add(keys)
    return index


def faiss_topk(
    queries: np.ndarray,
    keys: np.ndarray,
    k: int,
    *,
    chunk_size: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Like :func:`chunked_topk` (``largest=True``) but searched with a FAISS flat index.

    FAISS does its own blocked search, so memory stays bounded; scores can differ from
    torch's in the last bits, so lists agree with :func:`chunked_topk` up to such ties.

    >>> keys = np.eye(4, dtype=np.float32)
    >>> faiss_topk(keys[:2], keys, k=1)[1].ravel().tolist()
    [0, 1]
    """
    keys = np.ascontiguousarray(keys, dtype=np.float32)
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    n, n_keys = queries.shape[0], keys.shape[0]
    if not 0 < k <= n_keys:
        raise ValueError(f"k={k} must be between 1 and the number of keys ({n_keys})")
    index = faiss_index(keys)
    keys_t = torch.from_numpy(keys)
    chunk = chunk_size or auto_chunk_size(n_keys)
    out_v = np.empty((n, k), dtype=np.float32)
    out_c = np.empty((n, k), dtype=np.int64)
    for start in range(0, n, chunk):
        block = queries[start : start + chunk]
        d, i = index.search(block, min(k + 1, n_keys))
        rows_of_block = partial(product_rows, torch.from_numpy(block), keys_t.T)
        v, c = ranked_topk(torch.from_numpy(d), torch.from_numpy(i), k, rows_of_block)
        out_v[start : start + len(block)] = v.numpy()
        out_c[start : start + len(block)] = c.numpy()
    return out_v, out_c
