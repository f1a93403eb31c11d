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

For large evaluations prefer ``nemo_hf.metrics.RISMetrics`` itself: ``evaluate`` stores
every mask in an Arrow file before computing, RISMetrics keeps two integers per sentence.
"""

import datasets
import evaluate
import numpy as np

from nemo_hf.metrics.ris import DEFAULT_THRESHOLDS, RISMetrics

_DESCRIPTION = """
Referring image segmentation metrics, one score per expression, at the original image size:
overall_iou (oIoU) = sum of intersections / sum of unions over all sentences; mean_iou (mIoU) =
mean per-sentence IoU; precision@X = share of sentences with IoU >= X (X = 0.5 ... 0.9); count.
A sentence whose prediction and ground truth are both empty has IoU 1 and adds nothing to the sums.
Values are fractions in [0, 1]. With `groups`, the same keys per group under "groups".
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: boolean masks (H, W), one per sentence, at the original image size.
    references: ground-truth boolean masks, each with its prediction's shape.
    groups (configuration "grouped" only): per sentence, a list of group names,
        e.g. ["distractors=0", "size=small"]; load with evaluate.load(path, "grouped").
    thresholds (optional): IoU thresholds of the precision@X keys; default 0.5, 0.6, 0.7, 0.8, 0.9.
Returns:
    overall_iou, mean_iou, precision@X per threshold, count, groups (name -> the same keys).
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


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class RisMetric(evaluate.Metric):
    """oIoU, mIoU and precision@X of referring segmentation masks (see the module docstring)."""

    def _info(self) -> evaluate.MetricInfo:
        features = {"predictions": _MASK, "references": _MASK}
        if self.config_name == "grouped":
            features["groups"] = datasets.Sequence(datasets.Value("string"))
        elif self.config_name != "default":
            raise ValueError(f"unknown configuration {self.config_name!r} of ris_metric; use 'default' or 'grouped'")
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(features),
        )

    def _compute(self, predictions, references, groups=None, thresholds=DEFAULT_THRESHOLDS):
        # evaluate has already brought every process's examples here: no second gather
        metrics = RISMetrics(thresholds=thresholds, sync_processes=False)
        metrics.update([_as_mask(p) for p in predictions], [_as_mask(r) for r in references], groups)
        return metrics.compute()


def _as_mask(rows):
    # an (0, W) mask comes back from Arrow as [], which numpy reads as 1-D
    return np.asarray(rows, dtype=bool) if len(rows) else np.zeros((0, 0), dtype=bool)
