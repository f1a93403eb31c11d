"""Referring segmentation models behind one small interface, and what runs them.

- :class:`ReferringSegmenter` — the interface: ``(pixel_values, input_ids,
  attention_mask) → (B, h, w)`` mask logits, plus ``save_pretrained``.
- :class:`CLIPSegReferringSegmenter` — CLIPSeg (``CLIPSegForImageSegmentation``) with a
  chosen trainable part: ``"decoder"`` (default; the CLIP backbone is frozen, as
  ``transformers`` runs it without gradients) or ``"decoder+text"``.
- :func:`load_referring_segmenter` — by Hub id, local folder or shipped name
  (``nemo-hf/synthetic-clip``); a CLIP checkpoint becomes a CLIPSeg on its towers
  (:func:`clipseg_from_clip`).
- :class:`RISCollator` — dataset rows → model batch (and evaluation targets).
- :func:`evaluate_referring` — oIoU, mIoU, Prec@X per sentence, exact across processes.
- :func:`predict_masks`, :func:`save_prediction_grid` — a PNG of predictions.
- :mod:`nemo_hf.modeling.pipeline` — the ``referring-image-segmentation`` pipeline task
  (``nemo_hf.pipeline``; not imported here: transformers' pipelines take seconds to load).

>>> model, processor = load_referring_segmenter("nemo-hf/synthetic-clip")
>>> isinstance(model, ReferringSegmenter)
True
"""

from nemo_hf.modeling.clipseg import (
    TRAINABLE_CHOICES,
    CLIPSegReferringSegmenter,
    Trainable,
)
from nemo_hf.modeling.evaluation import evaluate_referring, sample_groups
from nemo_hf.modeling.inputs import (
    MAX_TEXT_TOKENS,
    RISCollator,
    mask_to_label,
    target_mask,
)
from nemo_hf.modeling.from_clip import clipseg_from_clip
from nemo_hf.modeling.interface import ReferringSegmenter, per_sample_bce, per_sample_dice
from nemo_hf.modeling.loading import (
    DEFAULT_CHECKPOINT,
    load_referring_segmenter,
)
from nemo_hf.modeling.predictions import predict_masks, save_prediction_grid

__all__ = [
    "DEFAULT_CHECKPOINT",
    "MAX_TEXT_TOKENS",
    "TRAINABLE_CHOICES",
    "CLIPSegReferringSegmenter",
    "RISCollator",
    "ReferringSegmenter",
    "Trainable",
    "clipseg_from_clip",
    "evaluate_referring",
    "load_referring_segmenter",
    "mask_to_label",
    "per_sample_bce",
    "per_sample_dice",
    "predict_masks",
    "sample_groups",
    "save_prediction_grid",
    "target_mask",
]
