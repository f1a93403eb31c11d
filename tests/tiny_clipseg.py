"""A tiny CLIPSeg with random weights: the test fixture where a training step must take milliseconds.

Same architecture as ``CIDAS/clipseg-rd64-refined`` (three extracted vision layers, FiLM
conditioning, the "complex" transposed-convolution head), shrunk: 64-pixel images in
16-pixel patches, 32-wide encoders, projection dimension 16. The tokenizer is the one of
:mod:`tests.tiny_models`; weights come from the seed only (the decoder with PyTorch's
default fan-in scaled initialisation, so initial logits are small). A forward pass takes
milliseconds on a CPU. Where a model is named (``load_referring_segmenter``, the training
scripts' ``--model_name_or_path``), :func:`save_tiny_clipseg` gives a folder to name.

    >>> from PIL import Image
    >>> model, processor = tiny_clipseg(seed=0)
    >>> batch = processor(text=["the red circle"], images=[Image.new("RGB", (80, 60))], return_tensors="pt")
    >>> model(**batch).logits.shape
    torch.Size([1, 64, 64])
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn
from transformers import CLIPSegConfig, CLIPSegForImageSegmentation, CLIPSegProcessor
from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil

from nemo_hf.synthetic import word_tokenizer
from tests.tiny_models import TINY_CLIP_WORDS, tiny_text_config

__all__ = ["TINY_CLIPSEG_IMAGE_SIZE", "save_published_clipseg", "save_tiny_clipseg", "tiny_clipseg"]

TINY_CLIPSEG_IMAGE_SIZE = 64


def tiny_clipseg(seed: int = 0) -> tuple[CLIPSegForImageSegmentation, CLIPSegProcessor]:
    """A tiny ``CLIPSegForImageSegmentation`` (64-pixel input and logits) and its processor.

    Two calls with one seed give identical weights (the global torch generator is left
    untouched). The image processor is ViT's PIL backend — the one CLIPSeg checkpoints
    use, pinned so results do not depend on torchvision being installed.

    >>> m1, _ = tiny_clipseg(3)
    >>> m2, _ = tiny_clipseg(3)
    >>> all(torch.equal(a, b) for a, b in zip(m1.parameters(), m2.parameters()))
    True
    """
    tokenizer = word_tokenizer(TINY_CLIP_WORDS)
    config = CLIPSegConfig(
        text_config=tiny_text_config(tokenizer),
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_hidden_layers": 4,
            "num_attention_heads": 2,
            "image_size": TINY_CLIPSEG_IMAGE_SIZE,
            # the complex head upsamples by (patch_size // 4) ** 2, which equals the patch only for 16
            "patch_size": 16,
        },
        projection_dim=16,
        extract_layers=(1, 2, 3),
        reduce_dim=16,
        decoder_num_attention_heads=2,
        decoder_intermediate_size=32,
        use_complex_transposed_convolution=True,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLIPSegForImageSegmentation(config).eval()
        # CLIPSeg's own init draws the decoder's layers with unit variance (checkpoints always
        # overwrite them); at this size that puts initial logits near ±50. PyTorch's fan-in
        # scaled init starts training where a pretrained decoder would: small logits.
        for module in model.decoder.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
                module.reset_parameters()
    image_processor = ViTImageProcessorPil(
        size={"height": TINY_CLIPSEG_IMAGE_SIZE, "width": TINY_CLIPSEG_IMAGE_SIZE},
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
    )
    return model, CLIPSegProcessor(image_processor=image_processor, tokenizer=tokenizer)


def save_tiny_clipseg(folder: Path, seed: int = 0) -> Path:
    """``folder`` holding :func:`tiny_clipseg` (``seed``) and its processor, as ``save_pretrained`` writes them.

    >>> import tempfile
    >>> from nemo_hf.modeling import load_referring_segmenter
    >>> model, processor = load_referring_segmenter(save_tiny_clipseg(Path(tempfile.mkdtemp())))
    >>> processor.image_processor.size["height"] == TINY_CLIPSEG_IMAGE_SIZE
    True
    """
    model, processor = tiny_clipseg(seed)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def save_published_clipseg(folder: Path, seed: int = 0) -> Path:
    """``folder`` holding :func:`tiny_clipseg` laid out as ``CIDAS/clipseg-rd64-refined`` is published.

    That repository predates ``processor_config.json`` and ``tokenizer.json``: its image
    processor config is ``preprocessor_config.json`` naming the class under the old key
    ``feature_extractor_type`` (with ``processor_class``), and its tokenizer is CLIP's
    ``vocab.json`` + ``merges.txt`` with ``tokenizer_config.json`` and
    ``special_tokens_map.json``. Only the sizes are this fixture's.

    >>> import tempfile
    >>> sorted(p.name for p in save_published_clipseg(Path(tempfile.mkdtemp())).iterdir())
    ['config.json', 'merges.txt', 'model.safetensors', 'preprocessor_config.json', 'special_tokens_map.json',
     'tokenizer_config.json', 'vocab.json']
    """
    model, processor = tiny_clipseg(seed)
    model.save_pretrained(folder)
    image_processor = processor.image_processor
    (folder / "preprocessor_config.json").write_text(json.dumps({
        "do_normalize": True, "do_rescale": True, "do_resize": True, "feature_extractor_type": "ViTImageProcessor",
        "image_mean": list(image_processor.image_mean), "image_std": list(image_processor.image_std),
        "processor_class": "CLIPSegProcessor", "resample": 2, "rescale_factor": 1 / 255,
        "size": {"height": TINY_CLIPSEG_IMAGE_SIZE, "width": TINY_CLIPSEG_IMAGE_SIZE},
    }, indent=2))
    tokenizer = processor.tokenizer
    tokenizer.backend_tokenizer.model.save(str(folder))  # vocab.json and merges.txt
    merges = (folder / "merges.txt").read_text()
    if not merges.startswith("#version"):  # CLIP's merges.txt opens with its version line
        (folder / "merges.txt").write_text("#version: 0.2\n" + merges)
    specials = {"bos_token": tokenizer.bos_token, "eos_token": tokenizer.eos_token, "pad_token": tokenizer.pad_token,
                "unk_token": tokenizer.unk_token}
    (folder / "special_tokens_map.json").write_text(json.dumps(specials, indent=2))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        **specials, "add_prefix_space": False, "do_lower_case": True, "errors": "replace", "model_max_length": 77,
        "processor_class": "CLIPSegProcessor", "tokenizer_class": "CLIPTokenizer",
    }, indent=2))
    return folder
