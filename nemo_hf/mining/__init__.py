"""Negative mining for NeMo: CLIP embeddings, exact similarity search, τ/top-K selection.

The pieces, each usable alone:

- :mod:`~nemo_hf.mining.clip` — which CLIP model, loaded lazily, with a cache key;
- :mod:`~nemo_hf.mining.device` — this process's place in a launch, and its device;
- :mod:`~nemo_hf.mining.embed` — batched, process-aware image and sentence embeddings;
- :mod:`~nemo_hf.mining.search` — exact chunked top-k (torch or FAISS);
- :mod:`~nemo_hf.mining.selection` — the τ/top-K rule with its fallback;
- :mod:`~nemo_hf.mining.report` — the difficulty report;
- :mod:`~nemo_hf.mining.mine` — all of it over a ``datasets.Dataset``, cached;
- :mod:`~nemo_hf.mining.oracle` — on synthetic data, miners that read the ground truth
  instead of CLIP (the oracle and its noisy versions), same output columns.

    >>> from nemo_hf.mining import mine_negatives, select_negatives
    >>> callable(mine_negatives) and callable(select_negatives)
    True
"""

from nemo_hf.mining.cache import ArrayCache, cache_key, default_cache_dir
from nemo_hf.mining.clip import DEFAULT_CLIP, ClipSource, check_clip, load_clip
from nemo_hf.mining.device import process_state, resolve_device
from nemo_hf.mining.embed import ImageDecodeError, decode_image, embed_images, embed_texts
from nemo_hf.mining.mine import (
    MINING_VERSION,
    NEGATIVE_COLUMNS,
    MiningEmbeddings,
    MiningResult,
    mine_negatives,
    mining_embeddings,
)
from nemo_hf.mining.oracle import MosaicCells, oracle_negatives
from nemo_hf.mining.report import DifficultyReport
from nemo_hf.mining.search import ChunkedSearch, SearchBlock, faiss_available, ranked_topk, resolve_backend
from nemo_hf.mining.selection import (
    Selection,
    SelectionStats,
    require_candidates,
    require_pool_candidates,
    select_negatives,
)

__all__ = [
    "DEFAULT_CLIP",
    "MINING_VERSION",
    "NEGATIVE_COLUMNS",
    "ArrayCache",
    "ChunkedSearch",
    "ClipSource",
    "DifficultyReport",
    "ImageDecodeError",
    "MiningEmbeddings",
    "MiningResult",
    "MosaicCells",
    "SearchBlock",
    "Selection",
    "SelectionStats",
    "cache_key",
    "check_clip",
    "decode_image",
    "default_cache_dir",
    "embed_images",
    "embed_texts",
    "faiss_available",
    "load_clip",
    "mine_negatives",
    "mining_embeddings",
    "oracle_negatives",
    "process_state",
    "ranked_topk",
    "require_candidates",
    "require_pool_candidates",
    "resolve_backend",
    "resolve_device",
    "select_negatives",
]
