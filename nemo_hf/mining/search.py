"""Exact top-k similarity search that never holds the full queries × keys matrix.

The *ranking* of keys for a query is by score, descending, ties broken by the smaller
key index (``largest=False`` walks the same ranking from its other end: score ascending,
ties by the larger key index). Everything here returns exact prefixes of that ranking,
so results do not depend on the backend, the chunk size or the number of threads
except for scores that tie to the last bit.

    >>> import torch
    >>> keys = torch.nn.functional.normalize(torch.randn(50, 8), dim=1)
    >>> [block.cols[:, 0].tolist() for block in ChunkedSearch(keys[:3], keys, k=2, chunk_size=2)]  # itself first
    [[0, 1], [2]]
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch

if TYPE_CHECKING:
    import faiss

__all__ = [
    "BACKENDS",
    "Backend",
    "ChunkedSearch",
    "SearchBlock",
    "auto_chunk_size",
    "faiss_available",
    "faiss_index",
    "product_rows",
    "ranked_topk",
    "resolve_backend",
]

Backend = Literal["auto", "exact", "faiss"]
BACKENDS: tuple[Backend, ...] = ("auto", "exact", "faiss")

# A chunk's score block is at most this large; with the copies selection makes of a few
# rows this keeps peak memory well under a gigabyte whatever the sizes.
_CHUNK_BYTES = 192 * 2**20

RowScores = Callable[[torch.Tensor], torch.Tensor]
"""Given row indices (into the current block of queries), their full score rows."""


def resolve_backend(backend: Backend) -> Literal["exact", "faiss"]:
    """The search backend to use for ``backend`` ("auto", "exact" or "faiss").

    >>> resolve_backend("auto")
    'exact'
    """
    if backend not in BACKENDS:
        raise ValueError(f"search_backend={backend!r} must be 'auto', 'exact' or 'faiss'")
    # "auto" is torch: on RefCOCO-sized mining on a CPU, FAISS's flat index took about 3x
    # its time (BENCHMARKS.md, "Mining"), and on a GPU torch is the natural choice.
    return "exact" if backend == "auto" else backend


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


@dataclass
class SearchBlock:
    """One block of queries, rows ``start:stop``: their exact ranked top-k and full score rows.

    ``row_scores`` (block-local row indices → full score rows) is valid until the next
    block is drawn: the exact backend reuses one buffer for every block.
    """

    start: int
    stop: int
    scores: torch.Tensor
    cols: torch.Tensor
    row_scores: RowScores


class ChunkedSearch:
    """Exact ranked top-``k`` keys of every query, one bounded block of queries at a time.

    Iterating yields a :class:`SearchBlock` per ``chunk_size`` queries (default: a score
    block of about 192 MB); memory is one ``chunk_size × n_keys`` block, never the full
    matrix. ``backend`` is "exact" (torch matmul + top-k), "faiss" (a flat FAISS index)
    or "auto". :attr:`k` may be raised between blocks; it must stay within the keys.

    >>> keys = torch.eye(3)
    >>> [block.cols.tolist() for block in ChunkedSearch(keys, keys, k=1)]
    [[[0], [1], [2]]]
    """

    def __init__(
        self,
        queries: torch.Tensor | np.ndarray,
        keys: torch.Tensor | np.ndarray,
        k: int,
        *,
        backend: Backend = "exact",
        chunk_size: int | None = None,
        device: str | torch.device | None = None,
    ) -> None:
        self.k = k
        self.queries = torch.as_tensor(queries, dtype=torch.float32)
        keys_t = torch.as_tensor(keys, dtype=torch.float32, device=device)
        self.device, self.keys_t = keys_t.device, keys_t.T
        self.chunk = chunk_size or auto_chunk_size(keys_t.shape[0])
        self.index = faiss_index(keys_t.cpu().numpy()) if resolve_backend(backend) == "faiss" else None

    def __iter__(self) -> Iterator[SearchBlock]:
        n, n_keys = self.queries.shape[0], self.keys_t.shape[1]
        buffer = torch.empty(min(self.chunk, n), n_keys, device=self.device) if self.index is None and n else None
        for start in range(0, n, self.chunk):
            k = self.k
            if not 0 < k <= n_keys:
                raise ValueError(f"k={k} must be between 1 and the number of keys ({n_keys})")
            stop = min(n, start + self.chunk)
            queries = self.queries[start:stop].to(self.device)
            row_scores: RowScores
            if buffer is not None:
                scores = torch.matmul(queries, self.keys_t, out=buffer[: stop - start])
                row_scores = scores.__getitem__
                v, c = torch.topk(scores, min(k + 1, n_keys), dim=1)
            else:
                assert self.index is not None
                row_scores = partial(product_rows, queries, self.keys_t)
                d, i = self.index.search(queries.cpu().numpy(), min(k + 1, n_keys))
                v, c = torch.from_numpy(d).to(self.device), torch.from_numpy(i).to(self.device)
            v, c = ranked_topk(v, c, k, row_scores)
            yield SearchBlock(start, stop, v, c, row_scores)
