"""Scoring an arm: every evaluation sentence predicted by its final model, with the strata the report uses.

    >>> hard_stratum(3), hard_stratum(1)
    (['distractors>=2'], [])
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from nemo_hf.metrics.protocol import group_labels
from nemo_hf.metrics.ris import RISMetrics
from nemo_hf.modeling.inputs import target_mask
from nemo_hf.modeling.loading import load_referring_segmenter
from nemo_hf.modeling.predictions import predict_masks

__all__ = ["HARD", "ArmPredictions", "evaluate_arm", "hard_stratum"]

HARD = "distractors>=2"  # the hard stratum: at least two other objects of the target's category


def hard_stratum(distractors: int) -> list[str]:
    """Extra group labels of a sample: the hard stratum when it has ≥ 2 distractors."""
    return [HARD] if distractors >= 2 else []


class ArmPredictions:
    """One arm's masks for every evaluation sentence, and the metrics they give."""

    def __init__(self, masks: list[np.ndarray], ious: list[float], metrics: dict[str, Any]) -> None:
        self.masks = masks
        self.ious = ious
        self.metrics = metrics


def evaluate_arm(model_dir: Path, sentences: Any, batch_size: int = 64) -> ArmPredictions:
    """Predict every row of ``sentences`` (per-sentence rows) with the model in ``model_dir``; score it."""
    model, processor = load_referring_segmenter(model_dir)
    model.eval()
    metrics = RISMetrics(sync_processes=False)
    masks: list[np.ndarray] = []
    ious: list[float] = []
    for start in range(0, len(sentences), batch_size):
        rows = sentences[start : start + batch_size]
        predicted = predict_masks(model, processor, rows["image"], rows["sentence"], batch_size=batch_size)
        truths = [target_mask(mask) for mask in rows["mask"]]
        intersections = [int((p & t).sum()) for p, t in zip(predicted, truths)]
        unions = [int((p | t).sum()) for p, t in zip(predicted, truths)]
        groups = [
            group_labels(distractors=int(d), mask_area=int(t.sum())) + hard_stratum(int(d))
            for d, t in zip(rows["distractors"], truths)
        ]
        metrics.update_counts(intersections, unions, groups=groups)
        masks.extend(predicted)
        ious.extend(i / u if u else 1.0 for i, u in zip(intersections, unions))
    return ArmPredictions(masks, ious, metrics.compute())
