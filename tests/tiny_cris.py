"""A tiny CRIS with random weights: the test fixture where a training step must take milliseconds.

CRIS's architecture (:class:`nemo_hf.modeling.CRISForReferringSegmentation`) on the towers
of :func:`tests.tiny_models.tiny_clip` (32 wide, 8-pixel patches), shrunk further: one
decoder layer of two heads, the stride-4 and stride-8 maps from the tower's two layers.
At the 64-pixel input the grid is 8×8 and the logits 32×32. Weights come from the seed
only; where a model is named (``load_referring_segmenter``, the training scripts'
``--model_name_or_path``), :func:`save_tiny_cris` gives a folder to name.
:func:`tiny_cris_resnet` is CRIS as its authors built it, on a ResNet CLIP
(:func:`tests.tiny_models.tiny_clip_resnet`): strides 8, 16, 32, logits 16×16 at 64 pixels.
:func:`two_boxes_rows` is a batch whose masks only the text decides.

    >>> from PIL import Image
    >>> model, processor = tiny_cris(seed=0)
    >>> batch = processor(text=["the red circle"], images=[Image.new("RGB", (80, 60))], return_tensors="pt")
    >>> model(**batch).logits.shape
    torch.Size([1, 32, 32])
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from transformers import CLIPProcessor

from nemo_hf.modeling import CRISForReferringSegmentation
from nemo_hf.modeling.processors import square_image_processor
from tests.tiny_models import tiny_clip, tiny_clip_resnet

__all__ = ["TINY_CRIS_CONFIG", "TINY_CRIS_IMAGE_SIZE", "TINY_CRIS_RESNET_CONFIG", "save_tiny_cris", "tiny_cris",
           "tiny_cris_resnet", "two_boxes_rows"]

TINY_CRIS_IMAGE_SIZE = 64
# CRISConfig fields over the tiny CLIP's defaults
TINY_CRIS_CONFIG = {"pyramid": "layers", "feature_layers": [1, 2], "decoder_layers": 1, "decoder_attention_heads": 2}
TINY_CRIS_RESNET_CONFIG = {"decoder_layers": 1, "decoder_attention_heads": 2}


def tiny_cris(seed: int = 0) -> tuple[CRISForReferringSegmentation, CLIPProcessor]:
    """A tiny ``CRISForReferringSegmentation`` on ``tiny_clip(seed)`` and its processor (64-pixel squares).

    Two calls with one seed give identical weights; the image processor is the PIL backend.

    >>> import torch
    >>> m1, _ = tiny_cris(3)
    >>> m2, _ = tiny_cris(3)
    >>> all(torch.equal(a, b) for a, b in zip(m1.state_dict().values(), m2.state_dict().values()))
    True
    """
    clip, clip_processor = tiny_clip(seed)
    model = CRISForReferringSegmentation.from_clip(clip, seed=seed, **TINY_CRIS_CONFIG)
    image_processor = square_image_processor(clip_processor.image_processor, TINY_CRIS_IMAGE_SIZE)
    return model, CLIPProcessor(image_processor=image_processor, tokenizer=clip_processor.tokenizer)


def save_tiny_cris(folder: Path, seed: int = 0) -> Path:
    """``folder`` holding :func:`tiny_cris` (``seed``) and its processor, as ``save_pretrained`` writes them.

    >>> import tempfile
    >>> from nemo_hf.modeling import load_referring_segmenter
    >>> model, processor = load_referring_segmenter(save_tiny_cris(Path(tempfile.mkdtemp())))
    >>> type(model).__name__, processor.image_processor.size["height"] == TINY_CRIS_IMAGE_SIZE
    ('CRISReferringSegmenter', True)
    """
    model, processor = tiny_cris(seed)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def tiny_cris_resnet(seed: int = 0, **config_overrides) -> tuple[CRISForReferringSegmentation, CLIPProcessor]:
    """A tiny CRIS on :func:`~tests.tiny_models.tiny_clip_resnet` (``seed``) and its processor (64-pixel squares).

    >>> model, processor = tiny_cris_resnet(seed=0)
    >>> model.config.backbone, model.config.pyramid
    ('clip_resnet', 'resnet')
    """
    clip, clip_processor = tiny_clip_resnet(seed)
    model = CRISForReferringSegmentation.from_clip(clip, seed=seed, **{**TINY_CRIS_RESNET_CONFIG, **config_overrides})
    image_processor = square_image_processor(clip_processor.image_processor, TINY_CRIS_IMAGE_SIZE)
    return model, CLIPProcessor(image_processor=image_processor, tokenizer=clip_processor.tokenizer)


def two_boxes_rows() -> list[dict]:
    """Two 64-pixel pictures, each with a red and a blue box on noise; one row per box: the text decides the mask.

    >>> [row["sentence"] for row in two_boxes_rows()]
    ['the red box', 'the blue box', 'the red box', 'the blue box']
    """
    rng = np.random.default_rng(0)
    rows = []
    for i in range(2):
        pixels = rng.integers(90, 160, (64, 64, 3), dtype=np.uint8)
        boxes = {"red": (4 + 20 * i, 8, 26 + 20 * i, 30), "blue": (30 - 20 * i, 36, 56 - 20 * i, 60)}
        masks = {}
        for colour, (top, left, bottom, right) in boxes.items():
            pixels[top:bottom, left:right] = (220, 30, 30) if colour == "red" else (30, 30, 220)
            masks[colour] = np.zeros((64, 64), bool)
            masks[colour][top:bottom, left:right] = True
        rows += [{"image": Image.fromarray(pixels), "mask": Image.fromarray(masks[colour]),
                  "sentence": f"the {colour} box"} for colour in boxes]
    return rows
