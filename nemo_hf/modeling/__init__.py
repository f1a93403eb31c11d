"""Referring segmentation models behind one small interface, and what runs them.

- :mod:`~nemo_hf.modeling.interface` — the interface: ``(pixel_values, input_ids,
  attention_mask[, labels]) →`` :class:`ReferringSegmenterOutput` (``logits`` ``(B, h, w)``,
  ``loss`` with labels), plus ``save_pretrained``; :mod:`~nemo_hf.modeling.losses` — the losses
  a model's config can name (BCE, BCE + Dice).
- :mod:`~nemo_hf.modeling.registry` — the one list of architectures (:class:`Architecture`):
  :data:`~nemo_hf.modeling.clipseg.CLIPSEG` — CLIPSeg (``CLIPSegForImageSegmentation``) with a chosen
  trainable part: ``"decoder"`` (default; the CLIP backbone is frozen, as ``transformers``
  runs it without gradients), ``"decoder+text"`` or ``"all"``;
  :data:`~nemo_hf.modeling.cris.segmenter.CRIS` — CRIS (Wang et al., CVPR 2022) on CLIP's towers
  (:class:`CRISForReferringSegmentation`, :class:`CRISConfig`): OpenAI's ResNet CLIPs as CRIS
  (:class:`CLIPResNetModel`), or a ViT CLIP; trained whole by default;
  :data:`~nemo_hf.modeling.florence2.FLORENCE2` — Florence-2 (``transformers``' native
  ``Florence2ForConditionalGeneration``), inference only: its polygons drawn as masks
  (:mod:`~nemo_hf.modeling.polygons`).
- :mod:`~nemo_hf.modeling.inference` — the inference protocol every architecture follows
  (inputs, raw output, masks at each image's size and a score), which the pipeline,
  :func:`predict_masks`, evaluation and the explorer use.
- :func:`load_referring_segmenter` — by Hub id, local folder or shipped name
  (``nemo-hf/synthetic-clip``); a CLIP checkpoint becomes a segmenter on its towers.
- :class:`RISCollator` — dataset rows → model batch (and evaluation targets).
- :func:`evaluate_referring` — oIoU, mIoU, Prec@X per sentence, exact across processes, under
  nemo_hf's protocol or a paper's (:mod:`nemo_hf.metrics.protocols`).
- :func:`predict_masks`, :func:`save_prediction_grid` — a PNG of predictions.
- :mod:`~nemo_hf.modeling.pipeline` — the ``referring-image-segmentation`` pipeline task.

Importing this package registers CRIS with ``AutoConfig``/``AutoModel`` and the
``referring-image-segmentation`` task with ``transformers.pipeline`` (both ordinary calls made
at import: import ``nemo_hf.modeling`` before asking ``transformers`` for either).

>>> model, processor = load_referring_segmenter("nemo-hf/synthetic-clip")
>>> isinstance(model, ReferringSegmenter), model.segmentation_loss
(True, 'bce')
"""

from nemo_hf.modeling.architecture import Architecture
from nemo_hf.modeling.clipseg import CLIPSegReferringSegmenter
from nemo_hf.modeling.cris.clip_resnet import CLIPResNetConfig, CLIPResNetModel
from nemo_hf.modeling.cris.configuration import CRISConfig
from nemo_hf.modeling.cris.model import CRISForReferringSegmentation, CRISOutput
from nemo_hf.modeling.cris.segmenter import CRISReferringSegmenter
from nemo_hf.modeling.evaluation import evaluate_referring, sample_groups
from nemo_hf.modeling.florence2 import Florence2ReferringSegmenter
from nemo_hf.modeling.from_clip import clipseg_from_clip
from nemo_hf.modeling.inference import Segmentation
from nemo_hf.modeling.inputs import MAX_TEXT_TOKENS, RISCollator, mask_to_label, target_mask
from nemo_hf.modeling.interface import ReferringSegmenter, ReferringSegmenterOutput
from nemo_hf.modeling.loading import DEFAULT_CHECKPOINT, load_referring_segmenter
from nemo_hf.modeling.losses import (
    SEGMENTATION_LOSSES,
    SegmentationLoss,
    labels_at,
    per_sample_bce,
    per_sample_dice,
    segmentation_loss,
)
from nemo_hf.modeling.parts import TRAINABLE_CHOICES, PartwiseSegmenter, Trainable
from nemo_hf.modeling.pipeline import ReferringSegmentationPipeline
from nemo_hf.modeling.predictions import predict_masks, save_prediction_grid
from nemo_hf.modeling.registry import ARCHITECTURES, SEGMENTER_TYPES, TRAINABLE_SEGMENTER_TYPES, architecture

__all__ = [
    "ARCHITECTURES",
    "DEFAULT_CHECKPOINT",
    "MAX_TEXT_TOKENS",
    "SEGMENTATION_LOSSES",
    "SEGMENTER_TYPES",
    "TRAINABLE_CHOICES",
    "TRAINABLE_SEGMENTER_TYPES",
    "Architecture",
    "CLIPResNetConfig",
    "CLIPResNetModel",
    "CLIPSegReferringSegmenter",
    "CRISConfig",
    "CRISForReferringSegmentation",
    "CRISOutput",
    "CRISReferringSegmenter",
    "Florence2ReferringSegmenter",
    "PartwiseSegmenter",
    "RISCollator",
    "ReferringSegmentationPipeline",
    "ReferringSegmenter",
    "ReferringSegmenterOutput",
    "Segmentation",
    "SegmentationLoss",
    "Trainable",
    "architecture",
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
    "segmentation_loss",
    "target_mask",
]
