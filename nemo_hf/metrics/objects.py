"""Object accuracy: which annotated object of the image did the predicted mask choose?

oIoU and mIoU mix two failures: a mask on the right object with a ragged boundary, and a
mask on the wrong object. NeMo is meant to fix the second, so this module scores it alone.
COCO's ``instances.json`` annotates every object of each image, not only the referred ones,
so this works on real RefCOCO, RefCOCO+, RefCOCOg and gRefCOCO as well as on synthetic data
(the builder's ``instances`` column holds them; see :mod:`nemo_hf.data.instances`).

**The choice.** For each sentence, the IoU of the binary prediction (at the original image
resolution) with the mask of every annotated instance of its image is computed from exact
pixel counts. The instance with the highest IoU is the one the prediction *chose*, and its
role gives the sentence's outcome:

- ``target`` — a target of the expression (gRefCOCO multi-target: **any** of its targets);
- ``same_category`` — a same-category distractor: not a target, but of a target's category
  (the objects the ``distractors`` column counts);
- ``other_object`` — any other annotated instance;
- ``none`` — no instance has an IoU above zero (the prediction is empty or lies on
  unannotated pixels only), or the best IoU is below ``min_iou``.

Rules where a choice is not obvious:

- **Minimum IoU.** An instance can be chosen only if its IoU is above zero and at least
  ``min_iou`` (default 0: any overlap counts). Raise it (e.g. 0.5) to count only
  predictions that clearly lie on one object; the rest become ``none``.
- **Ties.** IoUs are compared exactly (as fractions of integer pixel counts). When several
  instances share the highest IoU, the prediction did not single out one object, and the
  *worst* role among them is the outcome: ``same_category`` if a same-category distractor
  is among them, else ``other_object`` if another object is, else ``target``. A mask
  covering a target and an equally sized same-category distractor is therefore wrong.
- **Overlap with several objects.** A prediction covering the target *and* a distractor
  can have a high IoU with the union of the two, yet it chooses whichever of them it
  overlaps most: the metric asks which object, not how much of the objects.
- **No target.** A sentence whose instances include no target (gRefCOCO's no-target
  expressions) has nothing to choose right: it is counted in ``no_target_count`` and left
  out of every share (:class:`~nemo_hf.metrics.GRESMetrics`' ``n_acc`` scores those).

**Result keys** of :meth:`ObjectMetrics.compute` (fractions in [0, 1]; NaN where no
sentence was scored):

- ``object_accuracy`` — share of scored sentences whose choice is a target;
- ``wrong_object_rate`` — share whose choice is another annotated instance
  (``same_category`` + ``other_object``);
- ``outcomes`` — ``{"target", "same_category", "other_object", "none"}``: the four shares,
  which sum to 1;
- ``count`` — scored sentences; ``no_target_count`` — sentences without a target;
- ``groups`` — group name → the same keys (``distractors=0|1|2|3+``, ``size=…`` and any
  labels the caller passes).

Each sentence becomes one small integer (its outcome code: :data:`TARGET`,
:data:`SAME_CATEGORY`, :data:`OTHER_OBJECT`, :data:`NONE`, or :data:`NO_TARGET`), and only
those are gathered across processes, so N processes report exactly what one does.

>>> import numpy as np
>>> instances = np.zeros((3, 4, 8), dtype=bool)
>>> instances[0, :, 0:2] = True   # the target
>>> instances[1, :, 3:5] = True   # another object of its category
>>> instances[2, :, 6:8] = True   # an object of another category
>>> roles = instance_roles(ann_ids=[7, 8, 9], category_ids=[1, 1, 5], target_ann_ids=[7])
>>> roles
[0, 1, 2]
>>> on_distractor = np.zeros((4, 8), dtype=bool); on_distractor[:, 3:5] = True
>>> metrics = ObjectMetrics()
>>> metrics.update([instances[0], on_distractor], [instances, instances], [roles, roles])
>>> result = metrics.compute()
>>> result["object_accuracy"], result["wrong_object_rate"], result["outcomes"]["same_category"]
(0.5, 0.5, 0.5)
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch

from nemo_hf.metrics.distributed import HasNumProcesses, gather_records
from nemo_hf.metrics.masks import Counts, Mask, _check_dtype
from nemo_hf.metrics.ris import GroupLabels, IntVector, _group_tuples, int_list

__all__ = [
    "NONE",
    "NO_TARGET",
    "OTHER_OBJECT",
    "OUTCOMES",
    "SAME_CATEGORY",
    "TARGET",
    "ObjectMetrics",
    "choose_object",
    "instance_overlaps",
    "instance_roles",
    "object_outcomes",
    "summarise_outcomes",
]

# Outcome codes; the first three are also the roles of instances, so an outcome is the role
# of the chosen instance.
TARGET, SAME_CATEGORY, OTHER_OBJECT, NONE = 0, 1, 2, 3
NO_TARGET = -1  # the sentence has no target instance: not scored
OUTCOMES: tuple[str, ...] = ("target", "same_category", "other_object", "none")  # names of codes 0..3
_ROLES = (TARGET, SAME_CATEGORY, OTHER_OBJECT)
# among instances tied at the highest IoU, the first role of this order present is the outcome
_TIE_ORDER = (SAME_CATEGORY, OTHER_OBJECT, TARGET)


def instance_roles(ann_ids: Iterable[int], category_ids: Iterable[int], target_ann_ids: Iterable[int]) -> list[int]:
    """The role of each instance of an image: :data:`TARGET`, :data:`SAME_CATEGORY` or :data:`OTHER_OBJECT`.

    ``ann_ids`` and ``category_ids`` describe the image's instances (as the dataset's
    ``instances`` column lists them); ``target_ann_ids`` are the expression's targets (the
    row's ``ann_id``, or gRefCOCO's ``ann_ids``; negative ids mean "no target" and are
    ignored). An instance is a same-category distractor when it is not a target but shares
    its category with one. A target missing from the instances is an error.

    >>> instance_roles([4, 5, 6, 7], [1, 2, 1, 2], target_ann_ids=[4, 5])
    [0, 0, 1, 1]
    >>> instance_roles([4, 5], [1, 1], target_ann_ids=[-1])  # no target
    [2, 2]
    """
    ann_ids, category_ids = [int(a) for a in ann_ids], [int(c) for c in category_ids]
    if len(ann_ids) != len(category_ids):
        raise ValueError(f"got {len(ann_ids)} instance ann_ids but {len(category_ids)} category_ids")
    targets = {int(a) for a in target_ann_ids if int(a) >= 0}
    missing = sorted(targets - set(ann_ids))
    if missing:
        raise ValueError(f"target ann_id(s) {missing} are not among the image's instances {ann_ids}; "
                         "the instances must include every annotation of the image, targets too")
    target_categories = {c for a, c in zip(ann_ids, category_ids) if a in targets}
    return [TARGET if a in targets else SAME_CATEGORY if c in target_categories else OTHER_OBJECT
            for a, c in zip(ann_ids, category_ids)]


def instance_overlaps(pred: Mask, instance_masks: Mask) -> tuple[Counts, Counts]:
    """Intersection and union (int64) of a ``(H, W)`` prediction with each of ``(K, H, W)`` instance masks.

    Counted where the masks live: torch tensors (on the prediction's device) when either is
    a tensor, numpy arrays otherwise.

    >>> pred = np.array([[1, 1, 0]], dtype=bool)
    >>> inter, union = instance_overlaps(pred, np.array([[[1, 0, 0]], [[0, 0, 1]]], dtype=bool))
    >>> inter.tolist(), union.tolist()
    ([1, 0], [2, 3])
    """
    if pred.ndim != 2 or instance_masks.ndim != 3 or tuple(instance_masks.shape[1:]) != tuple(pred.shape):
        raise ValueError(f"need a (H, W) prediction and (K, H, W) instance masks of the same H, W; got shapes "
                         f"{tuple(pred.shape)} and {tuple(instance_masks.shape)} (resize the prediction to the "
                         "original image size first: nemo_hf.metrics.logits_to_mask)")
    _check_dtype(pred, "the prediction")
    _check_dtype(instance_masks, "the instance masks")
    if isinstance(pred, torch.Tensor) or isinstance(instance_masks, torch.Tensor):
        device = pred.device if isinstance(pred, torch.Tensor) else instance_masks.device
        pred_t = torch.as_tensor(pred, device=device) != 0
        masks_t = torch.as_tensor(instance_masks, device=device) != 0
        inter = (masks_t & pred_t).sum(dim=(1, 2), dtype=torch.int64)
        areas = masks_t.sum(dim=(1, 2), dtype=torch.int64)
        return inter, areas + pred_t.sum(dtype=torch.int64) - inter
    pred_a, masks_a = np.asarray(pred) != 0, np.asarray(instance_masks) != 0
    inter = (masks_a & pred_a).sum(axis=(1, 2), dtype=np.int64)
    return inter, masks_a.sum(axis=(1, 2), dtype=np.int64) + pred_a.sum(dtype=np.int64) - inter


def _check_min_iou(min_iou: float) -> float:
    if not 0.0 <= float(min_iou) <= 1.0:
        raise ValueError(f"min_iou is an IoU in [0, 1], got {min_iou}")
    return float(min_iou)


def choose_object(intersections: IntVector, unions: IntVector, roles: IntVector, min_iou: float = 0.0) -> int:
    """The outcome code of one sentence from its per-instance pixel counts (rules: module docstring).

    >>> choose_object([3, 5], [10, 9], roles=[TARGET, OTHER_OBJECT]) == OTHER_OBJECT  # 5/9 > 3/10
    True
    >>> choose_object([4, 4], [8, 8], roles=[TARGET, SAME_CATEGORY]) == SAME_CATEGORY  # a tie
    True
    >>> choose_object([1, 0], [10, 5], roles=[TARGET, OTHER_OBJECT], min_iou=0.5) == NONE
    True
    """
    inter, union, role = int_list(intersections, "intersections"), int_list(unions, "unions"), int_list(roles, "roles")
    if not len(inter) == len(union) == len(role):
        raise ValueError(f"got {len(inter)} intersections, {len(union)} unions and {len(role)} roles")
    bad = [r for r in role if r not in _ROLES]
    if bad:
        raise ValueError(f"roles must be TARGET (0), SAME_CATEGORY (1) or OTHER_OBJECT (2), got {bad}")
    for a, b in zip(inter, union):
        if not 0 <= a <= b:
            raise ValueError(f"need 0 <= intersection <= union, got intersection={a}, union={b}")
    if TARGET not in role:
        return NO_TARGET
    # exact comparison of fractions: a/b > c/d  <=>  a*d > c*b (Python ints do not overflow)
    best_inter, best_union, tied = 0, 1, []
    for a, b, r in zip(inter, union, role):
        if a == 0:
            continue
        if a * best_union > best_inter * b:
            best_inter, best_union, tied = a, b, [r]
        elif a * best_union == best_inter * b:
            tied.append(r)
    if not tied or best_inter < _check_min_iou(min_iou) * best_union:
        return NONE
    return next(r for r in _TIE_ORDER if r in tied)


def object_outcomes(
    preds: Sequence[Mask], instance_masks: Sequence[Mask], roles: Sequence[IntVector], min_iou: float = 0.0
) -> list[int]:
    """The outcome code of each sentence: ``preds[i]`` ``(H, W)`` against ``instance_masks[i]`` ``(K, H, W)``.

    >>> masks = np.stack([np.eye(3, dtype=bool), ~np.eye(3, dtype=bool)])
    >>> object_outcomes([np.eye(3, dtype=bool)], [masks], [[OTHER_OBJECT, TARGET]])
    [2]
    """
    if not len(preds) == len(instance_masks) == len(roles):
        raise ValueError(f"got {len(preds)} predictions, {len(instance_masks)} instance mask sets and "
                         f"{len(roles)} role lists")
    outcomes = []
    for i, (pred, masks, role) in enumerate(zip(preds, instance_masks, roles)):
        pred = pred if isinstance(pred, (np.ndarray, torch.Tensor)) else np.asarray(pred)
        masks = masks if isinstance(masks, (np.ndarray, torch.Tensor)) else np.asarray(masks)
        if masks.ndim == 1 and masks.shape[0] == 0:  # no instances, given as an empty list
            masks = np.zeros((0, *pred.shape), dtype=bool)
        try:
            inter, union = instance_overlaps(pred, masks)
        except ValueError as err:
            raise ValueError(f"sample {i}: {err}") from None
        outcomes.append(choose_object(inter, union, role, min_iou))
    return outcomes


def _share(hits: int, total: int) -> float:
    return hits / total if total else math.nan


def summarise_outcomes(outcomes: Sequence[int]) -> dict[str, Any]:
    """The result keys (module docstring) of outcome codes, without ``groups``.

    >>> summarise_outcomes([TARGET, TARGET, SAME_CATEGORY, NONE, NO_TARGET])["outcomes"]
    {'target': 0.5, 'same_category': 0.25, 'other_object': 0.0, 'none': 0.25}
    """
    tally = Counter(outcomes)
    scored = sum(tally[code] for code in range(len(OUTCOMES)))
    return {
        "object_accuracy": _share(tally[TARGET], scored),
        "wrong_object_rate": _share(tally[SAME_CATEGORY] + tally[OTHER_OBJECT], scored),
        "outcomes": {name: _share(tally[code], scored) for code, name in enumerate(OUTCOMES)},
        "count": scored,
        "no_target_count": tally[NO_TARGET],
    }


class ObjectMetrics:
    """Accumulates one outcome code per sentence; computes object accuracy and the outcome shares.

    Same shape as :class:`~nemo_hf.metrics.RISMetrics`: :meth:`update` takes masks,
    :meth:`update_counts` per-instance pixel counts, :meth:`update_outcomes` codes already
    decided (what a distributed loop gathers), and :meth:`compute` gathers the codes of all
    processes before dividing (``sync_processes=False`` when each process already holds all
    of them, e.g. after ``accelerator.gather_for_metrics``).

    Args:
        min_iou: the chosen instance's IoU must be at least this, else the outcome is ``none``.
        sync_processes: gather every process's sentences in :meth:`compute`.

    >>> metrics = ObjectMetrics()
    >>> metrics.update_outcomes([TARGET, OTHER_OBJECT, NONE, TARGET], groups=[["distractors=0"]] * 4)
    >>> result = metrics.compute()
    >>> result["object_accuracy"], result["groups"]["distractors=0"]["outcomes"]["none"]
    (0.5, 0.25)
    """

    def __init__(self, min_iou: float = 0.0, sync_processes: bool = True) -> None:
        self.min_iou = _check_min_iou(min_iou)
        self.sync_processes = sync_processes
        self.reset()

    def reset(self) -> None:
        """Forget every sentence seen so far."""
        self._records: list[tuple[int, tuple[str, ...]]] = []

    def update(
        self, preds: Sequence[Mask], instance_masks: Sequence[Mask], roles: Sequence[IntVector],
        groups: GroupLabels | None = None,
    ) -> None:
        """Add sentences: ``(H, W)`` boolean predictions at the original image size, each with its
        image's ``(K, H, W)`` instance masks and their roles (:func:`instance_roles`)."""
        self.update_outcomes(object_outcomes(preds, instance_masks, roles, self.min_iou), groups)

    def update_counts(
        self, intersections: Sequence[IntVector], unions: Sequence[IntVector], roles: Sequence[IntVector],
        groups: GroupLabels | None = None,
    ) -> None:
        """Add sentences from per-instance pixel counts (one vector per sentence, as
        :func:`instance_overlaps` gives them, or pycocotools' areas of RLE merges)."""
        if not len(intersections) == len(unions) == len(roles):
            raise ValueError(f"got {len(intersections)} intersection vectors, {len(unions)} union vectors and "
                             f"{len(roles)} role vectors")
        self.update_outcomes([choose_object(*sample, self.min_iou) for sample in zip(intersections, unions, roles)],
                             groups)

    def update_outcomes(self, outcomes: IntVector, groups: GroupLabels | None = None) -> None:
        """Add sentences from their outcome codes (:data:`TARGET` … :data:`NONE`, or :data:`NO_TARGET`)."""
        codes = int_list(outcomes, "outcomes")
        bad = sorted({c for c in codes if not NO_TARGET <= c < len(OUTCOMES)})
        if bad:
            raise ValueError(f"outcome codes are {NO_TARGET}..{len(OUTCOMES) - 1}, got {bad}")
        labels = _group_tuples(groups, len(codes)) if groups is not None else [()] * len(codes)
        self._records.extend(zip(codes, labels))

    def compute(self, accelerator: HasNumProcesses | None = None) -> dict[str, Any]:
        """``object_accuracy``, ``wrong_object_rate``, ``outcomes``, ``count``, ``no_target_count``
        and ``groups`` (see the module docstring).

        Collective in a distributed run: call it on every process. Raises ``ValueError``
        when there are no sentences at all.
        """
        records = gather_records(self._records, accelerator) if self.sync_processes else self._records
        if not records:
            raise ValueError("ObjectMetrics.compute(): no samples; call update() first")
        by_group: dict[str, list[int]] = {}
        for code, names in records:
            for name in names:
                by_group.setdefault(name, []).append(code)
        result = summarise_outcomes([code for code, _ in records])
        result["groups"] = {name: summarise_outcomes(by_group[name]) for name in sorted(by_group)}
        return result
