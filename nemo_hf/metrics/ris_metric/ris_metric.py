"""`evaluate` metric for referring image segmentation: a thin wrapper of nemo_hf's RISMetrics.

Load it offline from its folder (``evaluate.load`` copies this script into its module cache,
so it imports ``nemo_hf`` rather than sitting next to it). The ``"grouped"`` configuration
adds a ``groups`` input, because an ``evaluate`` module's inputs are all required::

    import evaluate
    from nemo_hf.metrics import evaluate_module_path

    ris = evaluate.load(str(evaluate_module_path()))
    ris.add_batch(predictions=pred_masks, references=gt_masks)
    ris.compute()

    grouped = evaluate.load(str(evaluate_module_path()), "grouped")
    grouped.compute(predictions=pred_masks, references=gt_masks, groups=[["distractors=0"], ...])

The ``"objects"`` configuration (``"objects_grouped"`` with ``groups``) adds object accuracy
(``nemo_hf.metrics.ObjectMetrics``): per sentence, the image's annotated instance masks
``(K, H, W)`` and their roles (0 target, 1 same-category distractor, 2 other object; see
``nemo_hf.metrics.instance_roles``); the result gains ``objects``::

    objects = evaluate.load(str(evaluate_module_path()), "objects")
    objects.compute(predictions=pred_masks, references=gt_masks,
                    instance_masks=masks_per_sentence, instance_roles=roles_per_sentence)

For large evaluations prefer ``nemo_hf.metrics.RISMetrics`` itself: ``evaluate`` stores
every mask in an Arrow file before computing, RISMetrics keeps two integers per sentence.
"""

import datasets
import evaluate
import numpy as np

from nemo_hf.metrics.objects import ObjectMetrics
from nemo_hf.metrics.ris import DEFAULT_THRESHOLDS, RISMetrics

_DESCRIPTION = """
Referring image segmentation metrics, one score per expression, at the original image size:
overall_iou (oIoU) = sum of intersections / sum of unions over all sentences; mean_iou (mIoU) =
mean per-sentence IoU; precision@X = share of sentences with IoU >= X (X = 0.5 ... 0.9); count.
A sentence whose prediction and ground truth are both empty has IoU 1 and adds nothing to the sums.
Values are fractions in [0, 1]. With `groups`, the same keys per group under "groups".
Configurations "objects" and "objects_grouped" add "objects": object_accuracy (share of sentences whose
prediction overlaps a target most, by IoU with each annotated instance of the image), wrong_object_rate
(share choosing another instance), outcomes {target, same_category, other_object, none}, count,
no_target_count and groups.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: boolean masks (H, W), one per sentence, at the original image size.
    references: ground-truth boolean masks, each with its prediction's shape.
    groups (configurations "grouped" and "objects_grouped"): per sentence, a list of group names,
        e.g. ["distractors=0", "size=small"]; load with evaluate.load(path, "grouped").
    instance_masks (configurations "objects" and "objects_grouped"): per sentence, the boolean
        masks (K, H, W) of every annotated instance of its image, at its prediction's size.
    instance_roles (the same configurations): per sentence, K roles: 0 target, 1 same-category
        distractor, 2 other object (nemo_hf.metrics.instance_roles computes them).
    thresholds (optional): IoU thresholds of the precision@X keys; default 0.5, 0.6, 0.7, 0.8, 0.9.
    min_iou (optional, objects only): the chosen instance's IoU must reach it, else "none"; default 0.
Returns:
    overall_iou, mean_iou, precision@X per threshold, count, groups (name -> the same keys);
    with the objects configurations also objects (object_accuracy, wrong_object_rate, outcomes, ...).
Examples:
    >>> import evaluate
    >>> import numpy as np
    >>> from nemo_hf.metrics import evaluate_module_path
    >>> ris = evaluate.load(str(evaluate_module_path()))
    >>> gt = np.eye(3, dtype=bool)
    >>> ris.compute(predictions=[gt], references=[gt], thresholds=[0.5])["overall_iou"]
    1.0
"""

_CITATION = """
@inproceedings{ha2024nemo,
  title={Finding NeMo: Negative-mined Mosaic Augmentation for Referring Image Segmentation},
  author={Ha, Seongsu and Kim, Chaeyun and Kim, Donghwa and Lee, Junho and Lee, Sangho and Lee, Joonseok},
  booktitle={European Conference on Computer Vision (ECCV)},
  year={2024}
}
"""

_MASK = datasets.Sequence(datasets.Sequence(datasets.Value("bool")))
_CONFIGURATIONS = ("default", "grouped", "objects", "objects_grouped")


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class RisMetric(evaluate.Metric):
    """oIoU, mIoU and precision@X of referring segmentation masks (see the module docstring)."""

    def _info(self) -> evaluate.MetricInfo:
        if self.config_name not in _CONFIGURATIONS:
            raise ValueError(f"unknown configuration {self.config_name!r} of ris_metric; use 'default' or 'grouped' "
                             "(RIS metrics), 'objects' or 'objects_grouped' (with object accuracy)")
        features = {"predictions": _MASK, "references": _MASK}
        if self.config_name.endswith("grouped"):
            features["groups"] = datasets.Sequence(datasets.Value("string"))
        if self.config_name.startswith("objects"):
            features["instance_masks"] = datasets.Sequence(_MASK)
            features["instance_roles"] = datasets.Sequence(datasets.Value("int64"))
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(features),
        )

    def _compute(self, predictions, references, groups=None, instance_masks=None, instance_roles=None,
                 thresholds=DEFAULT_THRESHOLDS, min_iou=0.0):
        # evaluate has already brought every process's examples here: no second gather
        metrics = RISMetrics(thresholds=thresholds, sync_processes=False)
        preds = [_as_mask(p) for p in predictions]
        metrics.update(preds, [_as_mask(r) for r in references], groups)
        result = metrics.compute()
        if instance_masks is not None:
            objects = ObjectMetrics(min_iou=min_iou, sync_processes=False)
            masks = [_as_masks(m, pred.shape) for m, pred in zip(instance_masks, preds)]
            objects.update(preds, masks, [np.asarray(r, dtype=np.int64) for r in instance_roles], groups)
            result["objects"] = objects.compute()
        return result


def _as_mask(rows):
    # an (0, W) mask comes back from Arrow as [], which numpy reads as 1-D
    return np.asarray(rows, dtype=bool) if len(rows) else np.zeros((0, 0), dtype=bool)


def _as_masks(stack, shape):
    # an image without instances comes back as [], which numpy reads as 1-D
    return np.asarray(stack, dtype=bool) if len(stack) else np.zeros((0, *shape), dtype=bool)
