"""A tiny CLIP with random weights: the test fixture where speed matters and what CLIP knows does not.

Nothing here touches the network: the tokenizer is :func:`nemo_hf.synthetic.word_tokenizer`
of :data:`TINY_CLIP_WORDS`, the model comes from a small config and the weights from a
seeded generator, so ``tiny_clip(0)`` is the same model on every machine and every run.
Code that needs a CLIP that knows the synthetic world uses the shipped
``nemo-hf/synthetic-clip`` instead; a test that needs this one by name saves it to a
folder and passes the folder.

    >>> model, processor = tiny_clip(seed=0)
    >>> batch = processor(text=["the red circle on the left"], return_tensors="pt")
    >>> model.get_text_features(**batch).pooler_output.shape
    torch.Size([1, 16])
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import CLIPConfig, CLIPModel, CLIPProcessor, CLIPTokenizer
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

from nemo_hf.modeling.cris.clip_resnet import (
    OPEN_CLIP_CONFIG,
    OPENAI_MEAN,
    OPENAI_STD,
    CLIPResNetConfig,
    CLIPResNetModel,
    openai_state_dict,
)
from nemo_hf.synthetic import word_tokenizer

__all__ = ["TINY_CLIP_IMAGE_SIZE", "TINY_CLIP_WORDS", "save_tiny_clip", "save_tiny_open_clip_resnet", "tiny_clip",
           "tiny_clip_resnet", "tiny_text_config"]

TINY_CLIP_IMAGE_SIZE = 32

# Words of the synthetic referring expressions (colours, shapes, positions, relations).
# Whole words get their own token; any other text still tokenizes, byte by byte.
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
    tokenizer = word_tokenizer(TINY_CLIP_WORDS)
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


def save_tiny_clip(folder: Path, seed: int = 0) -> Path:
    """``folder`` holding :func:`tiny_clip` (``seed``) and its processor: a CLIP to name by path.

    >>> import tempfile
    >>> from nemo_hf.mining import load_clip
    >>> model, _ = load_clip(save_tiny_clip(Path(tempfile.mkdtemp()), seed=1))
    >>> bool(torch.equal(model.visual_projection.weight, tiny_clip(1)[0].visual_projection.weight))
    True
    """
    model, processor = tiny_clip(seed)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


# a ResNet CLIP at the scale of tiny_clip: one block per stage, stem 8 wide (stages 32, 64, 128, 256; attention pool
# 256 wide with 4 heads), trained side 64 (a 2x2 attention-pool grid), the same text tower
TINY_CLIP_RESNET = {"vision_layers": [1, 1, 1, 1], "vision_width": 8, "image_size": 64, "projection_dim": 16}


def tiny_clip_resnet(seed: int = 0) -> tuple[CLIPResNetModel, CLIPProcessor]:
    """A tiny :class:`~nemo_hf.modeling.CLIPResNetModel` (OpenAI's RN50 design, shrunk) and its processor.

    Weights from ``seed`` only; the tokenizer is :func:`tiny_clip`'s, the images OpenAI's
    mean and std at 64 pixels.

    >>> model, processor = tiny_clip_resnet(seed=0)
    >>> [m.shape[1] for m in model.vision_model(torch.zeros(1, 3, 64, 64))]
    [32, 64, 128, 256]
    """
    tokenizer = word_tokenizer(TINY_CLIP_WORDS)
    config = CLIPResNetConfig(text_config=tiny_text_config(tokenizer), **TINY_CLIP_RESNET)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLIPResNetModel(config).eval()
    side = TINY_CLIP_RESNET["image_size"]
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": side}, crop_size={"height": side, "width": side},
                                            image_mean=list(OPENAI_MEAN), image_std=list(OPENAI_STD))
    return model, CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer)


def save_tiny_open_clip_resnet(folder: Path, seed: int = 0) -> Path:
    """``folder`` holding :func:`tiny_clip_resnet` as the Hub's ``timm/resnet50_clip.openai`` holds RN50.

    That is open_clip's format: ``open_clip_config.json`` (architecture and preprocessing),
    ``open_clip_model.safetensors`` (OpenAI's weight names), and the tokenizer's files.

    >>> import tempfile
    >>> sorted(p.name for p in save_tiny_open_clip_resnet(Path(tempfile.mkdtemp())).iterdir())[:3]
    ['open_clip_config.json', 'open_clip_model.safetensors', 'tokenizer.json']
    """
    from safetensors.torch import save_file

    model, processor = tiny_clip_resnet(seed)
    folder.mkdir(parents=True, exist_ok=True)
    text = model.config.text_config
    config = {
        "model_cfg": {
            "embed_dim": model.config.projection_dim,
            "quick_gelu": True,
            "vision_cfg": {"image_size": model.config.image_size, "layers": model.config.vision_layers,
                           "width": model.config.vision_width, "patch_size": None},
            "text_cfg": {"context_length": text.max_position_embeddings, "vocab_size": text.vocab_size,
                         "width": text.hidden_size, "heads": text.num_attention_heads, "layers": text.num_hidden_layers},
        },
        "preprocess_cfg": {"mean": list(OPENAI_MEAN), "std": list(OPENAI_STD), "interpolation": "bicubic",
                           "resize_mode": "shortest"},
    }
    (folder / OPEN_CLIP_CONFIG).write_text(json.dumps(config, indent=2))
    state = {key: value.contiguous() for key, value in openai_state_dict(model).items()}
    state["logit_scale"] = torch.tensor(4.6052)  # open_clip's checkpoints carry it; CRIS has no use for it
    save_file(state, folder / "open_clip_model.safetensors")
    processor.tokenizer.save_pretrained(folder)
    return folder
