"""Referring image segmentation metrics: oIoU, mIoU and Prec@X, overall and per group.

The protocol, as the field computes it (see also :mod:`nemo_hf.metrics.protocol`):

- **One score per expression.** Each sample given to :meth:`RISMetrics.update` is one
  sentence with its binary prediction and ground truth, both at the image's original
  resolution.
- ``overall_iou`` (**oIoU**, "overall IoU"; gRefCOCO's cIoU) = Σ intersections / Σ unions
  over all sentences. Large objects weigh more.
- ``mean_iou`` (**mIoU**) = mean of the per-sentence IoUs. (CRIS reports this number under
  the name "IoU".)
- ``precision@X`` = share of sentences whose IoU is **≥ X**, for X = 0.5 … 0.9. ReLA's
  evaluator uses ``>=`` too; CRIS's code uses ``>`` (against float32 thresholds from
  ``torch.arange``), which differs only for a sentence whose IoU is X to float32 precision.
- ``count`` = number of sentences.
- **Empty union** (prediction and ground truth both empty): the sentence's IoU is 1 —
  nothing was to be found and nothing was predicted — and it adds 0 to both sums of oIoU.
  When every union is empty, ``overall_iou`` is 1 by the same rule. (CRIS's code adds 1e-6
  to each union, so it scores such a sentence 0.) RefCOCO, RefCOCO+ and
  RefCOCOg never have an empty ground truth; the rule matters for gRefCOCO
  (:class:`~nemo_hf.metrics.GRESMetrics`) and for degenerate inputs.
- All values are fractions in [0, 1], not percentages.

These are nemo_hf's rules. The papers' code bases differ in the last three (CRIS: IoU
``I / (U + 1e-6)``, so an empty union scores 0, and ``>`` against float32 thresholds; LAVT:
an empty union scores 0): :class:`IoURules` holds them, and
:mod:`nemo_hf.metrics.protocols` names each paper's.

Counts are int64 and summed as Python integers; the mean uses :func:`math.fsum`, which is
exactly rounded, so results do not depend on the order of the samples nor on how they were
split across processes.

>>> import numpy as np
>>> metrics = RISMetrics()
>>> preds = np.array([[[1, 1], [0, 0]], [[0, 0], [0, 0]]], dtype=bool)
>>> gts = np.array([[[1, 0], [0, 0]], [[0, 0], [0, 0]]], dtype=bool)
>>> metrics.update(preds, gts, groups=[["distractors=1"], ["distractors=0"]])
>>> result = metrics.compute()
>>> result["overall_iou"], result["mean_iou"], result["precision@0.5"], result["count"]
(0.5, 0.75, 1.0, 2)
>>> result["groups"]["distractors=1"]["mean_iou"]
0.5
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from nemo_hf.metrics.distributed import HasNumProcesses, gather_records
from nemo_hf.metrics.masks import Masks, pixel_counts

DEFAULT_THRESHOLDS: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8, 0.9)

IntVector = np.ndarray | torch.Tensor | Sequence[int]
GroupLabels = Sequence[str | Sequence[str]]


@dataclass(frozen=True)
class IoURules:
    """How a sentence's pixel counts become its IoU, and its IoU a hit at ``precision@X``.

    Attributes:
        empty_union_iou: the IoU of a sentence whose prediction and ground truth are both
            empty (and the oIoU of a split whose every union is empty): 1.0 here (nothing
            was to be found and nothing was predicted); CRIS's and LAVT's code give 0.
        union_epsilon: added to each union before dividing (CRIS: ``I / (U + 1e-6)``).
        precision_comparison: ``">="`` (IoU reaches X: nemo_hf, LAVT, ReLA) or ``">"`` (CRIS).
        float32_thresholds: compare against X as a float32 (CRIS's ``torch.arange(0.5, 1.0,
            0.1)``: 0.6 is 0.6000000238…, 0.7 is 0.6999999880…).

    >>> IoURules().iou(0, 0), IoURules(empty_union_iou=0.0).iou(0, 0)
    (1.0, 0.0)
    >>> cris = IoURules(empty_union_iou=0.0, union_epsilon=1e-6, precision_comparison=">", float32_thresholds=True)
    >>> cris.reaches(0.7, 0.7), cris.reaches(0.6, 0.6), IoURules().reaches(0.6, 0.6)
    (True, False, True)
    """

    empty_union_iou: float = 1.0
    union_epsilon: float = 0.0
    precision_comparison: Literal[">=", ">"] = ">="
    float32_thresholds: bool = False

    def __post_init__(self) -> None:
        if self.precision_comparison not in (">=", ">"):
            raise ValueError(f"precision_comparison must be '>=' or '>', got {self.precision_comparison!r}")
        if self.union_epsilon < 0:
            raise ValueError(f"union_epsilon must be >= 0, got {self.union_epsilon}")

    def iou(self, intersection: int, union: int) -> float:
        """The IoU of one sentence's counts."""
        return self.empty_union_iou if union == 0 else intersection / (union + self.union_epsilon)

    def reaches(self, iou: float, threshold: float) -> bool:
        """Whether a sentence's IoU counts at ``precision@threshold``."""
        limit = float(np.float32(threshold)) if self.float32_thresholds else threshold
        return iou >= limit if self.precision_comparison == ">=" else iou > limit


NEMO_HF_RULES = IoURules()


def sentence_iou(intersection: int, union: int, rules: IoURules = NEMO_HF_RULES) -> float:
    """IoU of one sentence; 1.0 when the union is empty (both masks empty), unless ``rules`` say otherwise.

    >>> sentence_iou(1, 4), sentence_iou(0, 0)
    (0.25, 1.0)
    """
    return rules.iou(intersection, union)


def precision_key(threshold: float) -> str:
    """Result key of a precision threshold.

    >>> precision_key(0.5)
    'precision@0.5'
    """
    return f"precision@{threshold:g}"


def check_thresholds(thresholds: Sequence[float]) -> tuple[float, ...]:
    """Thresholds as a tuple, each in (0, 1] and with a distinct key; else ``ValueError``."""
    out = tuple(float(t) for t in thresholds)
    bad = [t for t in out if not 0.0 < t <= 1.0]
    if bad:
        raise ValueError(f"precision thresholds must be in (0, 1], got {bad}")
    if len({precision_key(t) for t in out}) != len(out):
        raise ValueError(f"precision thresholds must be distinct, got {list(out)}")
    return out


def int_list(values: IntVector, name: str) -> list[int]:
    """A 1-D integer array, tensor or list as Python ints; non-integers are an error naming ``name``."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one count per sample), got shape {array.shape}")
    if array.size and not (np.issubdtype(array.dtype, np.integer) or array.dtype == np.bool_):
        raise TypeError(f"{name} must hold integers, got dtype {array.dtype}")
    return [int(v) for v in array]


def summarise(
    intersections: Sequence[int], unions: Sequence[int], thresholds: Sequence[float],
    rules: IoURules = NEMO_HF_RULES,
) -> dict[str, Any]:
    """oIoU, mIoU, precision@X and count of per-sentence counts (at least one sentence).

    >>> summarise([1, 0], [2, 0], (0.5,))
    {'overall_iou': 0.5, 'mean_iou': 0.75, 'precision@0.5': 1.0, 'count': 2}
    >>> summarise([1, 0], [2, 0], (0.5,), IoURules(empty_union_iou=0.0, precision_comparison=">"))["mean_iou"]
    0.25
    """
    ious = [rules.iou(i, u) for i, u in zip(intersections, unions)]
    total_union = sum(unions)
    result: dict[str, Any] = {
        "overall_iou": sum(intersections) / total_union if total_union else rules.empty_union_iou,
        "mean_iou": math.fsum(ious) / len(ious),
    }
    for threshold in thresholds:
        result[precision_key(threshold)] = sum(rules.reaches(iou, threshold) for iou in ious) / len(ious)
    result["count"] = len(ious)
    return result


def _group_tuples(groups: GroupLabels, count: int) -> list[tuple[str, ...]]:
    if isinstance(groups, str) or len(groups) != count:
        raise ValueError(
            f"groups must hold one entry per sample ({count}), e.g. [['distractors=0', 'size=small'], ...]; "
            f"got {groups!r:.200}"
        )
    out = []
    for i, labels in enumerate(groups):
        names = (labels,) if isinstance(labels, str) else tuple(labels)
        bad = [name for name in names if not isinstance(name, str) or not name]
        if bad:
            raise ValueError(f"groups[{i}] must be group names (non-empty strings), got {bad!r}")
        if len(set(names)) != len(names):
            raise ValueError(f"groups[{i}] names a group twice: {list(names)}")
        out.append(names)
    return out


class RISMetrics:
    """Accumulates per-sentence pixel counts; computes oIoU, mIoU, precision@X, per group too.

    Args:
        thresholds: IoU thresholds of the ``precision@X`` keys.
        sync_processes: gather the samples of every process in :meth:`compute` (see
            below). Set ``False`` when each process already holds all samples, e.g. after
            ``accelerator.gather_for_metrics``.
        rules: how counts become IoUs and hits (:class:`IoURules`; default nemo_hf's, the
            module docstring's; a paper's: ``nemo_hf.metrics.protocols.protocol("cris").iou``).

    Distributed evaluation: every process calls :meth:`update` with **its own real
    samples** and then :meth:`compute`, which gathers the per-sentence records of all
    processes before dividing, so two processes give exactly what one gives on the same
    data. Accelerate's prepared DataLoader, with ``even_batches=True`` (its default), repeats
    a few samples to fill the last batch of every process; those duplicates must not reach
    :meth:`update`. Either prepare the loader with
    ``DataLoaderConfiguration(even_batches=False)``, or take the ``gather_for_metrics`` route,
    which drops them::

        counts = pixel_counts(pred_masks, gt_masks)             # per-sample int64 tensors
        counts = accelerator.gather_for_metrics(counts)         # duplicates dropped
        metrics.update_counts(counts.intersection, counts.union)  # metrics built with sync_processes=False

    Groups: ``groups`` gives, per sample, the names of the groups it belongs to (a sample
    may belong to several, e.g. ``["distractors=2", "size=small"]``; see
    :func:`nemo_hf.metrics.group_labels`). ``compute()["groups"][name]`` has the same keys as
    the overall result, computed on that group's samples.

    >>> import torch
    >>> metrics = RISMetrics(thresholds=(0.5,))
    >>> metrics.update([torch.ones(2, 2, dtype=torch.bool)], [torch.eye(2, dtype=torch.bool)])
    >>> metrics.compute()
    {'overall_iou': 0.5, 'mean_iou': 0.5, 'precision@0.5': 1.0, 'count': 1, 'groups': {}}
    """

    def __init__(
        self, thresholds: Sequence[float] = DEFAULT_THRESHOLDS, sync_processes: bool = True,
        rules: IoURules = NEMO_HF_RULES,
    ) -> None:
        self.thresholds = check_thresholds(thresholds)
        self.sync_processes = sync_processes
        self.rules = rules
        self.reset()

    def reset(self) -> None:
        """Forget every sample seen so far."""
        self._records: list[tuple[int, int, tuple[str, ...]]] = []

    def update(self, preds: Masks, targets: Masks, groups: GroupLabels | None = None) -> None:
        """Add sentences: boolean prediction and ground-truth masks at the original image size.

        ``preds`` and ``targets`` are ``(N, H, W)`` arrays or tensors, or lists of ``(H, W)``
        masks of different sizes (see :func:`nemo_hf.metrics.pixel_counts`).
        """
        counts = pixel_counts(preds, targets)
        self.update_counts(counts.intersection, counts.union, groups)

    def update_counts(self, intersection: IntVector, union: IntVector, groups: GroupLabels | None = None) -> None:
        """Add sentences from their pixel counts (as :func:`~nemo_hf.metrics.pixel_counts` gives them)."""
        inter, uni = int_list(intersection, "intersection"), int_list(union, "union")
        if len(inter) != len(uni):
            raise ValueError(f"got {len(inter)} intersections but {len(uni)} unions")
        for i, (a, b) in enumerate(zip(inter, uni)):
            if not 0 <= a <= b:
                raise ValueError(f"sample {i}: need 0 <= intersection <= union, got intersection={a}, union={b}")
        labels = _group_tuples(groups, len(inter)) if groups is not None else [()] * len(inter)
        self._records.extend(zip(inter, uni, labels))

    def compute(self, accelerator: HasNumProcesses | None = None) -> dict[str, Any]:
        """The metrics of all samples (of all processes, unless ``sync_processes=False``).

        Returns ``overall_iou``, ``mean_iou``, ``precision@X`` per threshold, ``count`` and
        ``groups`` (group name → the same keys). Collective in a distributed run: call it
        on every process. Raises ``ValueError`` when there are no samples at all.
        """
        records = gather_records(self._records, accelerator) if self.sync_processes else self._records
        if not records:
            raise ValueError("RISMetrics.compute(): no samples; call update() first")
        by_group: dict[str, tuple[list[int], list[int]]] = {}
        for inter, uni, names in records:
            for name in names:
                group_inter, group_union = by_group.setdefault(name, ([], []))
                group_inter.append(inter)
                group_union.append(uni)
        result = summarise([r[0] for r in records], [r[1] for r in records], self.thresholds, self.rules)
        result["groups"] = {name: summarise(*by_group[name], self.thresholds, self.rules) for name in sorted(by_group)}
        return result
