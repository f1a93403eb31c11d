"""Do the arms learn the mosaic task itself? Every evaluation sentence drawn once as a mosaic, and scored.

The mosaic arms train on mosaics half the time, but RIS scores them, as it should, on plain
pictures only. This check is the instrument behind that score: it draws every sentence of
the separate evaluation world (never mined or trained on) once as a 2×2 mosaic whose three
other cells are images of the same evaluation world — **random** ones, or the **oracle**'s
(look-alikes, none holding an object the expression fits: every label right) — and scores a
model on them:

- **right cell**: more than half of the predicted pixels lie in the target's cell (an empty
  prediction is not right). This is the part of the task a mosaic adds: which picture.
- **Prec@0.5** and **oIoU** against the target's mask in the mosaic: the right object too.

Both are split by the sentence's stratum (referring-hard: colour and category do not single
out its target). An arm that picks the right cell but not the right object learnt the
mosaic's easy part; one that scores low on both learnt neither.

    >>> import numpy as np
    >>> truth = np.zeros((1, 4, 4), bool); truth[0, 0, 0] = True  # the target: top-left pixel, cell 0
    >>> scores = score_predictions(truth.copy(), truth, target_cells=[0], referring_hard=[True], grid=2)
    >>> scores.right_cell.tolist(), summarise(scores)["all"]["precision@0.5"]
    ([True], 1.0)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

import datasets
import numpy as np

from nemo_hf.data.load import load_refcoco
from nemo_hf.data.meaning import referring_hard
from nemo_hf.experiment.miners import nemo_settings
from nemo_hf.experiment.settings import ExperimentSettings
from nemo_hf.experiment.world import World, image_dir
from nemo_hf.mining.oracle import MosaicCells, oracle_negatives
from nemo_hf.modeling.inputs import target_mask
from nemo_hf.modeling.loading import load_referring_segmenter
from nemo_hf.modeling.predictions import predict_masks
from nemo_hf.mosaic.layout import grid_layout
from nemo_hf.nemo.transform import NeMo

__all__ = ["NEGATIVES", "MosaicScores", "draw_mosaics", "score_model", "score_predictions", "summarise"]

NEGATIVES = ("random", "oracle")  # what fills a mosaic's other cells


@dataclass(frozen=True)
class MosaicScores:
    """One model's scores on the mosaics, one entry per evaluation sentence."""

    intersection: np.ndarray
    union: np.ndarray
    right_cell: np.ndarray  # more than half the predicted pixels in the target's cell
    referring_hard: np.ndarray


def draw_mosaics(world: World, settings: ExperimentSettings, out: Path,
                 negatives: Literal["random", "oracle"]) -> datasets.Dataset:
    """Every evaluation sentence as one mosaic at the trained input size, its other cells from the evaluation world.

    The same NeMo transform and settings the arms train with (position-aware placement
    included), every sample a mosaic, the grid's cross point at the centre. ``oracle``
    negatives are mined from the evaluation world's ground truth with the experiment's τ;
    ``random`` ones are drawn uniformly from its images.
    """
    if negatives not in NEGATIVES:
        raise ValueError(f"negatives must be one of {NEGATIVES}, got {negatives!r}")
    built = load_refcoco(settings.dataset, world.eval_root, image_dir(world.eval_root), cache_dir=out / "cache")
    rows = datasets.concatenate_datasets([built[split] for split in built])
    nemo = dataclasses.replace(nemo_settings(settings, out), mosaic_prob=1.0, warmup_epochs=0, cross_point_jitter=0.0,
                               random_share=1.0 if negatives == "random" else 0.0, cache_dir=None)
    if negatives == "oracle":
        cells = MosaicCells(grid=nemo.grid, size=nemo.size, resize=nemo.resize, cross_point_jitter=0.0)
        rows = oracle_negatives(rows, rows, top_k=nemo.top_k, needed=nemo.negatives_needed, tau=settings.oracle_tau,
                                seed=settings.seed, mosaic=cells)
    drawer = NeMo(pool=rows, **nemo.to_dict())
    return rows.map(drawer, batched=True, remove_columns=rows.column_names, desc=f"{negatives} mosaics of the "
                    "evaluation world")


def score_predictions(predicted: Sequence[np.ndarray] | np.ndarray, truths: Sequence[np.ndarray] | np.ndarray, *,
                      target_cells: Sequence[int], referring_hard: Sequence[bool], grid: int) -> MosaicScores:
    """Score boolean masks on square mosaics of ``grid × grid`` even cells against the targets' masks.

    >>> truth = np.zeros((1, 4, 4), bool); truth[0, 3, 3] = True  # cell 3
    >>> elsewhere = np.zeros((1, 4, 4), bool); elsewhere[0, 0, 0] = True  # cell 0
    >>> score_predictions(elsewhere, truth, target_cells=[3], referring_hard=[False], grid=2).right_cell.tolist()
    [False]
    """
    columns: dict[str, list[Any]] = {f.name: [] for f in fields(MosaicScores)}
    for mask, truth, cell, hard in zip(predicted, truths, target_cells, referring_hard, strict=True):
        if mask.shape != truth.shape or mask.shape[0] != mask.shape[1]:
            raise ValueError(f"a mosaic's prediction {mask.shape} and target {truth.shape} must be the same square")
        box = grid_layout(grid, mask.shape[0])[cell]
        inside = int(mask[box.top:box.bottom, box.left:box.right].sum())
        columns["intersection"].append(int((mask & truth).sum()))
        columns["union"].append(int((mask | truth).sum()))
        columns["right_cell"].append(bool(inside * 2 > int(mask.sum())))
        columns["referring_hard"].append(bool(hard))
    return MosaicScores(*(np.asarray(columns[f.name]) for f in fields(MosaicScores)))


def score_model(model_dir: str | Path, mosaics: datasets.Dataset, needs: dict[int, Any], *, grid: int,
                batch_size: int = 64) -> MosaicScores:
    """A segmenter's scores on ``mosaics`` (:func:`draw_mosaics`); ``needs`` maps each ``sent_id`` to its needs."""
    model, processor = load_referring_segmenter(model_dir)
    model.eval()
    parts = []
    for start in range(0, len(mosaics), batch_size):
        rows = mosaics.select(range(start, min(start + batch_size, len(mosaics))))
        predicted = predict_masks(model, processor, rows["image"], rows["sentence"], batch_size=batch_size)
        parts.append(score_predictions(predicted, [target_mask(mask) for mask in rows["mask"]],
                                       target_cells=rows["target_cell"], grid=grid,
                                       referring_hard=[referring_hard(needs[s]) for s in rows["sent_id"]]))
    return MosaicScores(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(MosaicScores)))


def summarise(scores: MosaicScores) -> dict[str, dict[str, float]]:
    """Right-cell rate, Prec@0.5 and oIoU, for all sentences, the referring-hard ones and the easy ones."""
    out = {}
    for name, keep in (("all", np.ones_like(scores.referring_hard, bool)), ("referring_hard", scores.referring_hard),
                       ("easy", ~scores.referring_hard)):
        if not keep.any():
            continue
        inter, union = scores.intersection[keep], scores.union[keep]
        iou = np.divide(inter, union, out=np.zeros(len(inter)), where=union > 0)
        out[name] = {"sentences": int(keep.sum()), "right_cell": float(scores.right_cell[keep].mean()),
                     "precision@0.5": float((iou >= 0.5).mean()), "overall_iou": float(inter.sum() / union.sum())}
    return out
