"""Tiny, offline, deterministic models for tests and demos.

Nothing here touches the network: the tokenizer is built from an in-code vocabulary and
merge list, the model from a small config, and the weights from a seeded generator, so
``tiny_clip(0)`` is the same model on every machine and every run.

    >>> from nemo_hf.testing.tiny_models import tiny_clip
    >>> model, processor = tiny_clip(seed=0)
    >>> batch = processor(text=["the red circle on the left"], return_tensors="pt")
    >>> model.get_text_features(**batch).pooler_output.shape
    torch.Size([1, 16])
"""

from __future__ import annotations

import torch
from transformers import CLIPConfig, CLIPModel, CLIPProcessor, CLIPTokenizer
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

__all__ = ["TINY_CLIP_IMAGE_SIZE", "TINY_CLIP_WORDS", "tiny_clip", "tiny_clip_tokenizer", "tiny_text_config"]

TINY_CLIP_IMAGE_SIZE = 32

# Words of the synthetic referring expressions (colours, shapes, positions, relations).
# Whole words get their own token; any other ASCII text still tokenizes, character by
# character, because every printable character is in the vocabulary.
TINY_CLIP_WORDS: tuple[str, ...] = (
    # colours
    "red", "green", "blue", "yellow", "orange", "purple", "pink", "brown", "black",
    "white", "gray", "grey", "cyan", "magenta", "dark", "light",
    # shapes and things
    "circle", "square", "triangle", "rectangle", "ellipse", "star", "disk", "box",
    "ball", "blob", "shape", "object", "thing", "one", "man", "woman", "person", "dog",
    "cat", "car", "photo",
    # positions and relations
    "left", "right", "top", "bottom", "middle", "center", "centre", "upper", "lower",
    "above", "below", "under", "over", "near", "far", "front", "behind", "back", "next",
    "closest", "leftmost", "rightmost", "corner",
    # sizes and ordinals
    "big", "small", "large", "tiny", "bigger", "smaller", "largest", "smallest", "first",
    "second", "third", "two", "three",
    # function words
    "the", "a", "an", "of", "to", "in", "on", "at", "with", "and", "is", "that", "it",
)  # fmt: skip

_BOS, _EOS = "<|startoftext|>", "<|endoftext|>"
_EOW = "</w>"


def _word_merges(word: str) -> list[tuple[str, str]]:
    """Left-to-right merges that turn ``word``'s characters into one end-of-word token."""
    merges: list[tuple[str, str]] = []
    current = word[0] if len(word) > 1 else word[0] + _EOW
    for i, char in enumerate(word[1:], start=1):
        piece = char + _EOW if i == len(word) - 1 else char
        merges.append((current, piece))
        current = current + piece
    return merges


def _byte_alphabet() -> list[str]:
    """The 256 printable characters byte-level BPE uses for the 256 byte values."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    shifted = [256 + i for i in range(256 - len(printable))]
    others = [b for b in range(256) if b not in printable]
    mapping = dict(zip(printable + others, printable + shifted, strict=True))
    return [chr(mapping[b]) for b in range(256)]


def tiny_clip_tokenizer() -> CLIPTokenizer:
    """A CLIP BPE tokenizer with a vocabulary of about 800 tokens, built without any file.

    Every byte has a token (as in CLIP), so any text tokenizes without unknown tokens.

    >>> tok = tiny_clip_tokenizer()
    >>> tok.convert_ids_to_tokens(tok("the red circle")["input_ids"])
    ['<|startoftext|>', 'the</w>', 'red</w>', 'circle</w>', '<|endoftext|>']
    >>> tok.unk_token_id in tok("ünïcode, 42!")["input_ids"][1:-1]
    False
    """
    vocab: dict[str, int] = {_BOS: 0, _EOS: 1}
    for char in _byte_alphabet():
        for token in (char, char + _EOW):
            vocab.setdefault(token, len(vocab))
    merges: list[tuple[str, str]] = []
    for word in TINY_CLIP_WORDS:
        for left, right in _word_merges(word):
            if (left, right) not in merges:
                merges.append((left, right))
            vocab.setdefault(left + right, len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)


def tiny_text_config(tokenizer: CLIPTokenizer) -> dict[str, int]:
    """The text tower of the tiny models (2 layers, width 32), its special ids the tokenizer's."""
    return {
        "vocab_size": len(tokenizer),
        "hidden_size": 32,
        "intermediate_size": 37,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "max_position_embeddings": 77,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }


def tiny_clip(seed: int = 0) -> tuple[CLIPModel, CLIPProcessor]:
    """A tiny ``CLIPModel`` (projection dim 16, 32-pixel images) and its processor.

    Weights come from ``seed`` only (the global torch generator is left untouched), so
    two calls with the same seed give identical models. The image processor is the PIL
    backend, pinned so results do not depend on whether torchvision is installed.

    >>> m1, _ = tiny_clip(1)
    >>> m2, _ = tiny_clip(1)
    >>> bool(torch.equal(m1.visual_projection.weight, m2.visual_projection.weight))
    True
    """
    tokenizer = tiny_clip_tokenizer()
    config = CLIPConfig(
        text_config=tiny_text_config(tokenizer),
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": TINY_CLIP_IMAGE_SIZE,
            "patch_size": 8,
        },
        projection_dim=16,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLIPModel(config).eval()
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": TINY_CLIP_IMAGE_SIZE},
        crop_size={"height": TINY_CLIP_IMAGE_SIZE, "width": TINY_CLIP_IMAGE_SIZE},
    )
    return model, CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer)
