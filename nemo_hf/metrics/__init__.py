"""RIS metrics: oIoU, mIoU, precision@X per sentence, per group, exact across processes.

- :class:`RISMetrics` — RefCOCO/RefCOCO+/RefCOCOg: ``overall_iou`` (oIoU), ``mean_iou``
  (mIoU), ``precision@0.5`` … ``precision@0.9``, ``count``, and the same per group.
- :class:`GRESMetrics` — gRefCOCO: ``ciou``, ``giou``, ``n_acc``, ``t_acc``.
- :class:`ObjectMetrics` — which annotated object the prediction chose: ``object_accuracy``,
  ``wrong_object_rate``, ``outcomes`` (``target``, ``same_category``, ``other_object``,
  ``none``), per group too (:mod:`~nemo_hf.metrics.objects`).
- :mod:`~nemo_hf.metrics.protocol` — logits → mask at the original size, difficulty groups.
- :mod:`~nemo_hf.metrics.protocols` — evaluation protocols by name (``nemo_hf``, ``cris``,
  ``lavt``): how each code base maps predictions, thresholds and scores (:class:`IoURules`).
- :func:`evaluate_module_path` — the folder of an ``evaluate`` metric wrapping
  :class:`RISMetrics`: ``evaluate.load(str(evaluate_module_path()))`` works offline.

>>> import numpy as np
>>> metrics = RISMetrics()
>>> gt = np.zeros((1, 8, 8), dtype=bool)
>>> gt[0, 2:6, 2:6] = True
>>> metrics.update(gt.copy(), gt, groups=[group_labels(distractors=0, mask_area=int(gt.sum()))])
>>> result = metrics.compute()
>>> result["overall_iou"], sorted(result["groups"])
(1.0, ['distractors=0', 'size=small'])
"""

from __future__ import annotations

from pathlib import Path

from nemo_hf.metrics.gres import GRESMetrics
from nemo_hf.metrics.masks import PixelCounts, pixel_counts
from nemo_hf.metrics.objects import ObjectMetrics, instance_overlaps, instance_roles, object_outcomes
from nemo_hf.metrics.protocol import distractor_group, group_labels, logits_to_mask, logits_to_masks, size_group
from nemo_hf.metrics.protocols import PROTOCOL_NAMES, EvaluationProtocol, protocol
from nemo_hf.metrics.ris import DEFAULT_THRESHOLDS, IoURules, RISMetrics, sentence_iou

__all__ = [
    "DEFAULT_THRESHOLDS",
    "EvaluationProtocol",
    "GRESMetrics",
    "IoURules",
    "ObjectMetrics",
    "PROTOCOL_NAMES",
    "PixelCounts",
    "RISMetrics",
    "distractor_group",
    "evaluate_module_path",
    "group_labels",
    "instance_overlaps",
    "instance_roles",
    "logits_to_mask",
    "logits_to_masks",
    "object_outcomes",
    "pixel_counts",
    "protocol",
    "sentence_iou",
    "size_group",
]


def evaluate_module_path() -> Path:
    """The folder of the ``evaluate`` metric module (``ris_metric/ris_metric.py``).

    >>> evaluate_module_path().joinpath("ris_metric.py").is_file()
    True
    """
    return Path(__file__).resolve().parent / "ris_metric"
