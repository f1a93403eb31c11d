"""Running any referring segmenter: its inputs, its raw output, and masks at each image's size with a score.

Training needs logits; using a model needs masks. Every adapter of the registry
(:mod:`nemo_hf.modeling.registry`) follows one inference protocol, which the pipeline,
:func:`~nemo_hf.modeling.predictions.predict_masks`, evaluation and the explorer use, so an
architecture that outputs something else than logits (Florence-2's polygons) runs
everywhere the others do:

- ``produces``: ``"logits"`` (per-pixel scores; the evaluation protocol turns them into
  masks, and training can use them) or ``"masks"`` (the model's answer is already a mask);
- ``encode(processor, images, sentences)`` (a static method, so a ``DataLoader`` worker can
  pickle it): the model's inputs for a batch of (image, sentence) pairs;
- ``run(inputs)``: the raw output of a batch, as a dict of tensors with one row per pair
  (what the pipeline's ``_forward`` returns);
- ``decode(outputs, sizes, processor, protocol)``: a :class:`Segmentation`, one bool mask per
  pair at the ``(height, width)`` asked for, and one score;
- ``segment(inputs, sizes, processor, protocol)``: ``decode(run(inputs), …)``.

:class:`LogitsInference` implements it for models that give logits ``(B, h, w)`` (CLIPSeg,
CRIS): masks as the protocol makes them (nemo_hf's: logits upsampled bilinearly to the
image's size, ``sigmoid > threshold``), and as score the mean probability over the pixels
marked at the model's own resolution (0 when none is).

>>> import torch
>>> from PIL import Image
>>> from nemo_hf.modeling import load_referring_segmenter
>>> model, processor = load_referring_segmenter("nemo-hf/synthetic-clip")
>>> inputs = model.encode(processor, [Image.new("RGB", (40, 30))], ["the red one"])
>>> sorted(inputs), model.produces
(['attention_mask', 'input_ids', 'pixel_values'], 'logits')
>>> result = model.segment(inputs, [(30, 40)], processor)
>>> result.masks[0].shape, 0.0 <= result.scores[0] <= 1.0
(torch.Size([30, 40]), True)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from PIL import Image
from transformers import ProcessorMixin

from nemo_hf.metrics.protocols import NEMO_HF, EvaluationProtocol
from nemo_hf.modeling.inputs import text_length

__all__ = ["LOGIT_SCORE", "LogitsInference", "LogitsRunner", "Produces", "Segmentation", "as_inference", "encode_pairs",
           "produces"]

Produces = Literal["logits", "masks"]
LOGIT_SCORE = ("the mean probability (sigmoid of the logit) over the pixels the model marks at its own output "
               "resolution, 0.0 when it marks none")
"""What the score of a logits model (CLIPSeg, CRIS) means."""


@dataclass
class Segmentation:
    """One bool mask ``(H, W)`` per pair, at the size asked for, and a score per pair (meaning: the architecture's)."""

    masks: list[torch.Tensor]
    scores: list[float]


def encode_pairs(processor: ProcessorMixin, images: Sequence[Image.Image], sentences: Sequence[str]) -> dict[str, Any]:
    """Inputs of a CLIP-style segmenter: images through the image processor, sentences through the tokenizer.

    Expressions are padded to the batch's longest and truncated at the tokenizer's length
    (:func:`~nemo_hf.modeling.inputs.text_length`).
    """
    batch = processor(text=list(sentences), images=[image.convert("RGB") for image in images], padding=True,
                      truncation=True, max_length=text_length(processor.tokenizer), return_tensors="pt")
    return {"pixel_values": batch["pixel_values"], "input_ids": batch["input_ids"],
            "attention_mask": batch["attention_mask"]}


def produces(model: Any) -> Produces:
    """What ``model`` outputs: its adapter's ``produces`` (a model without one gives logits)."""
    return getattr(model, "produces", "logits")


class LogitsInference:
    """The inference protocol (module docstring) for a model whose call gives ``.logits`` ``(B, h, w)``."""

    produces: Produces = "logits"
    encode = staticmethod(encode_pairs)

    @torch.no_grad()
    def run(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``logits`` ``(B, h, w)`` and the model's ``input_size`` ``(B, 2)`` (CRIS's protocol reads it)."""
        parameter = next(self.parameters())  # type: ignore[attr-defined]
        pixel_values = inputs["pixel_values"].to(parameter.device, parameter.dtype)
        call: Any = self
        logits = call(pixel_values=pixel_values, input_ids=inputs["input_ids"].to(parameter.device),
                      attention_mask=inputs["attention_mask"].to(parameter.device)).logits
        size = torch.tensor(pixel_values.shape[-2:], device=logits.device).expand(len(logits), 2)
        return {"logits": logits, "input_size": size}

    def decode(
        self, outputs: dict[str, torch.Tensor], sizes: Sequence[Sequence[int]], processor: Any = None,
        protocol: EvaluationProtocol = NEMO_HF,
    ) -> Segmentation:
        """Masks as ``protocol`` makes them from the logits; scores: the mean probability of the marked pixels."""
        logits = outputs["logits"].detach().float()
        input_size = tuple(int(v) for v in outputs["input_size"][0]) if "input_size" in outputs else None
        masks = protocol.prediction_masks(logits, [tuple(int(v) for v in s) for s in sizes], input_size=input_size)
        scores = []
        for sample in torch.sigmoid(logits):
            marked = sample[sample > protocol.threshold]
            scores.append(float(marked.mean()) if marked.numel() else 0.0)
        return Segmentation(list(masks), scores)

    def segment(
        self, inputs: dict[str, torch.Tensor], sizes: Sequence[Sequence[int]], processor: Any = None,
        protocol: EvaluationProtocol = NEMO_HF,
    ) -> Segmentation:
        """``decode(run(inputs))``."""
        return self.decode(self.run(inputs), sizes, processor, protocol)


class LogitsRunner(LogitsInference):
    """The inference protocol around any :class:`~nemo_hf.modeling.interface.ReferringSegmenter` module.

    For a model that follows the training interface only (a call that gives ``.logits``):
    its inputs are :func:`encode_pairs`'.
    """

    def __init__(self, model: Any) -> None:
        self.model = model

    def parameters(self) -> Any:
        """The wrapped model's parameters (they give the device and dtype)."""
        return self.model.parameters()

    def __call__(self, **inputs: Any) -> Any:
        return self.model(**inputs)


def as_inference(model: Any) -> Any:
    """``model`` itself when it follows the inference protocol, else a :class:`LogitsRunner` around it."""
    return model if hasattr(model, "segment") else LogitsRunner(model)
