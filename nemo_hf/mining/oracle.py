"""Miners that read the ground truth instead of CLIP: their mistakes can be counted.

On a synthetic world (:mod:`nemo_hf.synthetic`) every sentence's meaning and every
image's objects are known (:mod:`nemo_hf.data.ground_truth`). The **oracle** scores each
pool image for a sentence by how much of the sentence's meaning the image's best object
matches: the share of the stated fields (category, colour, size, column, row, extreme,
relation) it satisfies, positions judged in that image's own frame. The ranking uses
that score. An image whose objects the expression fits would make a mosaic's label wrong
(a false negative), so, as CLIP mining does with its τ, those are dropped first:

- candidates are the pool's distinct images other than the sentence's own;
- each gets a *fit score*: 1 where the expression could fit one of its objects, else its
  score; those with a fit score of ``tau`` or more are dropped (``tau=1.0`` drops exactly
  the images that could hold a false negative; ``None`` keeps them);
- the rest are ranked by score, ties in a seeded random order (many images share a
  score), and the first ``top_k`` kept; when fewer than ``needed`` survive, the list is
  filled from the lowest-scoring candidates and the sentence flagged as a fallback.

"Could fit" is judged where the image will be seen: in a mosaic cell. Pasted into a
2×2 mosaic, an object in the middle of its own image lands in the left or right third of
the canvas, a relation may find its landmark in another cell and an extreme may beat the
objects of other cells. With ``mosaic`` (:class:`MosaicCells`, NeMo's grid, size and
resize) an image could fit when some object has the stated appearance and can reach the
stated column and row from some cell (relations and extremes are taken to be
satisfiable): no drawn mosaic then holds a false negative. ``mosaic=None`` judges each
image in its own frame only, which leaves some.

The **noisy oracle** (``noise=σ``) ranks and thresholds ``score + σ·N(0, 1)`` instead:
from σ = 0 (the oracle) to σ → ∞ (random negatives), with what it gets wrong measurable
against the truth (:mod:`nemo_hf.nemo.audit`). The output columns are those of
:func:`~nemo_hf.mining.mine_negatives`, so ``NeMo`` draws mined mosaics from them unchanged.

>>> import tempfile, pathlib
>>> from nemo_hf.synthetic import make_refer_dataset
>>> from nemo_hf.data import load_refcoco
>>> work = pathlib.Path(tempfile.mkdtemp())
>>> tree = make_refer_dataset(work / "refer", 24, datasets=("refcoco",))
>>> train = load_refcoco("refcoco_unc", tree.root, tree.image_dir, split="train", cache_dir=work / "cache")
>>> mined = oracle_negatives(train, train, top_k=4)
>>> ids, scores = mined[0]["negative_image_ids"][0], mined[0]["negative_scores"][0]
>>> len(ids), max(scores) < 1.0, train[0]["image_id"] in ids
(4, True, False)
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
from datasets import Dataset, Features, concatenate_datasets

from nemo_hf.data.ground_truth import scene_frames, sentence_meanings
from nemo_hf.data.meaning import COLUMNS, ROWS, column_of, row_of
from nemo_hf.data.scene_batch import SceneBatch, could_fit, match_scores
from nemo_hf.mining.mine import (
    NEGATIVE_COLUMNS,
    NEGATIVE_FEATURES,
    negative_columns,
    require_split,
)
from nemo_hf.mining.selection import require_candidates, require_pool_candidates
from nemo_hf.mosaic.cells import Resize, cell_geometry
from nemo_hf.mosaic.layout import check_grid, grid_layout

__all__ = ["NOISE_SWEEP", "MosaicCells", "OracleRanking", "oracle_negatives", "oracle_rankings", "reachable_positions"]

NOISE_SWEEP = (0.25, 0.75, 1.5)
"""σ values of the noisy oracle's sweep: from a miner that rarely errs to one near random."""


@dataclass(frozen=True)
class MosaicCells:
    """The mosaics negatives will be drawn into (NeMo's ``grid``, ``size``, ``resize``, ``cross_point_jitter``).

    >>> MosaicCells(grid=3).grid
    3
    """

    grid: int = 2
    size: int = 480
    resize: Resize = "stretch"
    cross_point_jitter: float = 0.0

    def __post_init__(self) -> None:
        check_grid(self.grid)
        if self.size < 2 * self.grid or self.resize not in ("stretch", "letterbox"):
            raise ValueError(f"MosaicCells: size must be >= 2 * grid and resize 'stretch' or 'letterbox', got {self}")


_ALL_THIRDS = 0b111


def reachable_positions(batch: SceneBatch, cells: MosaicCells) -> tuple[np.ndarray, np.ndarray]:
    """Bit sets of the canvas columns and rows each object can land in, over every cell.

    A moved cross point can put any object anywhere, so with ``cross_point_jitter > 0``
    every third is reachable.

    >>> from nemo_hf.data.meaning import SceneObject
    >>> batch = SceneBatch.from_frames([1], [([SceneObject("ring", "red", "small", 90, 50)], (100, 100))])
    >>> columns, rows = reachable_positions(batch, MosaicCells(size=200))
    >>> [c for bit, c in enumerate(("left", "middle", "right")) if columns[0, 0] >> bit & 1]
    ['middle', 'right']
    """
    shape = batch.present.shape
    if cells.cross_point_jitter > 0:
        return np.full(shape, _ALL_THIRDS, np.int16), np.full(shape, _ALL_THIRDS, np.int16)
    boxes = grid_layout(cells.grid, cells.size)
    columns, rows = np.zeros(shape, np.int16), np.zeros(shape, np.int16)
    for i in range(len(batch)):
        width, height = float(batch.width[i]), float(batch.height[i])
        for c in range(cells.grid):
            # column c of the grid (its top cell) and row c (its left cell)
            for box, axis in ((boxes[c], "x"), (boxes[c * cells.grid], "y")):
                geometry = cell_geometry((max(1, round(width)), max(1, round(height))), box.size, cells.resize)
                if axis == "x":
                    xs = box.left + geometry.offset[0] + batch.x[i] * geometry.content_size[0] / width
                    codes = [COLUMNS.index(column_of(x, cells.size)) for x in xs]
                    columns[i] |= np.left_shift(1, codes).astype(np.int16)
                else:
                    ys = box.top + geometry.offset[1] + batch.y[i] * geometry.content_size[1] / height
                    codes = [ROWS.index(row_of(y, cells.size)) for y in ys]
                    rows[i] |= np.left_shift(1, codes).astype(np.int16)
    return columns, rows


@dataclass(frozen=True)
class OracleRanking:
    """Chosen negatives per sentence: pool columns, their ranking scores, counts, fallback flags.

    Row ``i`` holds sentence ``i``'s first ``counts[i]`` picks (``cols`` -1 and ``scores``
    NaN after them), best first.
    """

    cols: np.ndarray  # (n, max(top_k, needed)) int64
    scores: np.ndarray  # (n, max(top_k, needed)) float32
    counts: np.ndarray  # (n,) int
    fallback: np.ndarray  # (n,) bool


def oracle_rankings(
    meanings: list[dict],
    own_cols: np.ndarray,
    pool: SceneBatch,
    *,
    top_k: int,
    needed: int,
    tau: float | None = 1.0,
    noise: float = 0.0,
    seed: int = 0,
    reachable: tuple[np.ndarray, np.ndarray] | None = None,
) -> OracleRanking:
    """The oracle's choice for each meaning against the frames of ``pool``.

    ``own_cols[i]`` is the pool index of sentence ``i``'s own image (-1 if not in the pool).
    ``reachable`` (:func:`reachable_positions`) makes the fit score mosaic-aware; without
    it an image's fit score is its score. One generator seeded with ``seed`` draws, per
    sentence in order, the noise (when ``noise > 0``; the same draw shifts the score and
    the fit score) and the tie-breaking order, so the same inputs give the same choice.

    >>> from nemo_hf.data.meaning import SceneObject, make_meaning
    >>> frames = [([SceneObject("ring", c, "small", 10, 10)], (100, 100)) for c in ("red", "red", "blue", "green")]
    >>> pool = SceneBatch.from_frames([1, 2, 3, 4], frames)
    >>> picks = oracle_rankings([make_meaning(category="ring", colour="red")], np.array([0]), pool, top_k=3, needed=1)
    >>> sorted(picks.cols[0, :picks.counts[0]].tolist()), picks.scores[0, :2].tolist()
    ([2, 3], [0.5, 0.5])
    """
    if not isinstance(top_k, int) or top_k < 1 or not isinstance(needed, int) or needed < 0:
        raise ValueError(f"top_k must be an integer >= 1 and needed >= 0, got top_k={top_k!r}, needed={needed!r}")
    if not (isinstance(noise, (int, float)) and noise >= 0):
        raise ValueError(f"noise must be a non-negative number (σ of the Gaussian added to scores), got {noise!r}")
    n, n_pool = len(meanings), len(pool)
    width = max(top_k, needed)
    cols = np.full((n, width), -1, dtype=np.int64)
    scores = np.full((n, width), np.nan, dtype=np.float32)
    counts = np.zeros(n, dtype=np.int64)
    fallback = np.zeros(n, dtype=bool)
    rng = np.random.default_rng(seed)
    cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # many sentences state the same thing
    everyone = np.ones(n_pool, dtype=bool)
    for i, meaning in enumerate(meanings):
        key = json.dumps(meaning, sort_keys=True)
        if key not in cache:
            score = match_scores(meaning, pool).image_scores()
            fit = score if reachable is None else np.where(could_fit(meaning, pool, *reachable), 1.0, score)
            cache[key] = score, fit
        score, fit = cache[key]
        shift = noise * rng.standard_normal(n_pool) if noise > 0 else 0.0
        ranking = score + shift
        ties = rng.random(n_pool)
        candidates = everyone.copy()
        if own_cols[i] >= 0:
            candidates[own_cols[i]] = False
        kept = candidates & (fit + shift < tau) if tau is not None else candidates
        idx = np.flatnonzero(kept)
        chosen = idx[np.lexsort((ties[idx], -ranking[idx]))][:top_k]
        if len(chosen) < needed:
            rest = np.flatnonzero(candidates & ~np.isin(np.arange(n_pool), chosen))
            least = rest[np.lexsort((ties[rest], ranking[rest]))][: needed - len(chosen)]
            both = np.concatenate([chosen, least])
            chosen = both[np.lexsort((ties[both], -ranking[both]))]
            fallback[i] = True
        cols[i, : len(chosen)] = chosen
        scores[i, : len(chosen)] = ranking[chosen]
        counts[i] = len(chosen)
    return OracleRanking(cols, scores, counts, fallback)


def oracle_negatives(
    ds: Dataset,
    pool: Dataset,
    *,
    top_k: int = 20,
    needed: int = 3,
    tau: float | None = 1.0,
    noise: float = 0.0,
    seed: int = 0,
    mosaic: MosaicCells | None = MosaicCells(),
) -> Dataset:
    """``ds`` with ``negative_image_ids``, ``negative_scores``, ``negative_fallback`` from the oracle.

    Args:
        ds: rows per referred object with ``sentences``, ``image_id`` and ``meaning`` (one
            per sentence), as the RefCOCO builder makes them from a synthetic tree.
            Existing negative columns are replaced.
        pool: rows with ``image_id``, ``width``, ``height`` and ``scene_objects``; each
            distinct image is one candidate.
        top_k, needed: keep the best ``top_k``; fall back below ``needed`` (a mosaic's negatives).
        tau: drop candidates whose fit score is ``tau`` or more (``1.0``: the ones the
            expression could fit); ``None`` keeps every candidate.
        noise: σ of the Gaussian added to every score before thresholding and ranking
            (the noisy oracle; :data:`NOISE_SWEEP`); 0 for the oracle itself.
        seed: seeds the noise and the order among equal scores.
        mosaic: the mosaics the negatives go into (:class:`MosaicCells`; give NeMo's
            settings), so "could fit" is judged in any of their cells; ``None`` judges
            each image in its own frame only.

    ``negative_scores`` are the scores the ranking used (noisy ones for the noisy oracle).
    """
    require_split(ds, "dataset")
    require_split(pool, "pool")
    if "sentences" not in ds.column_names or "image_id" not in ds.column_names:
        raise ValueError(f"the dataset needs columns sentences and image_id (it has {ds.column_names})")
    ds = ds.remove_columns([c for c in NEGATIVE_COLUMNS if c in ds.column_names])
    frames = scene_frames(pool, "pool")
    meanings = sentence_meanings(ds)
    table = ds.select_columns(["sentences", "image_id"]).with_format("arrow")[:]
    lengths = np.asarray([len(s or []) for s in table.column("sentences").to_pylist()], dtype=np.int64)
    own_ids = np.repeat(table.column("image_id").to_numpy(), lengths)
    in_pool = np.isin(own_ids, frames.image_ids)
    own_cols = np.where(in_pool, np.searchsorted(frames.image_ids, own_ids), -1)
    if len(meanings):
        require_pool_candidates(len(frames), bool(np.any(in_pool)), needed)
    if needed > top_k:
        require_candidates(top_k, needed, f"top_k={top_k} keeps", "raise top_k")
    reachable = None if mosaic is None else reachable_positions(frames, mosaic)
    picks = oracle_rankings(
        meanings, own_cols, frames, top_k=top_k, needed=needed, tau=tau, noise=noise, seed=seed, reachable=reachable
    )
    image_ids = np.where(picks.cols >= 0, frames.image_ids[np.maximum(picks.cols, 0)], -1)
    columns = negative_columns(lengths, image_ids, picks.scores, picks.counts, picks.fallback)
    if len(ds):
        return concatenate_datasets([ds, columns], axis=1)
    features = Features({**ds.features, **NEGATIVE_FEATURES})
    return Dataset.from_dict({name: [] for name in features}, features=features)
