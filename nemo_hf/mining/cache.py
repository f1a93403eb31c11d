"""An on-disk cache of named NumPy arrays, keyed by what produced them.

Each entry is a folder ``<root>/<kind>/<key>/`` of ``.npy`` files plus ``meta.json``,
written to a temporary folder and renamed into place, so a reader sees a whole entry or
none. Keys come from :func:`cache_key` over everything the arrays depend on (model name
and revision or weight digest, dataset fingerprint, settings, code version).

    >>> import tempfile
    >>> cache = ArrayCache(tempfile.mkdtemp())
    >>> key = cache_key("texts", "model-a", "fingerprint-1")
    >>> cache.get("texts", key) is None
    True
    >>> cache.put("texts", key, {"emb": np.ones((2, 3), np.float32)}, {"note": "demo"})
    >>> cache.get("texts", key)["emb"].shape
    (2, 3)
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ArrayCache", "cache_key", "default_cache_dir"]


def default_cache_dir() -> Path:
    """``$NEMO_HF_CACHE/mining`` if set, else ``$HF_HOME/nemo_hf/mining`` (``~/.cache/huggingface``).

    >>> default_cache_dir().name
    'mining'
    """
    if os.environ.get("NEMO_HF_CACHE"):
        return Path(os.environ["NEMO_HF_CACHE"]) / "mining"
    hf_home = os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface")
    return Path(hf_home) / "nemo_hf" / "mining"


def cache_key(*parts: Any) -> str:
    """A stable hex key for JSON-serialisable ``parts`` (order matters).

    >>> cache_key("a", 1, None) == cache_key("a", 1, None) != cache_key("a", 2, None)
    True
    """
    payload = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(payload).hexdigest()[:32]


class ArrayCache:
    """Atomic folder-per-entry store of ``.npy`` arrays; ``root=None`` uses the default."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root) if root is not None else default_cache_dir()

    def path(self, kind: str, key: str) -> Path:
        """The folder of one entry."""
        return self.root / kind / key

    def get(self, kind: str, key: str) -> dict[str, np.ndarray] | None:
        """The arrays of an entry, or ``None`` when it is absent."""
        folder = self.path(kind, key)
        meta = folder / "meta.json"
        if not meta.is_file():
            return None
        names = json.loads(meta.read_text())["arrays"]
        return {name: np.load(folder / f"{name}.npy", allow_pickle=False) for name in names}

    def put(self, kind: str, key: str, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        """Store an entry; an entry already present (from a concurrent writer) is kept."""
        target = self.path(kind, key)
        if target.exists():
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=target.parent))
        try:
            for name, array in arrays.items():
                np.save(staging / f"{name}.npy", np.ascontiguousarray(array), allow_pickle=False)
            (staging / "meta.json").write_text(json.dumps({**meta, "arrays": sorted(arrays)}, indent=1, default=str))
            os.replace(staging, target)
        except OSError:
            if not target.exists():
                raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
