"""Mine negatives for a dataset: cached CLIP embeddings → τ/top-K selection → new columns.

Adds to every row (one row per referred object), one entry per sentence:
``negative_image_ids`` (list of pool image_ids, best first), ``negative_scores`` (their
text→image cosines, descending) and ``negative_fallback`` (True when fewer than the
mosaic needs survived τ and the list was filled from the least similar end).

Embeddings and selections are cached on disk (see :mod:`nemo_hf.mining.cache`), keyed by
the CLIP model (name + revision, or a digest of its weights), the dataset fingerprints
and the settings: mining the same data again recomputes nothing and does not even load
the model. :func:`mining_embeddings` returns those embeddings themselves (from the same
cache entries), for tools that rank and cut again under other settings (the explorer).

    >>> import tempfile
    >>> from datasets import Dataset, Features, Image, List, Value
    >>> from PIL import Image as PILImage
    >>> colours = ["red", "green", "blue", "yellow", "white", "black"]
    >>> ds = Dataset.from_dict(
    ...     {"image": [PILImage.new("RGB", (48, 32), c) for c in colours],
    ...      "image_id": list(range(6)), "sentences": [[f"the {c} one"] for c in colours]},
    ...     features=Features({"image": Image(), "image_id": Value("int64"),
    ...                        "sentences": List(Value("string"))}))
    >>> result = mine_negatives(ds, ds, "nemo-hf/synthetic-clip", top_k=4, needed=3, tau_text=None,
    ...                         tau_image=None, cache_dir=tempfile.mkdtemp(), verbose=False)
    >>> row = result.dataset[0]
    >>> len(row["negative_image_ids"][0]), 0 in row["negative_image_ids"][0]
    (4, False)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from accelerate import PartialState
from accelerate.utils import gather_object
from datasets import Dataset, DatasetDict, Features, List, Value, concatenate_datasets
from datasets.table import InMemoryTable
from transformers import CLIPModel, CLIPProcessor

from nemo_hf.mining.cache import ArrayCache, cache_key
from nemo_hf.mining.clip import ClipSource
from nemo_hf.mining.device import process_state, resolve_device
from nemo_hf.mining.embed import embed_images, embed_texts
from nemo_hf.mining.report import DifficultyReport
from nemo_hf.mining.search import Backend, resolve_backend
from nemo_hf.mining.selection import Selection, SelectionStats, require_pool_candidates, select_negatives

__all__ = ["MINING_VERSION", "NEGATIVE_COLUMNS", "NEGATIVE_FEATURES", "MiningEmbeddings", "MiningResult",
           "mine_negatives", "mining_embeddings", "negative_columns", "require_split"]

# Part of every cache key: bump when a change alters what mining computes or stores.
MINING_VERSION = "1"
NEGATIVE_COLUMNS = ("negative_image_ids", "negative_scores", "negative_fallback")
NEGATIVE_FEATURES = Features(
    {
        "negative_image_ids": List(List(Value("int64"))),
        "negative_scores": List(List(Value("float32"))),
        "negative_fallback": List(Value("bool")),
    }
)


@dataclass
class MiningResult:
    """The dataset with its negative columns, and the difficulty report of the run."""

    dataset: Dataset
    report: DifficultyReport


@dataclass
class _Sentences:
    texts: list[str]
    row_lengths: np.ndarray  # sentences per dataset row
    image_ids: np.ndarray  # own image_id per sentence


def require_split(ds: object, what: str) -> None:
    """Refuse anything but one split, naming the split to pick from a ``DatasetDict``.

    >>> require_split(DatasetDict({"train": Dataset.from_dict({"a": [1]})}), "dataset")
    Traceback (most recent call last):
    ...
    TypeError: the dataset is a DatasetDict of splits ['train']: pass one split, e.g. ds['train']
    """
    if isinstance(ds, DatasetDict):
        example = "train" if "train" in ds else next(iter(ds), "train")
        raise TypeError(f"the {what} is a DatasetDict of splits {list(ds)}: pass one split, e.g. ds[{example!r}]")
    if not isinstance(ds, Dataset):
        raise TypeError(f"the {what} must be a datasets.Dataset, got {type(ds).__name__}")


def _require_columns(ds: Dataset, names: tuple[str, ...], what: str) -> None:
    missing = [name for name in names if name not in ds.column_names]
    if missing:
        raise ValueError(
            f"the {what} has no column(s) {missing} (it has {ds.column_names}); mining needs "
            f"rows with {list(names)} as in the nemo_hf RefCOCO schema"
        )


def _column_numpy(ds: Dataset, name: str, what: str) -> np.ndarray:
    column = ds.select_columns([name]).with_format("arrow")[:].column(name)
    if column.null_count:
        raise ValueError(f"the {what} has {column.null_count} rows without a {name}")
    return column.to_numpy().astype(np.int64)


def _read_sentences(ds: Dataset) -> _Sentences:
    """Every expression in row order, with a clear error for empty ones."""
    names = ["sentences", "image_id"] + [c for c in ("ref_id", "sent_ids") if c in ds.column_names]
    table = ds.select_columns(names).with_format("arrow")[:]
    rows = table.column("sentences").to_pylist()
    ref_ids = table.column("ref_id").to_pylist() if "ref_id" in names else None
    sent_ids = table.column("sent_ids").to_pylist() if "sent_ids" in names else None
    texts: list[str] = []
    for i, sentences in enumerate(rows):
        for j, text in enumerate(sentences or []):
            if not isinstance(text, str) or not text.strip():
                where = [f"ref_id {ref_ids[i]}"] if ref_ids is not None else []
                if sent_ids is not None and sent_ids[i] is not None and j < len(sent_ids[i]):
                    where.append(f"sent_id {sent_ids[i][j]}")
                raise ValueError(
                    f"row {i} ({', '.join([*where, f'sentence {j}'])}) has an empty expression "
                    f"{text!r}: CLIP cannot rank negatives for it; fix or drop it before mining"
                )
            texts.append(text)
    lengths = np.asarray([len(s or []) for s in rows], dtype=np.int64)
    row_image_ids = _column_numpy(ds, "image_id", "dataset")
    return _Sentences(texts, lengths, np.repeat(row_image_ids, lengths))


def _everyone(flag: bool, state: PartialState) -> bool:
    """True only if ``flag`` holds on every process (all then take the same branch)."""
    if state.num_processes == 1:
        return flag
    return all(gather_object([flag]))


def _embeddings(
    cache: ArrayCache,
    kind: str,
    key: str,
    compute: Any,
    meta: dict[str, Any],
    state: PartialState,
) -> np.ndarray:
    hit = cache.get(kind, key)
    if _everyone(hit is not None, state):
        return hit["embeddings"]  # type: ignore[index]
    array = compute()
    if state.is_main_process:
        cache.put(kind, key, {"embeddings": array}, meta)
    return array


def _selection_arrays(selection: Selection) -> dict[str, np.ndarray]:
    s = selection.stats
    return {
        "cols": selection.cols,
        "scores": selection.scores,
        "counts": selection.counts,
        "fallback": selection.fallback,
        "text_candidates": s.text_candidates,
        "image_candidates": s.image_candidates,
        "image_chosen": s.image_chosen,
        "stats_counts": np.asarray([s.sample_sentences, s.candidates, s.above_tau_text, s.above_tau_image]),
    }


def _selection_from_arrays(arrays: dict[str, np.ndarray]) -> Selection:
    sample, candidates, above_text, above_image = (int(x) for x in arrays["stats_counts"])
    stats = SelectionStats(
        sample, candidates, arrays["text_candidates"], arrays["image_candidates"],
        arrays["image_chosen"], above_text, above_image,
    )  # fmt: skip
    return Selection(arrays["cols"], arrays["scores"], arrays["counts"], arrays["fallback"], stats)


def negative_columns(
    row_lengths: np.ndarray, image_ids: np.ndarray, scores: np.ndarray, counts: np.ndarray, fallback: np.ndarray
) -> Dataset:
    """The three negative columns as an Arrow-backed dataset (no Python lists in between), for any miner.

    ``row_lengths`` are the sentences of each row; per sentence, ``image_ids`` and ``scores``
    ``(N, K)`` hold the candidates best first, of which the first ``counts`` are kept, and
    ``fallback`` whether it fell back to the least similar.

    >>> cols = negative_columns(np.array([2]), np.array([[7, 8], [9, -1]]), np.zeros((2, 2)), np.array([2, 1]),
    ...                         np.array([False, True]))
    >>> cols[0]["negative_image_ids"], cols[0]["negative_fallback"]
    ([[7, 8], [9]], [False, True])
    """
    row_offsets = pa.array(np.concatenate([[0], np.cumsum(row_lengths)]), pa.int32())
    list_offsets = pa.array(np.concatenate([[0], np.cumsum(counts)]), pa.int32())
    kept = np.arange(image_ids.shape[1])[None, :] < counts[:, None]

    def nested(values: np.ndarray) -> pa.Array:
        return pa.ListArray.from_arrays(row_offsets, pa.ListArray.from_arrays(list_offsets, pa.array(values)))

    table = pa.table(
        {
            "negative_image_ids": nested(image_ids[kept].astype(np.int64)),
            "negative_scores": nested(scores[kept].astype(np.float32)),
            "negative_fallback": pa.ListArray.from_arrays(row_offsets, pa.array(fallback.astype(bool))),
        }
    )
    return Dataset(InMemoryTable(table.cast(NEGATIVE_FEATURES.arrow_schema)))


def mine_negatives(
    ds: Dataset,
    pool: Dataset,
    clip: ClipSource | str | os.PathLike[str] | CLIPModel | None = None,
    processor: CLIPProcessor | None = None,
    *,
    top_k: int,
    needed: int,
    tau_text: float | None,
    tau_image: float | None,
    tau_own: float | None = None,
    image_batch_size: int = 64,
    text_batch_size: int = 256,
    backend: Backend = "auto",
    device: str | None = None,
    num_proc: int | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    report_dir: str | os.PathLike[str] | None = None,
    verbose: bool = True,
) -> MiningResult:
    """Choose negatives for every sentence of ``ds`` from the images of ``pool``.

    Args:
        ds: rows with ``image``, ``image_id`` and ``sentences`` (``ref_id``/``sent_ids``
            are used in error messages when present). Existing negative columns are replaced.
        pool: rows with ``image`` and ``image_id``; each distinct ``image_id`` is one
            candidate (rows sharing an image_id must share the image).
        clip, processor: a checkpoint name/path, a ``CLIPModel`` + ``CLIPProcessor``, or a
            :class:`~nemo_hf.mining.clip.ClipSource`.
        top_k, needed, tau_text, tau_image, tau_own: the selection rule
            (:func:`~nemo_hf.mining.selection.select_negatives`).
        image_batch_size, text_batch_size: CLIP batch sizes.
        backend: similarity search, ``"auto"``, ``"exact"`` or ``"faiss"``.
        device: where CLIP and the search run (default: this process's accelerator).
        num_proc: processes decoding and preprocessing images (``None``/1: in-process).
        cache_dir: embedding/selection cache (default :func:`~nemo_hf.mining.cache.default_cache_dir`).
        report_dir: if given, the difficulty report is saved there as JSON and PNG.
        verbose: print the report summary and progress bars (main process only).

    The query images of ``ds`` whose image_id is in the pool reuse the pool's
    embeddings; others are embedded from ``ds``.
    """
    state = process_state()
    source = clip if isinstance(clip, ClipSource) else ClipSource.resolve(clip, processor)
    ds = _checked_inputs(ds, pool)
    sentences = _read_sentences(ds)
    index = _PoolIndex.of(pool, sentences)
    if len(sentences.texts):  # checked before the costly embedding
        require_pool_candidates(len(index.pool_ids), bool(index.in_pool.any()), needed)
    dev = resolve_device(device)
    rule = {"top_k": top_k, "needed": needed, "tau_text": tau_text, "tau_image": tau_image, "tau_own": tau_own}
    keys = _CacheKeys.of(source, ds, pool, index, rule, resolve_backend(backend))
    cache = ArrayCache(cache_dir)
    cached = cache.get("selection", keys.selection)
    if _everyone(cached is not None, state):
        selection = _selection_from_arrays(cached)  # type: ignore[arg-type]
    else:
        selection = _embed_and_select(
            source, ds, pool, sentences, index, keys, cache, rule, state,
            image_batch_size=image_batch_size, text_batch_size=text_batch_size, device=dev, num_proc=num_proc,
            progress=verbose and state.is_main_process,
        )  # fmt: skip
    mined = _with_negative_columns(ds, sentences, index.pool_ids, selection)
    report = DifficultyReport.from_selection(selection, model=source.name or "CLIPModel object",
                                             n_pool=len(index.pool_ids), **rule)
    if state.is_main_process:
        if verbose:
            print(report.summary())
        if report_dir is not None:
            report.save(Path(report_dir))
    return MiningResult(mined, report)


def _checked_inputs(ds: Dataset, pool: Dataset) -> Dataset:
    """``ds`` without the negative columns of an earlier mining, once both datasets are checked."""
    require_split(ds, "dataset")
    require_split(pool, "pool")
    _require_columns(ds, ("image", "image_id", "sentences"), "dataset")
    _require_columns(pool, ("image", "image_id"), "pool")
    return ds.remove_columns([c for c in NEGATIVE_COLUMNS if c in ds.column_names])


@dataclass(frozen=True)
class _PoolIndex:
    """The pool's distinct images and where each sentence's own image is: in the pool, or an extra to embed."""

    pool_ids: np.ndarray  # sorted distinct image_ids of the pool: the candidates' columns
    pool_first_rows: np.ndarray  # a pool row holding each of them
    in_pool: np.ndarray  # per sentence: its own image is a candidate too
    own_col: np.ndarray  # per sentence: its own image's column, -1 when not in the pool
    extra_ids: np.ndarray  # sorted image_ids of own images outside the pool

    @classmethod
    def of(cls, pool: Dataset, sentences: _Sentences) -> _PoolIndex:
        pool_ids, pool_first_rows = np.unique(_column_numpy(pool, "image_id", "pool"), return_index=True)
        in_pool = np.isin(sentences.image_ids, pool_ids)
        own_col = np.where(in_pool, np.searchsorted(pool_ids, sentences.image_ids), -1)
        return cls(pool_ids, pool_first_rows, in_pool, own_col, np.unique(sentences.image_ids[~in_pool]))


@dataclass(frozen=True)
class _CacheKeys:
    """The cache entries of one mining: embeddings of the pool, the texts and the extra images, and the selection."""

    pool: str
    texts: str
    extra: str
    selection: str
    meta: dict[str, Any]
    backend: str  # the search the selection was made with (part of its key)

    @classmethod
    def of(cls, source: ClipSource, ds: Dataset, pool: Dataset, index: _PoolIndex, rule: dict[str, Any] | None,
           backend: str) -> _CacheKeys:
        model_key = source.key()
        pool_key = cache_key("pool-images", MINING_VERSION, model_key, pool._fingerprint)
        text_key = cache_key("texts", MINING_VERSION, model_key, ds._fingerprint)
        extra_key = cache_key("images", MINING_VERSION, model_key, ds._fingerprint, index.extra_ids.tolist())
        selection_key = "" if rule is None else cache_key(
            "selection", MINING_VERSION, pool_key, text_key, extra_key, rule["top_k"], rule["needed"],
            rule["tau_text"], rule["tau_image"], rule["tau_own"], backend,
        )
        meta = {"model": source.name, "revision": source.revision, "version": MINING_VERSION}
        return cls(pool_key, text_key, extra_key, selection_key, meta, backend)


@dataclass(frozen=True)
class MiningEmbeddings:
    """What the τ/top-K rule reads, for every sentence of a dataset and every image of its pool.

    Sentence ``i`` is sentence ``sentence_in_row[i]`` of dataset row ``row_of_sentence[i]``;
    its own image is ``image_ids[i]``, pool column ``own_col[i]`` (-1 when not in the pool)
    and row ``query_index[i]`` of ``query``. Pool column ``c`` is image ``pool_ids[c]``
    (ascending), found in pool row ``pool_rows[c]``. Embeddings are L2-normalised float32,
    so a dot product is a cosine; their arguments are those of
    :func:`~nemo_hf.mining.selection.select_negatives`.
    """

    texts: list[str]
    row_of_sentence: np.ndarray
    sentence_in_row: np.ndarray
    image_ids: np.ndarray
    text: np.ndarray
    pool_ids: np.ndarray
    pool_rows: np.ndarray
    pool: np.ndarray
    query: np.ndarray
    query_index: np.ndarray
    own_col: np.ndarray


def mining_embeddings(
    ds: Dataset,
    pool: Dataset,
    clip: ClipSource | str | os.PathLike[str] | CLIPModel | None = None,
    processor: CLIPProcessor | None = None,
    *,
    image_batch_size: int = 64,
    text_batch_size: int = 256,
    device: str | None = None,
    num_proc: int | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool = False,
) -> MiningEmbeddings:
    """The embeddings :func:`mine_negatives` ranks with, from (and into) the same cache entries.

    After a ``mine_negatives`` (or ``NeMo.mine``) of the same data with the same CLIP, nothing
    is embedded again and the model is not loaded; the arguments are that function's.

    >>> import tempfile
    >>> from datasets import Dataset, Features, Image, List, Value
    >>> from PIL import Image as PILImage
    >>> ds = Dataset.from_dict({"image": [PILImage.new("RGB", (8, 8), c) for c in ("red", "blue")],
    ...                         "image_id": [3, 1], "sentences": [["a red one", "the red"], ["blue"]]},
    ...                        features=Features({"image": Image(), "image_id": Value("int64"),
    ...                                           "sentences": List(Value("string"))}))
    >>> found = mining_embeddings(ds, ds, "nemo-hf/synthetic-clip", cache_dir=tempfile.mkdtemp())
    >>> found.pool_ids.tolist(), found.own_col.tolist(), found.row_of_sentence.tolist(), found.text.shape[0]
    ([1, 3], [1, 1, 0], [0, 0, 1], 3)
    """
    state = process_state()
    source = clip if isinstance(clip, ClipSource) else ClipSource.resolve(clip, processor)
    ds = _checked_inputs(ds, pool)
    sentences = _read_sentences(ds)
    index = _PoolIndex.of(pool, sentences)
    keys = _CacheKeys.of(source, ds, pool, index, None, "exact")
    pool_emb, query_emb, query_index, text_emb = _embed(
        source, ds, pool, sentences, index, keys, ArrayCache(cache_dir), state, image_batch_size=image_batch_size,
        text_batch_size=text_batch_size, device=resolve_device(device), num_proc=num_proc, progress=progress,
    )
    rows = np.repeat(np.arange(len(sentences.row_lengths)), sentences.row_lengths)
    starts = np.repeat(np.cumsum(sentences.row_lengths) - sentences.row_lengths, sentences.row_lengths)
    return MiningEmbeddings(sentences.texts, rows, np.arange(len(rows)) - starts, sentences.image_ids, text_emb,
                            index.pool_ids, index.pool_first_rows, pool_emb, query_emb, query_index, index.own_col)


def _embed_and_select(
    source: ClipSource, ds: Dataset, pool: Dataset, sentences: _Sentences, index: _PoolIndex, keys: _CacheKeys,
    cache: ArrayCache, rule: dict[str, Any], state: Any, *, image_batch_size: int, text_batch_size: int,
    device: Any, num_proc: int | None, progress: bool,
) -> Selection:
    """Embed the pool, the extra query images and the sentences (each from the cache when there), then select."""
    pool_emb, query_emb, query_index, text_emb = _embed(
        source, ds, pool, sentences, index, keys, cache, state, image_batch_size=image_batch_size,
        text_batch_size=text_batch_size, device=device, num_proc=num_proc, progress=progress,
    )
    selection = select_negatives(text_emb, query_emb, query_index, pool_emb, index.own_col, **rule,
                                 backend=keys.backend, device=device)
    if state.is_main_process:
        cache.put("selection", keys.selection, _selection_arrays(selection), keys.meta)
    return selection


def _embed(
    source: ClipSource, ds: Dataset, pool: Dataset, sentences: _Sentences, index: _PoolIndex, keys: _CacheKeys,
    cache: ArrayCache, state: Any, *, image_batch_size: int, text_batch_size: int, device: Any,
    num_proc: int | None, progress: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(pool, query images, each sentence's query row, sentences)`` embeddings, each from the cache when there."""

    def images_of(rows: Dataset) -> Any:
        return lambda: embed_images(
            *source.load(), rows, batch_size=image_batch_size, device=device,
            num_workers=num_proc if num_proc and num_proc > 1 else 0, progress=progress,
        )  # fmt: skip

    pool_emb = _embeddings(cache, "pool-images", keys.pool, images_of(pool.select(index.pool_first_rows)), keys.meta,
                           state)
    query_emb, query_index = pool_emb, np.where(index.in_pool, index.own_col, -1)
    if index.extra_ids.size:
        ds_ids, ds_first = np.unique(_column_numpy(ds, "image_id", "dataset"), return_index=True)
        rows = ds.select(ds_first[np.searchsorted(ds_ids, index.extra_ids)])
        extra_emb = _embeddings(cache, "images", keys.extra, images_of(rows), keys.meta, state)
        query_emb = np.concatenate([pool_emb, extra_emb])
        query_index[~index.in_pool] = len(index.pool_ids) + np.searchsorted(
            index.extra_ids, sentences.image_ids[~index.in_pool])
    text_emb = _embeddings(
        cache, "texts", keys.texts,
        lambda: embed_texts(*source.load(), sentences.texts, batch_size=text_batch_size, device=device,
                            progress=progress),
        keys.meta, state,
    )  # fmt: skip
    return pool_emb, query_emb, query_index, text_emb


def _with_negative_columns(ds: Dataset, sentences: _Sentences, pool_ids: np.ndarray, selection: Selection) -> Dataset:
    """``ds`` with ``negative_image_ids``, ``negative_scores`` and ``negative_fallback`` (one entry per sentence)."""
    negative_ids = np.where(selection.cols >= 0, pool_ids[np.maximum(selection.cols, 0)], -1)
    columns = negative_columns(
        sentences.row_lengths, negative_ids, selection.scores, selection.counts, selection.fallback
    )
    if len(ds):
        return concatenate_datasets([ds, columns], axis=1)
    # concatenate_datasets skips empty datasets, which would drop the new columns
    features = Features({**ds.features, **NEGATIVE_FEATURES})
    return Dataset.from_dict({name: [] for name in features}, features=features)
