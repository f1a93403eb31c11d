"""Evaluate a referring segmenter on a split: RIS metrics per sentence, exact on any number of processes.

Per batch, every process turns its predictions into masks in the protocol's frame — by
default nemo_hf's, each image's original size with logits upsampled bilinearly
(:func:`nemo_hf.metrics.logits_to_masks`); ``protocol`` names CRIS's or LAVT's instead
(:mod:`nemo_hf.metrics.protocols`) — and a model that outputs masks (Florence-2) draws them
there itself. Then it counts pixels against the ground truth (brought to the same frame), and
gathers only the per-sample integers (intersection, union, ground-truth area, distractor
count, object outcome) and the per-sample loss with ``accelerator.gather_for_metrics``,
which drops the samples Accelerate repeats to even out the last batch. Every process then
holds the counts of every sentence exactly once, and the metrics divide only at the end —
so one process and N processes give the same numbers, bit for bit.

Result keys: ``overall_iou``, ``mean_iou``, ``precision@0.5`` … ``precision@0.9``,
``count``, ``loss`` (mean per-sentence BCE at the model's resolution; only for models that give
logits) and ``groups``
(``distractors=0|1|2|3+``, COCO ``size=small|medium|large`` and, where the rows carry each
sentence's ``needs`` — the synthetic world — ``referring=hard|easy`` → the same keys). When the
split has no-target expressions (gRefCOCO), ``gres`` adds the GRES metrics
(:class:`~nemo_hf.metrics.GRESMetrics`: ``ciou``, ``giou``, ``n_acc``, ``t_acc``, …), a
prediction counting as "no target" when its mask is empty. When the batches carry instance
masks (rows with the dataset's ``instances`` column, see
:class:`~nemo_hf.modeling.RISCollator`), ``objects`` adds object accuracy
(:class:`~nemo_hf.metrics.ObjectMetrics`: ``object_accuracy``, ``wrong_object_rate``,
``outcomes`` — ``target``, ``same_category``, ``other_object``, ``none`` — ``count``,
``no_target_count`` and the same ``groups``): which annotated object of the image each
prediction overlaps most.

>>> import torch
>>> from accelerate import Accelerator
>>> from PIL import Image
>>> from nemo_hf.modeling import RISCollator, load_referring_segmenter
>>> model, processor = load_referring_segmenter("nemo-hf/synthetic-clip")
>>> rows = [{"image": Image.new("RGB", (40, 30)), "mask": Image.new("1", (40, 30), 1),
...          "sentence": "all of it", "distractors": 0}]
>>> loader = torch.utils.data.DataLoader(rows, batch_size=1, collate_fn=RISCollator(processor, with_targets=True))
>>> result = evaluate_referring(model, loader, Accelerator(cpu=True))
>>> result["count"], sorted(result["groups"])
(1, ['distractors=0', 'size=medium'])

With the image's annotated objects (here the whole image is the target, object 7, and a
strip is another object, 8), object accuracy comes too:

>>> from pycocotools import mask as mask_utils
>>> def rle(mask): return mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))["counts"].decode()
>>> strip = np.zeros((30, 40), bool); strip[:, :4] = True
>>> rows[0] |= {"ann_id": 7, "instances": [{"ann_id": 7, "category_id": 1, "rle": rle(np.ones((30, 40)))},
...                                          {"ann_id": 8, "category_id": 2, "rle": rle(strip)}]}
>>> objects = evaluate_referring(model, loader, Accelerator(cpu=True))["objects"]
>>> sorted(objects["outcomes"]), objects["count"]
(['none', 'other_object', 'same_category', 'target'], 1)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator

from nemo_hf.metrics.gres import GRESMetrics
from nemo_hf.metrics.masks import pixel_counts
from nemo_hf.metrics.objects import ObjectMetrics, object_outcomes
from nemo_hf.metrics.protocol import group_labels
from nemo_hf.metrics.protocols import NEMO_HF, EvaluationProtocol, protocol as protocol_named
from nemo_hf.metrics.ris import DEFAULT_THRESHOLDS, RISMetrics
from nemo_hf.modeling.inference import produces
from nemo_hf.modeling.losses import per_sample_bce

__all__ = ["evaluate_referring", "sample_groups"]

_NOT_SCORED = -2  # outcome column of a sample without instance masks (not an ObjectMetrics code)


def sample_groups(
    distractors: Sequence[int], target_areas: Sequence[int], referring_hard: Sequence[int] | None = None
) -> list[list[str]]:
    """Group labels per sample; a negative distractor count or referring flag means "unknown" (no group).

    >>> sample_groups([2, -1], [10, 5000], [1, -1])
    [['distractors=2', 'size=small', 'referring=hard'], ['size=medium']]
    """
    hard = referring_hard if referring_hard is not None else [-1] * len(distractors)
    return [
        group_labels(distractors=None if d < 0 else int(d), mask_area=int(a), referring_hard=None if h < 0 else bool(h))
        for d, a, h in zip(distractors, target_areas, hard)
    ]


def _object_outcomes(
    predictions: Sequence[torch.Tensor], batch: Mapping[str, Any], protocol: EvaluationProtocol
) -> torch.Tensor:
    """Per sample the object outcome code (:mod:`nemo_hf.metrics.objects`), or ``_NOT_SCORED``.

    Computed here, where the masks are, so that only one integer per sample is gathered;
    the instance masks are brought to the protocol's frame, as the ground truth is.
    """
    codes = [_NOT_SCORED] * len(predictions)
    for i, (masks, roles) in enumerate(zip(batch.get("instance_masks") or (), batch.get("instance_roles") or ())):
        if masks is not None:
            instances = protocol.target(masks.to(predictions[i].device))
            (codes[i],) = object_outcomes([predictions[i]], [instances], [roles])
    return torch.tensor(codes, dtype=torch.int64)


def _model_inputs(batch: Mapping[str, Any]) -> dict[str, Any]:
    """What a model takes of a batch: every tensor that is not a target."""
    targets = {"labels", "target_masks", "distractors", "referring_hard", "instance_masks", "instance_roles"}
    return {key: value for key, value in batch.items() if key not in targets}


@torch.no_grad()
def evaluate_referring(
    model: Any,
    dataloader: Iterable[Mapping[str, Any]],
    accelerator: Accelerator,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    *,
    protocol: EvaluationProtocol | str = NEMO_HF,
    processor: Any = None,
) -> dict[str, Any]:
    """RIS metrics (and, for a model that gives logits, the loss) of ``model`` over ``dataloader``.

    ``dataloader`` yields :class:`~nemo_hf.modeling.RISCollator` batches built with
    ``with_targets=True`` (and, for a model that outputs masks, its ``encode``); in a
    distributed run it must be prepared by ``accelerator`` (``gather_for_metrics`` needs its
    end-of-data bookkeeping). ``protocol`` (a name or an
    :class:`~nemo_hf.metrics.protocols.EvaluationProtocol`) decides how predictions are
    scored; ``processor`` is needed by a model that outputs masks (it decodes its answer).
    Collective: call it on every process. Leaves the model in eval mode.
    """
    protocol = protocol_named(protocol)
    if hasattr(model, "eval"):
        model.eval()
    inner = accelerator.unwrap_model(model)
    makes_masks = produces(inner) == "masks"
    if makes_masks and processor is None:
        raise ValueError(f"{type(inner).__name__} outputs masks from its generated answer: pass its processor")
    metrics = RISMetrics(thresholds=thresholds, sync_processes=False, rules=protocol.iou)  # gathered per batch
    gres = GRESMetrics(sync_processes=False)
    objects = ObjectMetrics(sync_processes=False)
    scored_objects = False
    losses: list[float] = []
    for batch in dataloader:
        originals = [tuple(mask.shape) for mask in batch["target_masks"]]
        if makes_masks:
            with accelerator.autocast():
                segmentation = inner.segment(_model_inputs(batch), [protocol.score_size(s) for s in originals],
                                             processor, protocol)
            device = accelerator.device
            predictions = [mask.to(device) for mask in segmentation.masks]
        else:
            logits = model(pixel_values=batch["pixel_values"], input_ids=batch["input_ids"],
                           attention_mask=batch["attention_mask"]).logits
            device = logits.device
            predictions = protocol.prediction_masks(logits, originals, input_size=batch["pixel_values"].shape[-2:])
        targets = [protocol.target(mask.to(device)) for mask in batch["target_masks"]]
        counts = pixel_counts(predictions, targets)
        referring = batch.get("referring_hard", torch.full((len(targets),), -1, dtype=torch.int64))
        # the size groups read the object's area at its original size, whatever frame the protocol scores in
        areas = torch.stack([mask.sum(dtype=torch.int64) for mask in batch["target_masks"]]).to(device)
        columns = (counts.intersection, counts.union, counts.target_area, batch["distractors"].to(device),
                   counts.pred_area, _object_outcomes(predictions, batch, protocol).to(device), referring.to(device),
                   areas)
        per_sample = torch.stack([torch.as_tensor(column, device=device) for column in columns], dim=1)
        if makes_masks:
            per_sample = accelerator.gather_for_metrics(per_sample)
        else:
            loss = per_sample_bce(logits, batch["labels"].to(device))
            per_sample, loss = accelerator.gather_for_metrics((per_sample, loss))
            losses.extend(loss.double().cpu().tolist())
        per_sample = per_sample.cpu()
        groups = sample_groups(per_sample[:, 3].tolist(), per_sample[:, 7].tolist(), per_sample[:, 6].tolist())
        metrics.update_counts(per_sample[:, 0], per_sample[:, 1], groups=groups)
        gres.update_counts(per_sample[:, 0], per_sample[:, 4], per_sample[:, 2])
        scored = np.flatnonzero(per_sample[:, 5].numpy() != _NOT_SCORED)
        if scored.size:
            scored_objects = True
            objects.update_outcomes(per_sample[scored, 5], groups=[groups[i] for i in scored])
    result = metrics.compute()
    gres_result = gres.compute()
    if gres_result["no_target_count"]:
        result["gres"] = gres_result
    if scored_objects:
        result["objects"] = objects.compute()
    if losses:  # fsum is exactly rounded: the mean does not depend on the order the processes' samples arrive in
        result["loss"] = math.fsum(losses) / len(losses)
    return result
