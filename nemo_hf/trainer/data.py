"""The data of a run: load the splits, and build the training set for an augmentation.

:func:`load_splits` reads the chosen source (refer files, a Hub or Parquet copy, or a
synthetic tree) as the dataset stores it: one row per referred object (or one per
sentence for an already-augmented copy). :func:`as_sentences` gives the per-sentence view
that evaluation scores.

:func:`build_train_dataset` is the one place where training meets NeMo. It takes NeMo's
settings whole (:class:`~nemo_hf.nemo.settings.NeMoSettings`) and changes only what an
augmentation means. Every augmentation trains on the same rows, one per referred object,
and draws **one of the object's sentences per epoch** (seeded by seed, epoch and ref_id),
as LAVT and CRIS iterate RefCOCO; the three differ only in the picture:

- ``"none"`` — the object's own image (NeMo with ``mosaic_prob=0``: the ablation baseline,
  through the same decoding and stretching as the mosaics);
- ``"random"`` — mosaics with random negatives (``random_share=1.0``; no CLIP);
- ``"nemo"`` — mosaics with CLIP-mined negatives (``nemo.mine``), or with the negatives
  the rows already carry (a training set pushed by ``train.py --push_dataset_to_hub`` or
  ``mine_negatives.py --push``, or mined by any other miner): then no CLIP is loaded, and
  ``clip_model`` and the mining settings do not apply (the rows' source records those).

Pictures are drawn on the fly (``nemo.attach``: a fresh sample at every access, from a
generator seeded by (seed, epoch, ref_id, sent_id)), so the same run on 1 or N processes,
or resumed mid-epoch, sees the same samples. The returned ``set_epoch`` must be called
before each epoch; NeMo keeps the epoch in shared memory, so persistent DataLoader
workers follow it.

    >>> import datasets, numpy as np
    >>> from PIL import Image
    >>> from nemo_hf.nemo.settings import NeMoSettings
    >>> rows = datasets.Dataset.from_dict({
    ...     "image": [Image.new("RGB", (40, 30))] * 2, "mask": [Image.fromarray(np.eye(30, 40, dtype=bool))] * 2,
    ...     "sentences": [["a", "b"], ["c"]], "sent_ids": [[0, 1], [2]], "ref_id": [0, 1], "image_id": [5, 6]})
    >>> train = build_train_dataset(rows, "none", NeMoSettings(), input_size=64)
    >>> train.set_epoch(1)
    >>> train.dataset[1]["image"].size, train.dataset[1]["sentence"], train.dataset[1]["mosaic_kind"]
    ((64, 64), 'c', 'single')
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ContextManager

import datasets

from nemo_hf.data.configs import check_split, get_variant
from nemo_hf.data.load import load_refcoco, per_sentence
from nemo_hf.nemo.settings import NeMoSettings
from nemo_hf.nemo.transform import NeMo
from nemo_hf.trainer.args import DataArguments

__all__ = ["TrainData", "as_sentences", "build_train_dataset", "load_splits", "synthetic_tree_root"]


def synthetic_tree_root(data: DataArguments) -> Path:
    """Where the synthetic tree of ``data`` lives: one folder per (dataset, size, seed, world settings)."""
    base = Path(data.cache_dir) if data.cache_dir else Path(datasets.config.HF_DATASETS_CACHE) / "nemo_hf"
    folder = get_variant(data.dataset_name).folder.replace("+", "plus")
    world = [list(data.synthetic_image_size), data.synthetic_object_scale, list(data.synthetic_distractor_levels)]
    knobs = [list(data.synthetic_objects_per_image), data.synthetic_same_colour_prob, data.synthetic_separated_sizes]
    if knobs != [[2, 6], None, False]:  # the world knobs added later: the folders of trees made before keep their names
        world += knobs
    tag = "" if world == [[320, 240], 1.0, [1.0, 1.0, 1.0, 1.0]] else "-" + hashlib.sha256(
        json.dumps(world).encode()).hexdigest()[:10]
    return base / f"synthetic-{folder}-{data.synthetic_images}-seed{data.synthetic_seed}{tag}"


def _synthetic_source(data: DataArguments) -> tuple[Path, Path]:
    from nemo_hf.synthetic.tree import SyntheticRefer, make_refer_dataset

    root = synthetic_tree_root(data)
    folder = get_variant(data.dataset_name).folder
    if not root.exists():
        make_refer_dataset(
            root, num_images=data.synthetic_images, seed=data.synthetic_seed, datasets=(folder,),
            image_size=tuple(data.synthetic_image_size), object_scale=data.synthetic_object_scale,
            distractor_levels=tuple(data.synthetic_distractor_levels),
            objects_per_image=tuple(data.synthetic_objects_per_image),
            same_colour_prob=data.synthetic_same_colour_prob, separated_sizes=data.synthetic_separated_sizes,
        )
    tree = SyntheticRefer(root, num_images=data.synthetic_images, datasets=(folder,))
    return tree.root, tree.image_dir


def load_splits(data: DataArguments, splits: Sequence[str]) -> dict[str, datasets.Dataset]:
    """The requested splits of the configured source, as stored (per object or per sentence).

    Call it under ``accelerator.main_process_first()``: the first process builds the cache
    (and the synthetic tree), the others read it.
    """
    wanted = list(dict.fromkeys(splits))
    if data.hub_dataset is not None:
        loaded = datasets.load_dataset(data.hub_dataset, data.dataset_name, cache_dir=data.cache_dir)
        missing = [split for split in wanted if split not in loaded]
        if missing:
            raise ValueError(
                f"{data.hub_dataset} (config {data.dataset_name!r}) has no split(s) {missing}; "
                f"it has {sorted(loaded)}"
            )
        return {split: loaded[split] for split in wanted}

    variant = get_variant(data.dataset_name)
    for split in wanted:
        check_split(variant, split)
    if data.synthetic_images > 0:
        data_dir, image_dir = _synthetic_source(data)
    else:
        data_dir, image_dir = Path(str(data.data_dir)), Path(str(data.image_dir))
    built = load_refcoco(
        data.dataset_name, data_dir, image_dir, cache_dir=data.cache_dir, verify_images=data.verify_images
    )
    return {split: built[split] for split in wanted}


def as_sentences(ds: datasets.Dataset, limit: int | None = None) -> datasets.Dataset:
    """One row per expression (``nemo_hf.per_sentence`` unless already so); the first ``limit`` rows."""
    if "sentence" not in ds.column_names:
        if "sentences" not in ds.column_names:
            raise ValueError(
                f"rows need 'sentence' or 'sentences' (the nemo_hf RefCOCO schema); columns are {ds.column_names}"
            )
        ds = per_sentence(ds)
    return ds.select(range(min(limit, len(ds)))) if limit is not None else ds


@dataclass
class TrainData:
    """The training rows (``image``, ``mask``, ``sentence``, … at every access) and the per-epoch hook.

    ``transform`` is the :class:`~nemo_hf.nemo.transform.NeMo` that draws them (its
    ``settings`` are the run's). For ``"nemo"`` also the rows with their negatives (``mined``:
    one per referred object, as stored, plus ``negative_image_ids``, ``negative_scores``,
    ``negative_fallback``), the mining's difficulty ``report``, and whether the negatives
    came with the data (``premined``) rather than from mining here.
    """

    dataset: datasets.Dataset
    set_epoch: Callable[[int], None]
    transform: NeMo
    mined: datasets.Dataset | None = None
    report: Any = None
    premined: bool = False


def build_train_dataset(
    train: datasets.Dataset,
    augmentation: str,
    nemo: NeMoSettings,
    *,
    clip_model: str | None = None,
    limit: int | None = None,
    input_size: int = 352,
    main_process_first: Callable[[], ContextManager[Any]] = contextlib.nullcontext,
) -> TrainData:
    """The training rows for ``augmentation`` (``"none"``, ``"random"`` or ``"nemo"``; see the module docstring).

    ``train`` is the split as :func:`load_splits` returns it and also the pool of
    negatives; ``limit`` keeps its first rows; ``nemo`` are NeMo's settings, forwarded whole
    (``size`` None becomes ``input_size``, the model's input side, so a picture is resampled
    once); ``clip_model`` mines ``"nemo"``'s negatives unless the rows carry them. Mining is
    collective in a distributed run: call this on every process, outside
    ``main_process_first``, and pass ``accelerator.main_process_first`` instead: the pool's
    shrunk copies (``thumbnail_cells``) are then made once, by the main process, and read
    from the datasets cache by the others.
    """
    if augmentation not in ("none", "random", "nemo"):
        raise ValueError(f"augmentation must be 'none', 'random' or 'nemo', got {augmentation!r}")
    rows = train.select(range(min(limit, len(train)))) if limit is not None else train
    settings = replace(nemo, size=nemo.size or input_size)
    if augmentation == "none":
        return _attached(NeMo(pool=rows, **replace(settings, mosaic_prob=0.0).to_dict()), rows, main_process_first)
    if augmentation == "random":
        return _attached(NeMo(pool=rows, **replace(settings, random_share=1.0).to_dict()), rows, main_process_first)
    # rows mined elsewhere (a pushed training set, another miner) carry their negatives: no CLIP here; the pool
    # is the whole split the negatives were chosen from, even when ``limit`` keeps fewer rows
    premined = "negative_image_ids" in rows.column_names
    nemo_transform = NeMo(pool=train if premined else rows, clip=clip_model, **settings.to_dict())
    mined = rows if premined else nemo_transform.mine(rows)
    attached = _attached(nemo_transform, mined, main_process_first)
    return TrainData(attached.dataset, attached.set_epoch, nemo_transform, mined=mined,
                     report=nemo_transform.last_report, premined=premined)


def _attached(nemo: NeMo, rows: datasets.Dataset, main_process_first: Callable[[], ContextManager[Any]]) -> TrainData:
    with main_process_first():  # attach() makes the pool's shrunk copies: once, then from the cache
        return TrainData(nemo.attach(rows), nemo.set_epoch, nemo)
