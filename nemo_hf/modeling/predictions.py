"""Predicted masks for a few samples, and a PNG that shows them beside the ground truth.

One row per sample: the image with its expression, the prediction and the ground truth,
each mask drawn over the image (outside dimmed, outlined in yellow) with the sentence's IoU.

>>> import tempfile
>>> from PIL import Image
>>> from nemo_hf.modeling import load_referring_segmenter
>>> model, processor = load_referring_segmenter("nemo-hf/synthetic-clip")
>>> images, sentences = [Image.new("RGB", (40, 30), "white")], ["the white square"]
>>> predictions = predict_masks(model, processor, images, sentences)
>>> predictions[0].shape, predictions[0].dtype
((30, 40), dtype('bool'))
>>> path = save_prediction_grid(images, sentences, predictions, predictions, tempfile.mkdtemp() + "/p.png")
>>> Image.open(path).size
(768, 318)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers import ProcessorMixin

from nemo_hf.metrics.protocols import NEMO_HF, EvaluationProtocol
from nemo_hf.metrics.ris import sentence_iou
from nemo_hf.modeling.inference import as_inference
from nemo_hf.modeling.inputs import target_mask
from nemo_hf.viz import caption_tile, save_tile_sheet

__all__ = ["predict_masks", "save_prediction_grid"]


@torch.no_grad()
def predict_masks(
    model: Any,
    processor: ProcessorMixin,
    images: Sequence[Image.Image],
    sentences: Sequence[str],
    *,
    batch_size: int = 8,
    protocol: EvaluationProtocol = NEMO_HF,
) -> list[np.ndarray]:
    """Boolean masks at each image's own size, one per (image, sentence) pair, from any segmenter of the registry.

    ``model`` follows the inference protocol (:mod:`nemo_hf.modeling.inference`), or is any
    module whose call gives ``.logits`` (:class:`~nemo_hf.modeling.interface.ReferringSegmenter`): a
    CLIPSeg's or CRIS's masks are its logits made into masks as ``protocol`` says (default:
    bilinear, ``sigmoid > 0.5``), Florence-2's are its polygons. Runs on the device of the
    model's parameters, in the model's current dtype.
    """
    if len(images) != len(sentences):
        raise ValueError(f"got {len(images)} images but {len(sentences)} sentences")
    model = as_inference(model)
    masks: list[np.ndarray] = []
    for start in range(0, len(images), batch_size):
        chunk = [image.convert("RGB") for image in images[start : start + batch_size]]
        inputs = model.encode(processor, chunk, list(sentences[start : start + batch_size]))
        sizes = [protocol.score_size((image.height, image.width)) for image in chunk]
        masks.extend(mask.cpu().numpy() for mask in model.segment(inputs, sizes, processor, protocol).masks)
    return masks


def save_prediction_grid(
    images: Sequence[Image.Image],
    sentences: Sequence[str],
    predictions: Sequence[np.ndarray],
    targets: Sequence[object],
    path: str | Path,
) -> Path:
    """Save a PNG with one row per sample: image + expression | prediction (IoU) | ground truth.

    ``targets`` are ground-truth masks (PIL or arrays, non-zero is the object) at the
    images' sizes, like ``predictions``.
    """
    if not images or not len(images) == len(sentences) == len(predictions) == len(targets):
        raise ValueError(
            f"need as many images ({len(images)}), sentences ({len(sentences)}), predictions "
            f"({len(predictions)}) and targets ({len(targets)}), at least one"
        )
    tiles = []
    for image, sentence, prediction, target in zip(images, sentences, predictions, targets):
        truth = target_mask(target)
        iou = sentence_iou(int((prediction & truth).sum()), int((prediction | truth).sum()))
        tiles += [
            caption_tile(image, None, f'"{sentence}"'),
            caption_tile(image, prediction, f"prediction (IoU {iou:.2f})"),
            caption_tile(image, truth, "ground truth"),
        ]
    return save_tile_sheet(tiles, path, columns=3)
