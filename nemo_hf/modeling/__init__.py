"""Referring segmentation models behind one small interface, and what runs them.

- :class:`ReferringSegmenter` — the interface: ``(pixel_values, input_ids,
  attention_mask) → (B, h, w)`` mask logits, plus ``save_pretrained``.
- :class:`CLIPSegReferringSegmenter` — CLIPSeg (``CLIPSegForImageSegmentation``) with a
  chosen trainable part: ``"decoder"`` (default; the CLIP backbone is frozen, as
  ``transformers`` runs it without gradients), ``"decoder+text"`` or ``"all"``.
- :class:`CRISForReferringSegmentation` (:class:`CRISConfig`) — CRIS (Wang et al., CVPR
  2022) on CLIP's towers, a ``transformers`` model registered with ``AutoConfig`` and
  ``AutoModel`` by this import; :class:`CRISReferringSegmenter` trains it whole by default.
- :func:`load_referring_segmenter` — by Hub id, local folder or shipped name
  (``nemo-hf/synthetic-clip``); a CLIP checkpoint becomes a CLIPSeg on its towers
  (:func:`clipseg_from_clip`), or a CRIS with ``model_type="cris"``.
- :class:`RISCollator` — dataset rows → model batch (and evaluation targets).
- :func:`evaluate_referring` — oIoU, mIoU, Prec@X per sentence, exact across processes.
- :func:`predict_masks`, :func:`save_prediction_grid` — a PNG of predictions.
- :mod:`nemo_hf.modeling.pipeline` — the ``referring-image-segmentation`` pipeline task
  (``nemo_hf.pipeline``; not imported here: transformers' pipelines take seconds to load).

>>> model, processor = load_referring_segmenter("nemo-hf/synthetic-clip")
>>> isinstance(model, ReferringSegmenter)
True
"""

from nemo_hf.modeling.clipseg import CLIPSegReferringSegmenter
from nemo_hf.modeling.cris import (
    CRISConfig,
    CRISForReferringSegmentation,
    CRISOutput,
    CRISReferringSegmenter,
)
from nemo_hf.modeling.evaluation import evaluate_referring, sample_groups
from nemo_hf.modeling.inputs import (
    MAX_TEXT_TOKENS,
    RISCollator,
    mask_to_label,
    target_mask,
)
from nemo_hf.modeling.from_clip import clipseg_from_clip
from nemo_hf.modeling.interface import ReferringSegmenter, labels_at, per_sample_bce, per_sample_dice
from nemo_hf.modeling.loading import (
    DEFAULT_CHECKPOINT,
    SEGMENTER_TYPES,
    SegmenterType,
    load_referring_segmenter,
)
from nemo_hf.modeling.parts import TRAINABLE_CHOICES, PartwiseSegmenter, Trainable
from nemo_hf.modeling.predictions import predict_masks, save_prediction_grid

__all__ = [
    "DEFAULT_CHECKPOINT",
    "MAX_TEXT_TOKENS",
    "SEGMENTER_TYPES",
    "TRAINABLE_CHOICES",
    "CLIPSegReferringSegmenter",
    "CRISConfig",
    "CRISForReferringSegmentation",
    "CRISOutput",
    "CRISReferringSegmenter",
    "PartwiseSegmenter",
    "RISCollator",
    "ReferringSegmenter",
    "SegmenterType",
    "Trainable",
    "clipseg_from_clip",
    "evaluate_referring",
    "labels_at",
    "load_referring_segmenter",
    "mask_to_label",
    "per_sample_bce",
    "per_sample_dice",
    "predict_masks",
    "sample_groups",
    "save_prediction_grid",
    "target_mask",
]
