"""A tiny Florence-2 with random weights, and its processor, built offline: the fixture of the Florence-2 adapter.

``transformers`` runs Florence-2 natively (``Florence2ForConditionalGeneration``,
``Florence2Processor``). Its processor needs a BART tokenizer that knows Florence-2's
special tokens — ``<image>`` (the image's placeholder, ``image_token``), the 1000 location
tokens ``<loc_0>`` … ``<loc_999>``, ``<poly>``, ``</poly>``, ``<sep>`` — and an image
processor that says how many image tokens the vision tower gives (``image_seq_length``).
The published tokenizer (50k BPE merges) cannot be had offline, so this one is minimal and
built here: byte-level BPE over the 256 byte symbols plus merges for the words of the
task prompt and of the synthetic expressions (any other text still tokenizes, byte by
byte), with Florence-2's special tokens added. The model: a one-stage DaViT (16 channels)
and a one-layer BART (width 16), 32-pixel images (8 × 8 patches + 1 = 65 image tokens),
greedy generation of at most 24 tokens. What it generates is random; what it answers is
parsed and drawn like a real Florence-2's. :data:`TINY_FLORENCE2_SEED` is the seed whose
random answers hold a polygon with area (most seeds' repeat one point, an empty mask), so
its masks are not all empty.

    >>> from PIL import Image
    >>> model, processor = tiny_florence2()
    >>> batch = processor(images=[Image.new("RGB", (40, 30))], text=["<REFERRING_EXPRESSION_SEGMENTATION>the red one"],
    ...                   return_tensors="pt")
    >>> batch["pixel_values"].shape, int((batch["input_ids"] == processor.image_token_id).sum())
    (torch.Size([1, 3, 32, 32]), 65)
    >>> processor.tokenizer.tokenize("<loc_7><sep>")
    ['<loc_7>', '<sep>']
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers.pre_tokenizers import ByteLevel
from transformers import BartTokenizer, Florence2Config, Florence2ForConditionalGeneration, Florence2Processor
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

from tests.tiny_models import TINY_CLIP_WORDS

__all__ = ["TINY_FLORENCE2_IMAGE_SIZE", "TINY_FLORENCE2_SEED", "save_tiny_florence2", "tiny_florence2",
           "tiny_florence2_tokenizer"]

TINY_FLORENCE2_IMAGE_SIZE = 32
TINY_FLORENCE2_SEED = 3
# words of Florence-2's referring-segmentation prompt, "Locate {input} in the image with mask"
_PROMPT_WORDS = ("Locate", "in", "the", "image", "with", "mask")
_SPECIAL = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}


def tiny_florence2_tokenizer() -> BartTokenizer:
    """A byte-level BPE ``BartTokenizer`` with Florence-2's special tokens (module docstring)."""
    vocab = dict(_SPECIAL)
    for symbol in sorted(ByteLevel.alphabet()):
        vocab.setdefault(symbol, len(vocab))
    merges: list[tuple[str, str]] = []
    for word in dict.fromkeys(_PROMPT_WORDS + TINY_CLIP_WORDS):
        for form in (word, "Ġ" + word):  # at the start of the text, and after a space
            symbols = list(form)
            merged = symbols[0]
            for symbol in symbols[1:]:
                if (merged, symbol) not in merges:
                    merges.append((merged, symbol))
                merged += symbol
                vocab.setdefault(merged, len(vocab))
    vocab["<mask>"] = len(vocab)
    tokenizer = BartTokenizer(vocab=vocab, merges=merges, extra_special_tokens={"image_token": "<image>"})
    tokenizer.add_tokens([f"<loc_{i}>" for i in range(1000)] + ["<poly>", "</poly>", "<sep>"])
    return tokenizer


def tiny_florence2(seed: int = TINY_FLORENCE2_SEED) -> tuple[Florence2ForConditionalGeneration, Florence2Processor]:
    """The tiny ``Florence2ForConditionalGeneration`` (weights from ``seed`` only) and its processor.

    >>> m1, _ = tiny_florence2(2)
    >>> m2, _ = tiny_florence2(2)
    >>> all(torch.equal(a, b) for a, b in zip(m1.parameters(), m2.parameters()))
    True
    """
    tokenizer = tiny_florence2_tokenizer()
    text_config = {
        "model_type": "bart", "vocab_size": len(tokenizer), "max_position_embeddings": 128, "d_model": 16,
        "encoder_layers": 1, "decoder_layers": 1, "encoder_ffn_dim": 16, "decoder_ffn_dim": 16,
        "encoder_attention_heads": 1, "decoder_attention_heads": 1, "bos_token_id": 0, "pad_token_id": 1,
        "eos_token_id": 2, "decoder_start_token_id": 2, "forced_bos_token_id": 0, "forced_eos_token_id": 2,
    }
    vision_config = {
        "depths": [1], "patch_size": [7], "patch_stride": [4], "patch_padding": [3], "patch_prenorm": [False],
        "embed_dim": [16], "num_heads": [1], "num_groups": [1], "window_size": 12, "projection_dim": 16,
    }
    config = Florence2Config(text_config=text_config, vision_config=vision_config,
                             image_token_id=tokenizer.image_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Florence2ForConditionalGeneration(config).eval()
    model.generation_config.max_new_tokens = 24
    model.generation_config.num_beams = 1
    image_processor = CLIPImageProcessorPil(
        size={"height": TINY_FLORENCE2_IMAGE_SIZE, "width": TINY_FLORENCE2_IMAGE_SIZE}, do_center_crop=False,
        image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225],
    )
    # the vision tower's tokens: (32 / 4)^2 patches and one pooled token
    image_processor.image_seq_length = (TINY_FLORENCE2_IMAGE_SIZE // 4) ** 2 + 1
    processor = Florence2Processor(image_processor=image_processor, tokenizer=tokenizer,
                                   post_processor_config={"polygons": {}})
    return model, processor


def save_tiny_florence2(folder: Path, seed: int = TINY_FLORENCE2_SEED) -> Path:
    """``folder`` holding :func:`tiny_florence2` and its processor, as ``save_pretrained`` writes them.

    >>> import tempfile
    >>> from nemo_hf.modeling import load_referring_segmenter
    >>> model, processor = load_referring_segmenter(save_tiny_florence2(Path(tempfile.mkdtemp())))
    >>> type(model).__name__, type(processor).__name__, processor.num_image_tokens
    ('Florence2ReferringSegmenter', 'Florence2Processor', 65)
    """
    model, processor = tiny_florence2(seed)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder
