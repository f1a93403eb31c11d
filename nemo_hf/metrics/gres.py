"""Generalised RIS (gRefCOCO) metrics: cIoU, gIoU, N-acc, T-acc.

In gRefCOCO an expression may refer to no object at all (a *no-target* sample: empty
ground truth). Definitions, as in the GRES paper (Liu, Ding, Jiang, CVPR 2023):

- ``ciou`` = Σ intersections / Σ unions — RIS's oIoU;
- ``giou`` = mean per-sample IoU, where a no-target sample scores 1 when predicted empty
  and 0 otherwise;
- ``n_acc`` = share of no-target samples predicted empty;
- ``t_acc`` = share of target samples *not* predicted empty;
- ``precision@X`` = share of target samples with IoU ≥ X (X = 0.7, 0.8, 0.9 as ReLA reports);
- ``count`` and ``no_target_count``.

Values are fractions in [0, 1]; a share with nothing to count (``n_acc`` without
no-target samples, ``t_acc`` and ``precision@X`` without target samples) is NaN.

**"Predicted empty".** ReLA, the GRES reference code (``henghuiding/ReLA``,
``gres_model/evaluation/refer_evaluation.py``), decides no-target with a separate
classification head (``nt_label``), not from the mask. Models here predict only a mask, so
a sample counts as predicted empty when its mask has fewer than ``empty_below`` foreground
pixels (default 1: exactly empty). A model with a no-target head passes its decisions as
``pred_no_target``, which then override the pixel rule. A sample predicted empty is
scored as if its mask were empty: intersection 0, union = the ground truth's area. (ReLA
keeps the union of the mask head's output with the ground truth there; the two agree
whenever the mask of a sample called empty is empty.) ReLA's code also adds 1 to the
denominators of its accuracies and computes its ``T_acc`` as TP / (TP + FP + 1), i.e. as a
precision of the no-target calls; the paper's definitions above are used here instead.

Distributed runs work as for :class:`~nemo_hf.metrics.RISMetrics`: records are gathered
before dividing.

>>> import numpy as np
>>> metrics = GRESMetrics()
>>> gts = np.array([[[1, 1], [0, 0]], [[0, 0], [0, 0]]], dtype=bool)  # second: no target
>>> preds = np.array([[[1, 0], [0, 0]], [[0, 0], [0, 0]]], dtype=bool)
>>> metrics.update(preds, gts)
>>> {k: metrics.compute()[k] for k in ("ciou", "giou", "n_acc", "t_acc")}
{'ciou': 0.5, 'giou': 0.75, 'n_acc': 1.0, 't_acc': 1.0}
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from nemo_hf.metrics.distributed import HasNumProcesses, gather_records
from nemo_hf.metrics.masks import Masks, pixel_counts
from nemo_hf.metrics.ris import IntVector, check_thresholds, int_list, precision_key

GRES_THRESHOLDS: tuple[float, ...] = (0.7, 0.8, 0.9)


def _share(hits: int, total: int) -> float:
    return hits / total if total else math.nan


class GRESMetrics:
    """Accumulates gRefCOCO samples; computes cIoU, gIoU, N-acc, T-acc and precision@X.

    Args:
        thresholds: IoU thresholds of the ``precision@X`` keys (target samples only).
        empty_below: a predicted mask with fewer foreground pixels than this counts as
            "predicted empty" (no target), unless ``pred_no_target`` is given.
        sync_processes: gather every process's samples in :meth:`compute`; ``False`` when
            each process already holds all of them.

    >>> import torch
    >>> metrics = GRESMetrics(empty_below=3)
    >>> pred = torch.zeros(1, 4, 4, dtype=torch.bool)
    >>> pred[0, 0, :2] = True  # 2 pixels: below 3, so "no target"
    >>> metrics.update(pred, torch.zeros(1, 4, 4, dtype=torch.bool))
    >>> metrics.compute()["n_acc"], metrics.compute()["giou"]
    (1.0, 1.0)
    """

    def __init__(
        self, thresholds: Sequence[float] = GRES_THRESHOLDS, empty_below: int = 1, sync_processes: bool = True
    ) -> None:
        if isinstance(empty_below, bool) or int(empty_below) != empty_below or empty_below < 1:
            raise ValueError(f"empty_below must be an integer >= 1, got {empty_below!r}")
        self.thresholds = check_thresholds(thresholds)
        self.empty_below = int(empty_below)
        self.sync_processes = sync_processes
        self.reset()

    def reset(self) -> None:
        """Forget every sample seen so far."""
        # (intersection, union, target_empty, pred_empty) after the "predicted empty" rule
        self._records: list[tuple[int, int, bool, bool]] = []

    def update(self, preds: Masks, targets: Masks, pred_no_target: Sequence[bool] | None = None) -> None:
        """Add samples: boolean masks at the original image size; empty target = no target."""
        counts = pixel_counts(preds, targets)
        self.update_counts(counts.intersection, counts.pred_area, counts.target_area, pred_no_target)

    def update_counts(
        self,
        intersection: IntVector,
        pred_area: IntVector,
        target_area: IntVector,
        pred_no_target: Sequence[bool] | IntVector | None = None,
    ) -> None:
        """Add samples from their pixel counts (as :func:`~nemo_hf.metrics.pixel_counts` gives them)."""
        inter = int_list(intersection, "intersection")
        pred = int_list(pred_area, "pred_area")
        target = int_list(target_area, "target_area")
        if not len(inter) == len(pred) == len(target):
            raise ValueError(f"got {len(inter)} intersections, {len(pred)} pred areas, {len(target)} target areas")
        if pred_no_target is None:
            no_target = [area < self.empty_below for area in pred]
        else:
            no_target = [bool(v) for v in int_list(pred_no_target, "pred_no_target")]
            if len(no_target) != len(inter):
                raise ValueError(f"got {len(no_target)} pred_no_target flags for {len(inter)} samples")
        for i, (a, p, t, called_empty) in enumerate(zip(inter, pred, target, no_target)):
            if not 0 <= a <= min(p, t):
                raise ValueError(f"sample {i}: need 0 <= intersection <= both areas, got {a}, {p}, {t}")
            self._records.append((0, t, t == 0, True) if called_empty else (a, p + t - a, t == 0, False))

    def compute(self, accelerator: HasNumProcesses | None = None) -> dict[str, Any]:
        """``ciou``, ``giou``, ``n_acc``, ``t_acc``, ``precision@X``, ``count``, ``no_target_count``.

        Collective in a distributed run: call it on every process. Raises ``ValueError``
        when there are no samples at all.
        """
        records = gather_records(self._records, accelerator) if self.sync_processes else self._records
        if not records:
            raise ValueError("GRESMetrics.compute(): no samples; call update() first")
        target_ious = [inter / union for inter, union, target_empty, _ in records if not target_empty]
        no_target_hits = [pred_empty for _, _, target_empty, pred_empty in records if target_empty]
        total_union = sum(r[1] for r in records)
        result: dict[str, Any] = {
            "ciou": sum(r[0] for r in records) / total_union if total_union else 1.0,
            "giou": math.fsum([*target_ious, *map(float, no_target_hits)]) / len(records),
            "n_acc": _share(sum(no_target_hits), len(no_target_hits)),
            "t_acc": _share(sum(not r[3] for r in records if not r[2]), len(target_ious)),
        }
        for threshold in self.thresholds:
            result[precision_key(threshold)] = _share(sum(iou >= threshold for iou in target_ious), len(target_ious))
        result["count"] = len(records)
        result["no_target_count"] = len(no_target_hits)
        return result
