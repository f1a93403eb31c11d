"""The ``referring-image-segmentation`` pipeline: an image and an expression in, the referred object's mask out.

This module ends by registering the task with ``transformers``
(``PIPELINE_REGISTRY.register_pipeline``, an ordinary call made when it is imported; importing
:mod:`nemo_hf.modeling` imports it). Import it before asking ``transformers`` for the task;
then both of these work for any model that
:func:`~nemo_hf.modeling.loading.load_referring_segmenter` loads (a Hub id, a folder, a run's
``final/``)::

    import nemo_hf.modeling, transformers
    segmenter = transformers.pipeline("referring-image-segmentation", model="me/clipseg-nemo-refcoco")
    segmenter = nemo_hf.pipeline(model="me/clipseg-nemo-refcoco", revision="<commit>")

Called with an image (PIL image or path) and a sentence it returns ``{"mask": …, "score": …}``:
the mask as a PIL image (mode ``"L"``, 255 on the object) at the input image's size, made
as evaluation makes it (logits upsampled bilinearly, ``sigmoid > threshold``), and the
score, the mean probability over the pixels the model marks at its output resolution (0
when it marks none). Lists of images and sentences give one result per pair; one image
with several sentences (or the reverse) pairs it with each; no pairs give ``[]``.

What it refuses, rather than answer something: an expression with no visible words (as the
builder and mining do: there is nothing to refer to), a keyword it does not know (naming
the valid ones: a misspelled ``thresold=0.9`` would otherwise be ignored), and an image given
as an ``http://`` or ``https://`` string unless the caller passes ``allow_urls=True`` (when
building the pipeline or per call). This project reaches no network unless asked: building,
training and evaluation run offline, and a pipeline that fetched any string it is handed
would let data (a dataset row, a form field) make it fetch from any host. With
``allow_urls=True`` transformers' ``load_image`` fetches them, with a
:data:`URL_TIMEOUT_S`-second timeout.

    >>> from PIL import Image
    >>> segmenter = pipeline(model="nemo-hf/synthetic-clip", device="cpu")  # a CLIPSeg with an untrained decoder
    >>> result = segmenter(Image.new("RGB", (40, 30), "red"), "the red square")
    >>> result["mask"].size, result["mask"].mode, 0.0 <= result["score"] <= 1.0
    ((40, 30), 'L', True)
    >>> [r["mask"].size for r in segmenter(Image.new("RGB", (40, 30)), ["the left one", "the right one"])]
    [(40, 30), (40, 30)]
"""

from __future__ import annotations

import difflib
import os
import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers import Pipeline, ProcessorMixin
from transformers.pipelines import PIPELINE_REGISTRY
from transformers.image_utils import load_image

from nemo_hf.data.refer_files import sentence_text
from nemo_hf.metrics.protocol import logits_to_masks
from nemo_hf.modeling.clipseg import CLIPSegReferringSegmenter
from nemo_hf.modeling.inputs import text_length
from nemo_hf.modeling.interface import ReferringSegmenter
from nemo_hf.modeling.loading import load_referring_segmenter
from nemo_hf.pretrained import resolve_pretrained

__all__ = ["TASK", "URL_TIMEOUT_S", "ReferringSegmentationPipeline", "ReferringSegmenterByName", "pipeline"]

TASK = "referring-image-segmentation"
URL_TIMEOUT_S = 30.0
"""Seconds to wait for an image URL, when the caller allows fetching them (``allow_urls=True``)."""
# the keywords of a call or of the pipeline's construction; transformers' base class takes the last two
_KEYWORDS = ("allow_urls", "threshold", "batch_size", "num_workers")

# load_referring_segmenter gives a model and its processor; transformers' factory keeps only the
# model, so the processor waits here for the pipeline built around that model
_PROCESSORS: weakref.WeakKeyDictionary[Any, ProcessorMixin] = weakref.WeakKeyDictionary()
# why a name did not load: transformers' factory swallows the error (OSError, ValueError …), loads the
# weights with AutoModel instead and builds the pipeline around a model without its processor, whose
# own error would blame the caller; the pipeline raises the real one
_LOAD_ERRORS: dict[str, Exception] = {}


class ReferringSegmenterByName:
    """The model class ``transformers.pipeline`` loads the task's models with: :func:`load_referring_segmenter`.

    Not a model itself: ``from_pretrained`` returns the segmenter that function builds (a
    CLIPSeg, or any model it knows), in float32 unless a ``dtype`` is given.
    """

    @classmethod
    def from_pretrained(
        cls, name_or_path: str, *, revision: str | None = None, token: str | bool | None = None,
        dtype: torch.dtype | str | None = None, **_: Any,
    ) -> ReferringSegmenter:
        """The segmenter named ``name_or_path``; its processor goes to the pipeline built around it."""
        try:
            model, processor = load_referring_segmenter(
                name_or_path, revision=revision, token=token,
                dtype=dtype if isinstance(dtype, torch.dtype) else torch.float32,  # "auto": as trained, float32
            )
        except Exception as error:
            _LOAD_ERRORS[str(name_or_path)] = error
            raise
        _LOAD_ERRORS.pop(str(name_or_path), None)
        _PROCESSORS[model] = processor
        return model.eval()


def _as_segmenter(model: Any) -> ReferringSegmenter:
    """``model`` behind the :class:`ReferringSegmenter` interface (a bare CLIPSeg gets its adapter)."""
    if type(model).__name__ == "CLIPSegForImageSegmentation":
        return CLIPSegReferringSegmenter(model)
    return model


def _as_list(value: Any) -> tuple[list[Any], bool]:
    if isinstance(value, (list, tuple)):
        return list(value), False
    return [value], True


class ReferringSegmentationPipeline(Pipeline):
    """Masks of the objects that expressions refer to, one per (image, sentence) pair (see the module docstring).

    Built by ``transformers.pipeline("referring-image-segmentation", model=…)`` or
    :func:`pipeline`; or directly from a model and its processor:
    ``ReferringSegmentationPipeline(model=model, processor=processor)``.
    """

    # the processor comes with the model (ReferringSegmenterByName), pinned as training used it
    _load_processor = False
    _load_image_processor = False
    _load_feature_extractor = False
    _load_tokenizer = False

    def __init__(self, model: Any, processor: ProcessorMixin | None = None, **kwargs: Any) -> None:
        segmenter = _as_segmenter(model)
        processor = processor or _PROCESSORS.pop(model, None)
        loaded_from = getattr(getattr(model, "config", None), "_name_or_path", None)
        if processor is None and str(loaded_from) in _LOAD_ERRORS:  # a name that did not load as a segmenter
            raise _LOAD_ERRORS.pop(str(loaded_from))
        if processor is None:
            raise ValueError(
                "a referring segmentation pipeline needs the model's processor: pass processor=…, or a model name, "
                "which loads both (load_referring_segmenter)"
            )
        super().__init__(model=segmenter, processor=processor, **kwargs)

    def __call__(self, image: Any, text: str | Sequence[str] | None = None, **kwargs: Any) -> Any:
        """One ``{"mask", "score"}`` per (image, sentence) pair; a single dict for a single pair.

        ``threshold`` (default 0.5) is the probability above which a pixel is the object;
        ``allow_urls=True`` lets images be ``http(s)://`` strings, fetched (module docstring).
        """
        if text is None:
            raise TypeError("give the expression too: segmenter(image, 'the man on the left')")
        images, one_image = _as_list(image)
        sentences, one_sentence = _as_list(text)
        if len(images) == 1:  # one image for every sentence (none for none)
            images = images * len(sentences)
        elif len(sentences) == 1:
            sentences = sentences * len(images)
        if len(images) != len(sentences):
            raise ValueError(f"got {len(images)} images but {len(sentences)} sentences: give one of each per pair, "
                             "or one image (or one sentence) for all")
        # all checked before any is drawn, and with the keywords' own check first
        self._sanitize_parameters(**{k: v for k, v in kwargs.items() if k not in ("batch_size", "num_workers")})
        _check_sentences(sentences)
        _check_images(images, kwargs.get("allow_urls", self._preprocess_params.get("allow_urls", False)))
        if not images:
            return []  # transformers' base class would index the first input
        pairs = [{"image": i, "text": t} for i, t in zip(images, sentences)]
        results = super().__call__(pairs, **kwargs)
        return results[0] if one_image and one_sentence else results

    def _sanitize_parameters(
        self, threshold: float | None = None, allow_urls: bool | None = None, **unknown: Any
    ) -> tuple[dict, dict, dict]:
        if unknown:
            raise TypeError(_unknown_keywords_message(unknown))
        if threshold is not None and not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold is a probability in (0, 1), got {threshold}")
        preprocess = {} if allow_urls is None else {"allow_urls": bool(allow_urls)}
        return preprocess, {}, {"threshold": 0.5 if threshold is None else threshold}

    def preprocess(self, pair: dict[str, Any], allow_urls: bool = False) -> dict[str, torch.Tensor]:
        image = pair["image"]
        _check_images([image], allow_urls)  # a caller of preprocess alone is held to the same rule
        timeout = URL_TIMEOUT_S if isinstance(image, str) else None
        image = load_image(os.fspath(image) if isinstance(image, os.PathLike) else image, timeout=timeout)
        batch = self.processor(
            text=[pair["text"]], images=[image], padding=True, truncation=True,
            max_length=text_length(self.processor.tokenizer), return_tensors="pt",
        )
        return {"pixel_values": batch["pixel_values"].to(self.dtype), "input_ids": batch["input_ids"],
                "attention_mask": batch["attention_mask"], "size": torch.tensor([[image.height, image.width]])}

    def _forward(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        logits = self.model(pixel_values=inputs["pixel_values"], input_ids=inputs["input_ids"],
                            attention_mask=inputs["attention_mask"]).logits
        return {"logits": logits, "size": inputs["size"]}

    def postprocess(self, outputs: dict[str, torch.Tensor], threshold: float = 0.5) -> dict[str, Any]:
        logits = outputs["logits"][0].float().cpu()
        height, width = (int(v) for v in outputs["size"][0])
        [mask] = logits_to_masks(logits[None], [(height, width)], threshold)
        probabilities = torch.sigmoid(logits)
        marked = probabilities[probabilities > threshold]
        score = float(marked.mean()) if marked.numel() else 0.0
        return {"mask": Image.fromarray(mask.numpy().astype(np.uint8) * 255), "score": score}


def _check_sentences(sentences: list[Any]) -> None:
    """``TypeError`` / ``ValueError`` naming the first expression that is not text, or has no visible words."""
    for position, text in enumerate(sentences):
        if not isinstance(text, str):
            raise TypeError(f"expression {position} is a {type(text).__name__}, not text")
        if not sentence_text(text):  # the builder's and mining's notion of empty: nothing visible
            raise ValueError(
                f"expression {position} is empty ({text!r}: no visible characters): a mask needs words that refer "
                "to an object, e.g. segmenter(image, 'the man on the left')"
            )


def _check_images(images: list[Any], allow_urls: bool) -> None:
    """``ValueError`` naming the first image given as a URL, unless fetching them is allowed."""
    if allow_urls:
        return
    for position, image in enumerate(images):
        if isinstance(image, str) and image.lstrip()[:8].lower().startswith(("http://", "https://")):
            raise ValueError(
                f"image {position} is a URL ({image[:200]!r}): this pipeline fetches nothing unless asked; pass "
                "allow_urls=True to fetch it, or download it and pass the file's path or a PIL image"
            )


def _unknown_keywords_message(unknown: dict[str, Any]) -> str:
    names = ", ".join(map(repr, sorted(unknown)))
    guesses = {name: difflib.get_close_matches(name, _KEYWORDS, n=1) for name in sorted(unknown)}
    hint = "; ".join(f"did you mean {close[0]!r}?" for close in guesses.values() if close)
    return (f"unknown keyword argument(s) {names} for the {TASK} pipeline{f' ({hint})' if hint else ''}; "
            f"valid ones: {', '.join(sorted(_KEYWORDS))}")


def pipeline(
    model: str | os.PathLike[str], *, revision: str | None = None, token: str | bool | None = None,
    device: int | str | torch.device | None = None, **kwargs: Any,
) -> ReferringSegmentationPipeline:
    """``transformers.pipeline("referring-image-segmentation", model=…)`` that also takes nemo_hf's shipped names.

    ``model`` is a Hub id, a folder (a training run's ``final/``), or a shipped name;
    ``revision`` a branch, tag or commit of a Hub model.
    """
    import transformers

    return transformers.pipeline(TASK, model=resolve_pretrained(model), revision=revision, token=token,
                                 device=device, **kwargs)


PIPELINE_REGISTRY.register_pipeline(
    TASK, pipeline_class=ReferringSegmentationPipeline, pt_model=ReferringSegmenterByName, type="multimodal"
)
