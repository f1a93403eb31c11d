"""CLIPSeg behind the :class:`~nemo_hf.modeling.ReferringSegmenter` interface.

**What is trained.** ``transformers`` runs CLIPSeg's CLIP backbone under
``torch.no_grad()``: the vision tower always, and the text tower whenever the model is
given ``input_ids``. Plain fine-tuning of ``CLIPSegForImageSegmentation`` therefore trains
the decoder only (≈1.1 M of CIDAS/clipseg-rd64-refined's 150 M parameters), which is
also CLIPSeg's own recipe (Lüddecke & Ecker, CVPR 2022: CLIP frozen). The adapter offers:

- ``trainable="decoder"`` (default) — the decoder (FiLM, reduce layers, transformer
  blocks, upsampling head); all of ``model.clip`` is frozen.
- ``trainable="decoder+text"`` — also the CLIP text encoder and its projection. The
  adapter computes the expression's embedding itself, with gradients, and hands it to
  CLIPSeg as ``conditional_embeddings``. Referring expressions are longer and more
  relational than the class names CLIPSeg was trained on, so this is the knob to try
  when decoder-only training plateaus (use a smaller learning rate for the encoder).

- ``trainable="all"`` — the whole model, vision tower included. The adapter computes the
  vision tower's intermediate activations itself, with gradients, and feeds them to
  CLIPSeg's decoder: the full fine-tuning that CRIS-style models do. It is what a small
  CLIP trained on another task needs (the synthetic world's segmenter is trained so).

In the first two the vision tower stays frozen: CLIPSeg's decoder reads activations from
its intermediate layers, and the ``transformers`` forward computes them without gradients.

Frozen parameters have ``requires_grad=False`` (DDP refuses parameters that never get a
gradient) and frozen towers stay in eval mode when the model is put in train mode.

>>> import torch
>>> from nemo_hf.modeling import clipseg_from_clip
>>> model, processor = clipseg_from_clip("nemo-hf/synthetic-clip", image_size=96)
>>> segmenter = CLIPSegReferringSegmenter(model, trainable="decoder+text")
>>> sorted(segmenter.trainable_parameters())
['decoder', 'text']
>>> batch = processor(text=["a circle"], images=[torch.zeros(3, 8, 8)], return_tensors="pt")
>>> segmenter(**batch).logits.shape
torch.Size([1, 96, 96])
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import CLIPSegForImageSegmentation, CLIPSegProcessor

from nemo_hf.modeling.architecture import Architecture
from nemo_hf.modeling.from_clip import clipseg_from_clip
from nemo_hf.modeling.inference import LOGIT_SCORE
from nemo_hf.modeling.losses import SegmentationLoss
from nemo_hf.modeling.parts import PartwiseSegmenter, Trainable

__all__ = ["CLIPSEG", "CLIPSegReferringSegmenter"]


class CLIPSegReferringSegmenter(PartwiseSegmenter):
    """A ``CLIPSegForImageSegmentation`` with a chosen trainable part: logits ``(B, h, w)``, and a loss with labels.

    Args:
        model: the wrapped model (kept as ``.model``; ``save_pretrained`` saves it as is,
            so the output loads with ``CLIPSegForImageSegmentation.from_pretrained``).
        trainable: ``"decoder"``, ``"decoder+text"`` or ``"all"`` (see the module docstring).
        loss: the training loss, written into the model's config (None: the config's, BCE).
    """

    def __init__(
        self, model: CLIPSegForImageSegmentation, trainable: Trainable = "decoder", loss: SegmentationLoss | None = None
    ) -> None:
        super().__init__(model, trainable, loss)

    def part_modules(self) -> dict[str, list[nn.Module]]:
        """``decoder``: CLIPSeg's decoder; ``text``: the text tower and its projection; ``vision``: the vision tower.

        The visual projection and the logit scale take no part in segmentation and never train.
        """
        clip = self.model.clip
        return {"decoder": [self.model.decoder], "text": [clip.text_model, clip.text_projection],
                "vision": [clip.vision_model]}

    def mask_logits(
        self, pixel_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        """Mask logits ``(B, h, w)`` at the processor's resolution (352² for CIDAS checkpoints)."""
        if self.trainable == "all":
            return self._forward_with_vision_gradients(pixel_values, input_ids, attention_mask)
        if self.trainable == "decoder+text":
            embeddings = self.model.clip.get_text_features(input_ids=input_ids, attention_mask=attention_mask)
            output = self.model(pixel_values=pixel_values, conditional_embeddings=embeddings.pooler_output)
        else:
            output = self.model(pixel_values=pixel_values, input_ids=input_ids, attention_mask=attention_mask)
        logits = output.logits
        # older transformers squeezed a batch of one down to (h, w)
        return logits if logits.ndim == 3 else logits.reshape(pixel_values.shape[0], *logits.shape[-2:])

    def _forward_with_vision_gradients(
        self, pixel_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        """CLIPSeg's forward without its ``no_grad``: the same activations, conditioning and decoder."""
        clip = self.model.clip
        hidden = clip.vision_model(
            pixel_values=pixel_values, output_hidden_states=True, interpolate_pos_encoding=True
        ).hidden_states
        activations = [hidden[i + 1] for i in self.model.extract_layers]  # hidden[0] is the embedding
        embeddings = clip.get_text_features(input_ids=input_ids, attention_mask=attention_mask).pooler_output
        logits = self.model.decoder(activations, embeddings).logits
        return logits if logits.ndim == 3 else logits.reshape(pixel_values.shape[0], *logits.shape[-2:])


CLIPSEG = Architecture(
    name="clipseg",
    display_name="CLIPSeg",
    checkpoint_model_types=("clipseg",),
    model_class=CLIPSegForImageSegmentation,
    processor_class=CLIPSegProcessor,
    adapter=CLIPSegReferringSegmenter,
    score=LOGIT_SCORE,
    build_on_clip=lambda clip, processor, image_size, seed: clipseg_from_clip(
        (clip, processor), image_size=image_size, seed=seed),
    default_trainable="decoder",
    new_layers="the CLIPSeg decoder",
    hub_tag="clipseg",
    loading_snippet=(
        "Without nemo_hf, with `transformers` alone:\n\n```python\n"
        "from transformers import AutoProcessor, CLIPSegForImageSegmentation\n"
        'model = CLIPSegForImageSegmentation.from_pretrained("{model_id}")\n'
        'processor = AutoProcessor.from_pretrained("{model_id}")\n```'),
    citation=(
        "@inproceedings{luddecke2022clipseg,\n  title={Image Segmentation Using Text and Image Prompts},\n"
        "  author={L{\\\"u}ddecke, Timo and Ecker, Alexander},\n  booktitle={CVPR}, year={2022}}"),
    # transformers runs CLIPSeg's CLIP under no_grad: what the card must say stayed as it was
    trainable_notes={
        "decoder": "`transformers` runs CLIPSeg's CLIP backbone without gradients, so the vision and text encoders "
                   "stay as they were.",
        "decoder+text": "`transformers` runs CLIPSeg's vision encoder without gradients, so it stays as it was.",
    },
)
