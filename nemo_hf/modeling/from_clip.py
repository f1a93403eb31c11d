"""A CLIPSeg referring segmenter built on any CLIP's towers: its weights loaded, the decoder new.

CLIPSeg (Lüddecke & Ecker, CVPR 2022) is CLIP plus a light decoder that reads three of the
vision tower's intermediate layers and is conditioned (FiLM) on the expression's CLIP text
embedding. ``CIDAS/clipseg-rd64-refined`` is that on OpenAI's ViT-B/16; this builds the
same architecture on another CLIP — the small ``nemo-hf/synthetic-clip`` that ships with
the package, or any ``CLIPModel`` checkpoint — so the segmenter starts from a CLIP that
knows the data. The decoder's weights come from ``seed`` alone, with PyTorch's fan-in
scaled initialisation (CLIPSeg's own draws unit-variance weights, which pretrained
checkpoints always overwrite; from scratch they start with huge logits).

The result is a plain ``CLIPSegForImageSegmentation`` and ``CLIPSegProcessor``: it saves,
loads and pushes like any transformers model. ``image_size`` may exceed the CLIP's: the
vision tower interpolates its position embeddings, so a CLIP trained at 64 pixels
segments at 96.

    >>> model, processor = clipseg_from_clip("nemo-hf/synthetic-clip", image_size=96, seed=0)
    >>> type(model).__name__, processor.image_processor.size["height"]
    ('CLIPSegForImageSegmentation', 96)
"""

from __future__ import annotations

import os

import torch
from torch import nn
from transformers import CLIPModel, CLIPProcessor, CLIPSegConfig, CLIPSegForImageSegmentation, CLIPSegProcessor

from nemo_hf.mining.clip import load_clip
from nemo_hf.modeling.processors import square_image_processor

__all__ = ["clipseg_from_clip"]


def clipseg_from_clip(
    clip: str | os.PathLike[str] | tuple[CLIPModel, CLIPProcessor],
    *,
    image_size: int | None = None,
    seed: int = 0,
    reduce_dim: int = 64,
    revision: str | None = None,
) -> tuple[CLIPSegForImageSegmentation, CLIPSegProcessor]:
    """A CLIPSeg on ``clip`` (a name, folder or ``(model, processor)``) with a seeded new decoder.

    The decoder reads the vision layers at 1/4, 2/4 and 3/4 of the tower's depth (CLIPSeg
    reads 3, 6 and 9 of ViT-B/16's 12; a tower of under 4 layers gives all of them); ``reduce_dim`` is its width (64 in
    ``clipseg-rd64``). Images are stretched to ``image_size`` squares (default: the CLIP's
    side) and normalised with the CLIP's mean and std.
    """
    model, processor = clip if isinstance(clip, tuple) else load_clip(str(clip), revision=revision)
    vision = model.config.vision_config
    depth = vision.num_hidden_layers
    # three distinct layers where the tower is deep enough, every layer of a shallower one
    extract = sorted({min(depth - 1, round(depth * q)) for q in (0.25, 0.5, 0.75)}) if depth >= 4 else list(range(depth))
    config = CLIPSegConfig(
        text_config=model.config.text_config.to_dict(),
        vision_config=vision.to_dict(),
        projection_dim=model.config.projection_dim,
        extract_layers=tuple(extract),
        reduce_dim=reduce_dim,
        decoder_num_attention_heads=max(1, reduce_dim // 16),
        decoder_intermediate_size=4 * reduce_dim,
        # the complex head upsamples by (patch // 4)², which equals the patch only for 16-pixel patches
        use_complex_transposed_convolution=vision.patch_size == 16,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        segmenter = CLIPSegForImageSegmentation(config)
        for module in segmenter.decoder.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
                module.reset_parameters()
    missing, unexpected = segmenter.clip.load_state_dict(model.state_dict(), strict=False)
    if missing or unexpected:
        raise ValueError(f"the CLIP's weights do not fit CLIPSeg's towers: missing {missing}, unexpected {unexpected}")
    image_processor = square_image_processor(processor.image_processor, int(image_size or vision.image_size))
    return segmenter.eval(), CLIPSegProcessor(image_processor=image_processor, tokenizer=processor.tokenizer)
