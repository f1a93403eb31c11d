"""Load a referring segmenter and its processor by name: a Hub id, a local folder or a shipped name.

``name_or_path`` (a shipped name such as ``nemo-hf/synthetic-clip`` is first resolved to
its folder, :mod:`nemo_hf.pretrained`) is either

- a segmenter checkpoint on the Hub or on disk — CLIPSeg as published
  (``CIDAS/clipseg-rd64-refined``, the default of real runs, with its own image processor
  config and tokenizer files) or as ``training/train.py`` saves it, CRIS
  (:class:`~nemo_hf.modeling.CRISForReferringSegmentation`), or Florence-2 in ``transformers``'
  native format (``florence-community/Florence-2-base``; inference only:
  :mod:`nemo_hf.modeling.florence2`) — loaded in float32: ``from_pretrained`` would otherwise
  keep the checkpoint's dtype, and mixed precision is Accelerate's job; or
- a CLIP checkpoint, on whose towers a new segmenter is built: a CLIPSeg by default
  (:func:`~nemo_hf.modeling.from_clip.clipseg_from_clip`) or, with ``model_type="cris"``, a
  CRIS (:meth:`~nemo_hf.modeling.CRISForReferringSegmentation.from_clip`). The shipped
  ``nemo-hf/synthetic-clip`` gives a segmenter with nothing to download. A ResNet CLIP in
  open_clip's format (``timm/resnet50_clip.openai``, ``timm/resnet101_clip.openai``: OpenAI's
  RN50 and RN101, CRIS's own backbones) becomes a CRIS
  (:mod:`~nemo_hf.modeling.cris.clip_resnet`).

Anything else is an error naming the supported architectures.

The processor stretches images to a square and uses the CLIP's tokenizer
(:mod:`nemo_hf.modeling.processors`). What trains by default is each model's recipe:
CLIPSeg's decoder, all of CRIS. The architectures, and how each is built on a CLIP, come
from :mod:`nemo_hf.modeling.registry`.

>>> model, processor = load_referring_segmenter("nemo-hf/synthetic-clip", trainable="decoder", image_size=96)
>>> type(model).__name__, type(processor.image_processor).__name__, processor.image_processor.size["height"]
('CLIPSegReferringSegmenter', 'ViTImageProcessorPil', 96)
>>> model, processor = load_referring_segmenter("nemo-hf/synthetic-clip", model_type="cris", text_length=17)
>>> type(model).__name__, model.trainable, processor.tokenizer.model_max_length
('CRISReferringSegmenter', 'all', 17)
"""

from __future__ import annotations

from os import PathLike
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, ProcessorMixin

from nemo_hf.mining.clip import load_clip
from nemo_hf.modeling.cris.clip_resnet import is_open_clip_checkpoint, load_clip_resnet
from nemo_hf.modeling.losses import SegmentationLoss
from nemo_hf.modeling.parts import Trainable
from nemo_hf.modeling.processors import load_processor, with_text_length
from nemo_hf.modeling.registry import SEGMENTER_TYPES, architecture, architecture_of_checkpoint, supported
from nemo_hf.pretrained import resolve_pretrained

__all__ = ["DEFAULT_CHECKPOINT", "check_trainable", "load_referring_segmenter"]

DEFAULT_CHECKPOINT = "CIDAS/clipseg-rd64-refined"


def load_referring_segmenter(
    name_or_path: str | PathLike = DEFAULT_CHECKPOINT,
    *,
    model_type: str | None = None,
    trainable: Trainable | None = None,
    loss: SegmentationLoss | None = None,
    revision: str | None = None,
    token: str | bool | None = None,
    dtype: torch.dtype = torch.float32,
    image_size: int | None = None,
    text_length: int | None = None,
    seed: int = 0,
    for_training: bool = False,
) -> tuple[Any, ProcessorMixin]:
    """The model behind :class:`~nemo_hf.modeling.interface.ReferringSegmenter` and its processor.

    A CLIP checkpoint (``model_type`` ``"clip"`` in its config, e.g. ``nemo-hf/synthetic-clip``)
    becomes the segmenter ``model_type`` names (``"clipseg"`` if None; ``"cris"`` on a ResNet
    CLIP in open_clip's format, the one CRIS stands on) on its towers, its new
    layers drawn from ``seed``, taking ``image_size`` pixels (default: the CLIP's). A
    segmenter checkpoint is loaded as what it is; a ``model_type`` that names another is an
    error. ``trainable`` (default: the model's recipe) selects the parts that train;
    ``loss`` sets the training loss in the model's config (default: the checkpoint's, BCE);
    ``text_length`` caps the tokens per expression; ``token`` reads a private Hub repository
    (default: ``HF_TOKEN`` or the login cache). Raises ``ValueError`` naming the
    checkpoint when it is neither a supported segmenter nor a CLIP, or when training
    (``for_training``, or a ``trainable``/``loss`` given) is asked of an architecture that
    runs for inference only, and ``FileNotFoundError`` naming the processor's missing files
    when a segmenter comes without them. The model behind an inference-only architecture
    (Florence-2) is not a :class:`~nemo_hf.modeling.parts.PartwiseSegmenter`; every model follows the inference
    protocol (:mod:`nemo_hf.modeling.inference`).
    """
    if model_type is not None and model_type not in SEGMENTER_TYPES:
        raise ValueError(f"model_type must be one of {SEGMENTER_TYPES}, got {model_type!r}")
    name = resolve_pretrained(name_or_path)
    revision = revision or "main"
    try:
        config = AutoConfig.from_pretrained(name, revision=revision, token=token)
    except (OSError, ValueError):
        if not is_open_clip_checkpoint(name, revision, token):
            raise
        config = None  # a ResNet CLIP in open_clip's format: no config.json
    if config is None:
        arch = architecture(model_type or "cris")
        if arch.name != "cris":
            raise ValueError(f"{name!r} is a ResNet CLIP (open_clip's format): CRIS stands on one, {arch.display_name} "
                             "needs a ViT CLIP; use model_type='cris'")
        clip, clip_processor = load_clip_resnet(name, revision=revision, token=token)
        model, processor = arch.build_on_clip(clip, clip_processor, image_size, seed)
        torch.nn.Module.to(model, dtype=dtype)
    elif config.model_type == "clip":
        arch = architecture(model_type or "clipseg")
        if not arch.trains:
            raise ValueError(f"model_type={arch.name!r}: {arch.display_name} is not built on a CLIP ({name!r} is "
                             f"one); a CLIP checkpoint becomes one of {supported(trainable=True)}")
        clip, clip_processor = load_clip(name, revision=revision)
        model, processor = arch.build_on_clip(clip, clip_processor, image_size, seed)
        torch.nn.Module.to(model, dtype=dtype)
    else:
        found = architecture_of_checkpoint(config.model_type)
        if found is None:
            raise ValueError(
                f"{name!r} is a {config.model_type!r} checkpoint; nemo_hf.modeling supports {supported()} "
                f"(e.g. {DEFAULT_CHECKPOINT!r}) or a CLIP to build one on ('clip')"
            )
        arch = found
        if model_type not in (None, arch.name):
            raise ValueError(f"{name!r} is a {arch.name} checkpoint, not {model_type}: model_type chooses the "
                             "segmenter built on a CLIP checkpoint only")
        if not arch.trains and (for_training or trainable is not None or loss is not None):
            raise ValueError(_inference_only(name, arch.display_name))
        lacking = _lacking_processor_files(Path(name)) if Path(name).is_dir() else []
        if lacking:  # without tokenizer.json transformers builds an empty tokenizer: every word unknown, no error
            raise FileNotFoundError(_missing_processor(name, arch.name, f"it has no {' and no '.join(lacking)}"))
        model = arch.model_class.from_pretrained(name, revision=revision, token=token, dtype=dtype)
        try:
            if arch.load_processor is not None:
                processor = arch.load_processor(name, revision, token)
            else:
                processor = load_processor(arch.processor_class, name, revision=revision, token=token)
        except OSError as error:
            raise FileNotFoundError(_missing_processor(name, arch.name, f"it did not load ({error})")) from error
        if len(processor.tokenizer.get_vocab()) <= len(processor.tokenizer.all_special_tokens):
            raise FileNotFoundError(_missing_processor(name, arch.name, "its tokenizer has no vocabulary (is its "
                                                       "tokenizer.json missing?)"))
    with_text_length(processor.tokenizer, text_length)
    if not arch.trains:
        return arch.adapter(model).eval(), processor
    return arch.adapter(model, trainable or arch.default_trainable, loss), processor


def check_trainable(name_or_path: str | PathLike, revision: str | None = None, token: str | bool | None = None) -> None:
    """``ValueError`` when ``name_or_path`` is a checkpoint of an architecture that runs for inference only.

    Reads the checkpoint's config only, so a training run can refuse before it builds its data.

    >>> check_trainable("nemo-hf/synthetic-clip")  # a CLIP: a segmenter is built on it
    """
    name = resolve_pretrained(name_or_path)
    config = AutoConfig.from_pretrained(name, revision=revision or "main", token=token)
    arch = architecture_of_checkpoint(config.model_type)
    if arch is not None and not arch.trains:
        raise ValueError(_inference_only(name, arch.display_name))


def _inference_only(name: str, display_name: str) -> str:
    return (f"{name!r} is a {display_name} checkpoint, which nemo_hf runs for inference only (the pipeline, nemo-hf "
            f"predict, eval_ris.py); it trains {supported(trainable=True)}, or one of them built on a CLIP checkpoint")


# what a saved processor consists of: an image processor's config (either name) and a tokenizer (either form)
_IMAGE_PROCESSOR_FILES = ("processor_config.json", "preprocessor_config.json")
_TOKENIZER_FILES = (("tokenizer.json",), ("vocab.json", "merges.txt"))


def _lacking_processor_files(folder: Path) -> list[str]:
    """The parts of a saved processor that ``folder`` lacks, each as the file names that would make it."""
    lacking = []
    if not any((folder / file).is_file() for file in _IMAGE_PROCESSOR_FILES):
        lacking.append(" or ".join(_IMAGE_PROCESSOR_FILES))
    if not any(all((folder / file).is_file() for file in files) for files in _TOKENIZER_FILES):
        lacking.append(" or ".join(" + ".join(files) for files in _TOKENIZER_FILES))
    return lacking


def _missing_processor(name: str, architecture: str, what: str) -> str:
    """The error of a segmenter checkpoint without a usable processor: ``what`` is wrong, and how to add it."""
    return (f"{name} holds a {architecture} model but not its processor: {what}. To use it, save the processor "
            f"beside the model (processor.save_pretrained({name!r}); training/train.py writes both into final/), or "
            "copy those files from the checkpoint it was trained from")
