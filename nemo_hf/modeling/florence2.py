"""Florence-2 as a referring segmenter: the task prompt and the expression in, polygons out, drawn as a mask.

``transformers`` runs Florence-2 natively (``Florence2ForConditionalGeneration``; the
checkpoints in that format are ``florence-community/Florence-2-base`` and ``-large``, and
their ``-ft`` versions). Its task ``<REFERRING_EXPRESSION_SEGMENTATION>`` followed by the
expression makes it generate polygons (:mod:`nemo_hf.modeling.polygons`), which
:class:`Florence2ReferringSegmenter` draws at each image's size (or in the frame an
evaluation protocol scores), so Florence-2 runs wherever CLIPSeg and CRIS do: the
``referring-image-segmentation`` pipeline, ``nemo-hf predict``, ``training/eval_ris.py``,
the explorer. Batches are generated together (the processor pads the prompts).

**Inference only.** Florence-2 learns by generating text, not from mask labels: training
it with ``training/train.py`` is refused, and it cannot be built on a CLIP.

**Generation.** As the checkpoint's ``generation_config`` says (Florence-2's ship beam search
with 3 beams), greedy otherwise, never sampling; at most :data:`MAX_NEW_TOKENS` new tokens
unless that config sets ``max_new_tokens``.

**Score.** Florence-2 gives no per-pixel probability. The score is the geometric mean of
the probabilities the generation gave the tokens it produced — ``exp`` of their mean
log-probability, end token included, as ``generate`` scored them (after the checkpoint's
logits processors: a forced token counts as certain) — or 0.0 when the answer holds no
polygon with area (an empty mask), as a CLIPSeg that marks nothing scores 0.

>>> Florence2ReferringSegmenter.produces, TASK_PROMPT
('masks', '<REFERRING_EXPRESSION_SEGMENTATION>')
>>> Florence2ReferringSegmenter(model=None, trainable="decoder")
Traceback (most recent call last):
...
ValueError: Florence-2 runs for inference only here (...): trainable and loss do not apply to it; nemo_hf trains ...
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image
from transformers import Florence2ForConditionalGeneration, Florence2Processor, ProcessorMixin

from nemo_hf.metrics.protocols import NEMO_HF, EvaluationProtocol
from nemo_hf.modeling.architecture import Architecture
from nemo_hf.modeling.inference import Produces, Segmentation
from nemo_hf.modeling.polygons import parse_polygons, rasterise_polygons
from nemo_hf.modeling.wrapper import ModelWrapper

__all__ = ["FLORENCE2", "MAX_NEW_TOKENS", "TASK_PROMPT", "Florence2ReferringSegmenter", "load_florence2_processor"]

TASK_PROMPT = "<REFERRING_EXPRESSION_SEGMENTATION>"
MAX_NEW_TOKENS = 1024
"""New tokens a generation may take (Florence-2's own examples ask for 1024), unless the checkpoint sets its own."""


class Florence2ReferringSegmenter(ModelWrapper):
    """A ``Florence2ForConditionalGeneration`` behind the inference protocol (:mod:`nemo_hf.modeling.inference`).

    ``save_pretrained`` saves the wrapped model as it is. ``trainable`` and ``loss`` exist
    for the registry's uniform call and must stay None.
    """

    produces: Produces = "masks"

    def __init__(self, model: Any, trainable: str | None = None, loss: str | None = None) -> None:
        if trainable is not None or loss is not None:
            from nemo_hf.modeling.registry import supported  # the registry lists this class: imported when needed

            raise ValueError("Florence-2 runs for inference only here (it learns by generating text, not from "
                             "masks): trainable and loss do not apply to it; nemo_hf trains "
                             f"{supported(trainable=True)}")
        super().__init__(model)

    @staticmethod
    def encode(processor: ProcessorMixin, images: Sequence[Image.Image], sentences: Sequence[str]) -> dict[str, Any]:
        """The task prompt and each expression with its image, through Florence-2's processor (prompts padded)."""
        batch = processor(images=[image.convert("RGB") for image in images],
                          text=[TASK_PROMPT + sentence for sentence in sentences], padding=True, return_tensors="pt")
        return {"pixel_values": batch["pixel_values"], "input_ids": batch["input_ids"],
                "attention_mask": batch["attention_mask"]}

    @torch.no_grad()
    def run(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``sequences`` (the generated token ids) and ``token_logprob`` (their mean log-probability) per pair."""
        parameter = next(self.model.parameters())
        config = self.model.generation_config
        output = self.model.generate(
            input_ids=inputs["input_ids"].to(parameter.device),
            attention_mask=inputs["attention_mask"].to(parameter.device),
            pixel_values=inputs["pixel_values"].to(parameter.device, parameter.dtype),
            max_new_tokens=getattr(config, "max_new_tokens", None) or MAX_NEW_TOKENS,
            do_sample=False, output_scores=True, return_dict_in_generate=True,
        )
        beams = getattr(output, "beam_indices", None)
        steps = self.model.compute_transition_scores(output.sequences, output.scores, beams,
                                                     normalize_logits=beams is None).float()
        generated = output.sequences[:, -steps.shape[1]:]
        pad = self.model.generation_config.pad_token_id
        counted = torch.isfinite(steps) & (generated != pad if pad is not None else torch.ones_like(steps, dtype=bool))
        total = torch.where(counted, steps, 0.0).sum(dim=1)
        mean = total / counted.sum(dim=1).clamp(min=1)
        return {"sequences": output.sequences, "token_logprob": mean}

    def decode(
        self, outputs: dict[str, torch.Tensor], sizes: Sequence[Sequence[int]], processor: ProcessorMixin,
        protocol: EvaluationProtocol = NEMO_HF,
    ) -> Segmentation:
        """Each answer's polygons drawn at its ``(height, width)``; the score of the module docstring."""
        texts = processor.tokenizer.batch_decode(outputs["sequences"], skip_special_tokens=False)
        masks, scores = [], []
        for text, size, logprob in zip(texts, sizes, outputs["token_logprob"].tolist()):
            height, width = int(size[0]), int(size[1])
            mask = rasterise_polygons(parse_polygons(text, (width, height)), (height, width))
            masks.append(torch.from_numpy(mask))
            scores.append(math.exp(logprob) if mask.any() else 0.0)
        return Segmentation(masks, scores)

    def segment(
        self, inputs: dict[str, torch.Tensor], sizes: Sequence[Sequence[int]], processor: ProcessorMixin,
        protocol: EvaluationProtocol = NEMO_HF,
    ) -> Segmentation:
        """``decode(run(inputs))``."""
        return self.decode(self.run(inputs), sizes, processor, protocol)


def load_florence2_processor(name: str, revision: str | None = None, token: str | bool | None = None) -> Any:
    """A Florence-2 checkpoint's own processor (task prompts, image tokens, location tokens), image side on PIL.

    Pinned to PIL as every processor here (:mod:`nemo_hf.modeling.processors`): with
    torchvision installed ``transformers`` would pick another resize implementation.
    """
    return Florence2Processor.from_pretrained(name, revision=revision, token=token, backend="pil")


FLORENCE2 = Architecture(
    name="florence2",
    display_name="Florence-2",
    checkpoint_model_types=("florence2",),
    model_class=Florence2ForConditionalGeneration,
    processor_class=Florence2Processor,
    adapter=Florence2ReferringSegmenter,
    score=("the geometric mean of the probabilities the generation gave its tokens (exp of their mean "
           "log-probability, end token included), or 0.0 when the answer holds no polygon with area; Florence-2 "
           "has no per-pixel probability"),
    hub_tag="florence2",
    loading_snippet=(
        "With `transformers` alone:\n\n```python\n"
        "from transformers import AutoProcessor, Florence2ForConditionalGeneration\n"
        'model = Florence2ForConditionalGeneration.from_pretrained("{model_id}")\n'
        'processor = AutoProcessor.from_pretrained("{model_id}")\n```'),
    citation=(
        "@inproceedings{xiao2024florence2,\n  title={Florence-2: Advancing a Unified Representation for a Variety of "
        "Vision Tasks},\n  author={Xiao, Bin and Wu, Haiping and Xu, Weijian and Dai, Xiyang and Hu, Houdong and Lu, "
        "Yumao and Zeng, Michael and Liu, Ce and Yuan, Lu},\n  booktitle={CVPR}, year={2024}}"),
    load_processor=load_florence2_processor,
)
