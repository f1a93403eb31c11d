"""Open the split the explorer looks at: a Parquet folder, a ``save_to_disk`` folder, or a Hub dataset.

- a folder of Parquet configs, as ``dataset_scripts/build_refcoco.py --out`` writes it
  (``{config}/{split}-*.parquet`` and a card with a ``configs:`` block): ``config`` names one
  (optional when the folder holds one);
- a folder ``Dataset.save_to_disk`` (or ``DatasetDict.save_to_disk``) wrote;
- a Hub id (``me/refcoco``), read through the local cache when offline.

The split's rows must be the builder's: one per referred object, with ``image``,
``image_id``, ``mask`` and ``sentences`` (:func:`nemo_hf.load_refcoco`'s schema). Images stay
where ``datasets`` keeps them (memory-mapped Arrow, bytes undecoded): opening a split
decodes nothing.

>>> import tempfile
>>> import datasets
>>> folder = tempfile.mkdtemp()
>>> datasets.Dataset.from_dict({"image_id": [1], "sentences": [["a"]], "image": [None], "mask": [None]}
...                            ).save_to_disk(folder)
>>> len(open_split(folder))
1
>>> open_split(folder + "/missing")
Traceback (most recent call last):
...
FileNotFoundError: .../missing is not a folder here, and not a Hub dataset id (namespace/name) either: ...
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import datasets

__all__ = ["REQUIRED_COLUMNS", "open_split"]

REQUIRED_COLUMNS = ("image", "image_id", "mask", "sentences")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def open_split(source: str | os.PathLike[str], config: str | None = None, split: str = "train",
               cache_dir: str | None = None) -> datasets.Dataset:
    """One split of ``source`` (module docstring), checked to hold the columns mining and mosaics read."""
    path = Path(source).expanduser()
    if path.is_dir():
        if (path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file():
            loaded = datasets.load_from_disk(str(path))
            ds = _pick_split(loaded, split, str(path)) if isinstance(loaded, datasets.DatasetDict) else loaded
        else:
            ds = _from_configs(str(path), config, split, cache_dir)
    elif _HUB_ID.match(str(source)) and not path.exists():
        ds = _from_configs(str(source), config, split, cache_dir)
    else:
        raise FileNotFoundError(f"{source} is not a folder here, and not a Hub dataset id (namespace/name) either: "
                                "give a folder that build_refcoco.py --out or save_to_disk wrote, or a Hub id")
    missing = [column for column in REQUIRED_COLUMNS if column not in ds.column_names]
    if missing:
        raise ValueError(f"{source} (split {split!r}) has no column(s) {missing}; the explorer reads the builder's "
                         f"rows, one per referred object with {list(REQUIRED_COLUMNS)} (nemo_hf.load_refcoco, "
                         f"build_refcoco.py --out); it has {ds.column_names}")
    return ds


def _from_configs(source: str, config: str | None, split: str, cache_dir: str | None) -> datasets.Dataset:
    if config is None:
        names = datasets.get_dataset_config_names(source)
        if len(names) != 1:
            raise ValueError(f"{source} holds configs {names}: name one (--config)")
        config = names[0]
    loaded = datasets.load_dataset(source, config, cache_dir=cache_dir)
    return _pick_split(loaded, split, f"{source} (config {config})")


def _pick_split(loaded: datasets.DatasetDict, split: str, where: str) -> datasets.Dataset:
    if split not in loaded:
        raise ValueError(f"{where} has no split {split!r}; it has {sorted(loaded)} (--split)")
    return loaded[split]
