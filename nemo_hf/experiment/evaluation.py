"""Scoring an arm: every evaluation sentence predicted by its final model, kept per sentence for paired statistics.

Per sentence: the pixel intersection and union with the target (oIoU, mIoU, Prec@X), which
annotated object of the image the prediction chose (the object-accuracy outcome: target,
same-category distractor, other object, none — :mod:`nemo_hf.metrics.objects`), whether the
sentence is **referring-hard** (it needs more than category and colour to single out its
target: the stratum NeMo is meant to help) and its distractor count. The per-sentence
arrays are what :mod:`nemo_hf.experiment.statistics` resamples; the metrics are computed
from them by the project's own accumulators, per stratum.

    >>> scores = SentenceScores(np.array([5, 0]), np.array([10, 8]), np.array([0, 1]), np.array([True, False]),
    ...                         np.array([2, 0]), np.array([6, 3]))
    >>> scores.correct.tolist(), scores.select(scores.referring_hard).intersection.tolist()
    ([True, False], [5])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from nemo_hf.data.meaning import referring_hard
from nemo_hf.metrics.objects import TARGET, ObjectMetrics, object_outcomes
from nemo_hf.metrics.protocol import REFERRING_HARD, group_labels
from nemo_hf.metrics.ris import RISMetrics
from nemo_hf.modeling.inputs import instance_targets, target_mask
from nemo_hf.modeling.loading import load_referring_segmenter
from nemo_hf.modeling.predictions import predict_masks

__all__ = ["PRIMARY", "ArmPredictions", "SentenceScores", "evaluate_arm", "metrics_of"]

PRIMARY = REFERRING_HARD  # the stratum the experiment's criteria read


@dataclass(frozen=True)
class SentenceScores:
    """One arm's scores, one entry per evaluation sentence (in the evaluation set's order)."""

    intersection: np.ndarray
    union: np.ndarray
    outcome: np.ndarray  # object-accuracy code per sentence (0 = the target was chosen)
    referring_hard: np.ndarray
    distractors: np.ndarray
    target_area: np.ndarray

    @property
    def correct(self) -> np.ndarray:
        """Whether the prediction chose the target (object accuracy's numerator)."""
        return self.outcome == TARGET

    def select(self, keep: np.ndarray) -> SentenceScores:
        """The sentences where ``keep`` is true."""
        return SentenceScores(*(getattr(self, f.name)[keep] for f in fields(self)))

    def save(self, path: Path) -> Path:
        np.savez_compressed(path, **{f.name: getattr(self, f.name) for f in fields(self)})
        return path

    @classmethod
    def load(cls, path: Path) -> SentenceScores:
        with np.load(path) as saved:
            return cls(*(saved[f.name] for f in fields(cls)))


@dataclass
class ArmPredictions:
    """One arm's scores, its metrics, and the masks predicted for the sentences kept for pictures."""

    scores: SentenceScores
    metrics: dict[str, Any]
    kept_masks: dict[int, np.ndarray]


def metrics_of(scores: SentenceScores) -> dict[str, Any]:
    """RIS metrics and object accuracy, overall and per group (distractors, size, referring stratum)."""
    groups = [group_labels(int(d), int(a), bool(h))
              for d, a, h in zip(scores.distractors, scores.target_area, scores.referring_hard)]
    ris = RISMetrics(sync_processes=False)
    ris.update_counts(scores.intersection, scores.union, groups=groups)
    objects = ObjectMetrics(sync_processes=False)
    objects.update_outcomes(scores.outcome, groups=groups)
    return {**ris.compute(), "objects": objects.compute()}


def evaluate_arm(model_dir: Path, sentences: Any, *, batch_size: int = 64, keep: Sequence[int] = ()) -> ArmPredictions:
    """Predict every row of ``sentences`` (per-sentence rows with ``instances`` and ``needs``) and score it.

    ``keep`` are the indices of sentences whose predicted masks are returned (for pictures).
    """
    model, processor = load_referring_segmenter(model_dir)
    model.eval()
    columns: dict[str, list[int]] = {f.name: [] for f in fields(SentenceScores)}
    kept: dict[int, np.ndarray] = {}
    wanted = set(keep)
    for start in range(0, len(sentences), batch_size):
        rows = sentences.select(range(start, min(start + batch_size, len(sentences))))
        predicted = predict_masks(model, processor, rows["image"], rows["sentence"], batch_size=batch_size)
        for offset, (row, prediction) in enumerate(zip(rows, predicted)):
            truth = target_mask(row["mask"])
            instances = instance_targets(row, truth.shape)
            if instances is None:
                raise ValueError(f"evaluation sentence {start + offset} (ref {row.get('ref_id')}) has no instances: "
                                 "the experiment's evaluation needs every annotated object of the image")
            columns["intersection"].append(int((prediction & truth).sum()))
            columns["union"].append(int((prediction | truth).sum()))
            columns["outcome"].extend(object_outcomes([prediction], [instances[0].numpy()], [instances[1]]))
            columns["referring_hard"].append(referring_hard(row["needs"]))
            columns["distractors"].append(int(row["distractors"]))
            columns["target_area"].append(int(truth.sum()))
            if start + offset in wanted:
                kept[start + offset] = prediction
    scores = SentenceScores(*(np.asarray(columns[f.name]) for f in fields(SentenceScores)))
    return ArmPredictions(scores, metrics_of(scores), kept)
