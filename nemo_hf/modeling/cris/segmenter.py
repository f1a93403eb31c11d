"""CRIS behind the :class:`~nemo_hf.modeling.ReferringSegmenter` interface that training and evaluation use.

``CRISForReferringSegmentation`` returns a ``ModelOutput``, as ``transformers`` models do;
the training and evaluation code take the logits tensor, so this adapter returns
``output.logits`` and names the model's parts for the optimizer:

- ``"decoder"`` — what CRIS adds to CLIP: feature pyramid, neck, decoder, projector;
- ``"text"`` — CLIP's text tower and text projection;
- ``"vision"`` — CLIP's vision tower and visual projection.

CRIS trains all three (``trainable="all"``, the default here), the towers at a tenth of the
new layers' learning rate (``training/configs/cris_*.yaml`` set both rates); ``"decoder"``
and ``"decoder+text"`` freeze the towers for cheaper ablations.

    >>> import torch
    >>> from nemo_hf.modeling import CRISForReferringSegmentation
    >>> segmenter = CRISReferringSegmenter(CRISForReferringSegmentation.from_clip("nemo-hf/synthetic-clip"))
    >>> sorted(segmenter.trainable_parameters()), segmenter.trainable
    (['decoder', 'text', 'vision'], 'all')
    >>> segmenter.eval()(torch.zeros(1, 3, 64, 64), torch.tensor([[0, 5, 1]]), torch.ones(1, 3)).shape
    torch.Size([1, 32, 32])
"""

from __future__ import annotations

import torch
from torch import nn

from nemo_hf.modeling.cris.model import CRISForReferringSegmentation
from nemo_hf.modeling.parts import PartwiseSegmenter, Trainable

__all__ = ["CRISReferringSegmenter"]


class CRISReferringSegmenter(PartwiseSegmenter):
    """A ``CRISForReferringSegmentation`` with a chosen trainable part; returns ``(B, h, w)`` logits.

    ``save_pretrained`` saves the wrapped model, which loads with
    ``CRISForReferringSegmentation.from_pretrained`` or ``AutoModel.from_pretrained``.
    """

    def __init__(self, model: CRISForReferringSegmentation, trainable: Trainable = "all") -> None:
        super().__init__(model, trainable)

    def part_modules(self) -> dict[str, list[nn.Module]]:
        """``decoder``: CRIS's new layers; ``text`` and ``vision``: the CLIP towers with their projections."""
        return {"decoder": self.model.new_modules(), "text": [self.model.text_model, self.model.text_projection],
                "vision": [self.model.vision_model, self.model.visual_projection]}

    def forward(
        self, pixel_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        """Mask logits ``(B, h, w)``: a quarter of the input's side for 16-pixel patches."""
        return self.model(pixel_values=pixel_values, input_ids=input_ids, attention_mask=attention_mask).logits
