"""Does a CLIP read what the synthetic world's sentences say? Its gate, measured on a mining pool.

A miner can only choose negatives "similar but not matching" in the ways its CLIP can see.
On a synthetic world every pool image's objects are known, so for each training sentence
the pool splits into images that hold what the sentence states and images that do not, and
the CLIP's text→image cosines can be scored as a classifier of that split (ROC AUC: the
chance that an image holding it scores above one that does not, ties counting half):

- ``category``: images holding an object of the sentence's category, against the rest;
- ``colour``: the same for its colour;
- ``size_given_category_colour``: among images holding an object of the sentence's category
  *and* colour, those where one such object also has its size class, against the rest: can
  the CLIP tell "the small red circle" from a large red circle?

Each figure is the mean over the sentences that state the attribute (and have both kinds of
image in the pool), each sentence's own image left out. Beside them, own-image R@1: how
often the sentence's own image is the pool's most similar (chance ``1 / pool size``).

:data:`GATES` is what the fair test of NeMo asks of the CLIP its ``nemo`` arm mines with.
:func:`attribute_aucs` works on embeddings and objects alone, so it can be checked against
a brute-force count; :func:`clip_reading` embeds a dataset with a CLIP and applies it.

>>> import numpy as np
>>> from nemo_hf.data.meaning import SceneObject, make_meaning
>>> objects = [[SceneObject("ring", "red", "small", 5, 5)], [SceneObject("star", "red", "large", 5, 5)],
...            [SceneObject("ring", "blue", "large", 5, 5)]]
>>> text = np.array([[1.0, 0.0]])                       # a text direction that means "ring"
>>> pool = np.array([[0.9, 0.1], [0.1, 0.9], [0.8, 0.2]])  # images 0 and 2 hold rings
>>> reading = attribute_aucs(text, pool, [make_meaning(category="ring")], objects, own_col=np.array([-1]))
>>> reading["category"], reading["sentences"]["category"], reading["own_image_r1"] is None
(1.0, 1, True)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import datasets
import numpy as np

from nemo_hf.data.ground_truth import image_objects, sentence_meanings
from nemo_hf.data.meaning import SceneObject
from nemo_hf.mining.mine import mining_embeddings

__all__ = ["GATES", "READING_NAMES", "attribute_aucs", "clip_reading", "gate_line", "passes"]

GATES = {"category": 0.85, "colour": 0.85, "size_given_category_colour": 0.65}
"""The least AUC each reading needs: the fair test's gate for the CLIP of its ``nemo`` arm."""

READING_NAMES = {"category": "category", "colour": "colour", "size_given_category_colour": "size given category and colour"}
"""Each reading as a sentence names it."""


def _auc(scores: np.ndarray, positive: np.ndarray) -> float | None:
    """ROC AUC of ``scores`` for ``positive`` (ties count half); None without both classes."""
    pos, neg = np.sort(scores[positive]), np.sort(scores[~positive])
    if not len(pos) or not len(neg):
        return None
    below = np.searchsorted(neg, pos, side="left")
    tied = np.searchsorted(neg, pos, side="right") - below
    return float((below + 0.5 * tied).sum() / (len(pos) * len(neg)))


def _holds(objects: Sequence[Sequence[SceneObject]], **fields: str) -> np.ndarray:
    """Per pool image: whether one of its objects has every given field value."""
    return np.array([any(all(getattr(o, f) == v for f, v in fields.items()) for o in image) for image in objects])


def attribute_aucs(
    text: np.ndarray, pool: np.ndarray, meanings: Sequence[Mapping[str, Any]],
    objects: Sequence[Sequence[SceneObject]], own_col: np.ndarray,
) -> dict[str, Any]:
    """The readings of the module docstring from L2-normalised embeddings.

    ``text[i]`` embeds the sentence of meaning ``meanings[i]``, whose own image is pool column
    ``own_col[i]`` (-1: not in the pool); ``pool[c]`` embeds the image whose objects are
    ``objects[c]``.
    """
    cosines = text @ pool.T
    keep = np.ones(len(pool), dtype=bool)
    found: dict[str, list[float]] = {name: [] for name in GATES}
    memo: dict[tuple, np.ndarray] = {}

    def holds(**fields: str) -> np.ndarray:
        key = tuple(sorted(fields.items()))
        if key not in memo:
            memo[key] = _holds(objects, **fields)
        return memo[key]

    for i, meaning in enumerate(meanings):
        keep[:] = True
        if own_col[i] >= 0:
            keep[own_col[i]] = False
        category, colour, size = meaning.get("category"), meaning.get("colour"), meaning.get("size")
        splits = {}
        if category is not None:
            splits["category"] = (keep, holds(category=category))
        if colour is not None:
            splits["colour"] = (keep, holds(colour=colour))
        if None not in (category, colour, size):
            splits["size_given_category_colour"] = (keep & holds(category=category, colour=colour),
                                                    holds(category=category, colour=colour, size=size))
        for name, (among, positive) in splits.items():
            if (auc := _auc(cosines[i][among], positive[among])) is not None:
                found[name].append(auc)
    in_pool = own_col >= 0
    top = cosines[in_pool].argmax(axis=1)
    reading: dict[str, Any] = {name: float(np.mean(v)) if v else None for name, v in found.items()}
    reading["sentences"] = {name: len(v) for name, v in found.items()}
    reading["own_image_r1"] = float(np.mean(top == own_col[in_pool])) if in_pool.any() else None
    reading["chance_r1"] = 1 / len(pool)
    return reading


def passes(reading: Mapping[str, Any], gates: Mapping[str, float] = GATES) -> dict[str, bool]:
    """Each gate: whether the reading reaches it (a reading with no sentences fails).

    >>> passes({"category": 0.9, "colour": 0.99, "size_given_category_colour": None})
    {'category': True, 'colour': True, 'size_given_category_colour': False}
    """
    return {name: reading.get(name) is not None and reading[name] >= least for name, least in gates.items()}


def _pool_objects(pool: datasets.Dataset, pool_ids: np.ndarray) -> list[list[SceneObject]]:
    """Every pool image's objects, in the order of ``pool_ids``; an error names an image without them."""
    image_ids, frames = image_objects(pool, "mining pool")
    by_id = {image_id: objects for image_id, (objects, _) in zip(image_ids.tolist(), frames, strict=True)}
    return [by_id[image_id] for image_id in pool_ids.tolist()]


def clip_reading(ds: datasets.Dataset, clip: str, *, cache_dir: str | None = None,
                 pool: datasets.Dataset | None = None) -> dict[str, Any]:
    """The readings of ``clip`` for every sentence of ``ds`` against the images of ``pool`` (default: ``ds``).

    ``ds`` and ``pool`` are synthetic rows (with ``meaning`` and ``scene_objects``), as a NeMo
    mining pool is; the embeddings are the miner's own (and share its cache).
    """
    pool = ds if pool is None else pool
    found = mining_embeddings(ds, pool, clip, cache_dir=cache_dir, progress=True)
    objects = _pool_objects(pool, found.pool_ids)
    reading = attribute_aucs(found.text, found.pool, sentence_meanings(ds, "dataset"), objects, found.own_col)
    reading["gates"] = passes(reading)
    return reading


def gate_line(reading: Mapping[str, Any]) -> str:
    """One line saying what a reading is against each gate, as the demo and the benchmark print it.

    >>> gate_line({"category": 0.8, "colour": 0.95, "size_given_category_colour": 0.68,
    ...            "own_image_r1": 0.11, "chance_r1": 1 / 1200})
    'the mining CLIP on this pool: category 0.800 (gate 0.85: fails), colour 0.950 (gate 0.85: passes), size given category and colour 0.680 (gate 0.65: passes); own-image R@1 0.1100 (132× chance)'
    """
    verdicts = passes(reading)
    parts = [f"{READING_NAMES[name]} " + ("—" if reading.get(name) is None else f"{reading[name]:.3f}")
             + f" (gate {least:g}: {'passes' if verdicts[name] else 'fails'})" for name, least in GATES.items()]
    line = "the mining CLIP on this pool: " + ", ".join(parts)
    if reading.get("own_image_r1") is not None:
        line += f"; own-image R@1 {reading['own_image_r1']:.4f} ({reading['own_image_r1'] / reading['chance_r1']:.0f}× chance)"
    return line
