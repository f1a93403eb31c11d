"""CRIS behind the :class:`~nemo_hf.modeling.ReferringSegmenter` interface that training and evaluation use.

``CRISForReferringSegmentation`` already returns the interface's output (logits, and its own
loss from ``labels``), so this adapter passes the call through and names the model's parts
for the optimizer:

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
    >>> segmenter.eval()(torch.zeros(1, 3, 64, 64), torch.tensor([[0, 5, 1]]), torch.ones(1, 3)).logits.shape
    torch.Size([1, 32, 32])
"""

from __future__ import annotations

import torch
from torch import nn

from transformers import CLIPModel, CLIPProcessor

from nemo_hf.modeling.architecture import Architecture
from nemo_hf.modeling.cris.model import CRISForReferringSegmentation
from nemo_hf.modeling.inference import LOGIT_SCORE
from nemo_hf.modeling.interface import ReferringSegmenterOutput
from nemo_hf.modeling.losses import SegmentationLoss
from nemo_hf.modeling.parts import PartwiseSegmenter, Trainable
from nemo_hf.modeling.processors import square_image_processor

__all__ = ["CRIS", "CRISReferringSegmenter", "cris_on_clip"]


class CRISReferringSegmenter(PartwiseSegmenter):
    """A ``CRISForReferringSegmentation`` with a chosen trainable part: logits ``(B, h, w)``, its loss with labels.

    ``save_pretrained`` saves the wrapped model, which loads with
    ``CRISForReferringSegmentation.from_pretrained`` or ``AutoModel.from_pretrained``;
    ``loss`` is written into its config (None: the config's, BCE).
    """

    def __init__(
        self, model: CRISForReferringSegmentation, trainable: Trainable = "all", loss: SegmentationLoss | None = None
    ) -> None:
        super().__init__(model, trainable, loss)

    def part_modules(self) -> dict[str, list[nn.Module]]:
        """``decoder``: CRIS's new layers; ``text`` and ``vision``: the CLIP towers with their projections."""
        return {"decoder": self.model.new_modules(), "text": [self.model.text_model, self.model.text_projection],
                "vision": [self.model.vision_model, self.model.visual_projection]}

    def mask_logits(
        self, pixel_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        """Mask logits ``(B, h, w)``: a quarter of the input's side for 16-pixel patches."""
        return self.model(pixel_values=pixel_values, input_ids=input_ids, attention_mask=attention_mask).logits

    def forward(
        self, pixel_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor,
        labels: torch.Tensor | None = None,
    ) -> ReferringSegmenterOutput:
        """CRIS's own output: the logits, and with ``labels`` the loss its config names."""
        return self.model(pixel_values=pixel_values, input_ids=input_ids, attention_mask=attention_mask, labels=labels)


def cris_on_clip(
    clip: CLIPModel, clip_processor: CLIPProcessor, image_size: int | None, seed: int
) -> tuple[CRISForReferringSegmentation, CLIPProcessor]:
    """A new CRIS on ``clip``'s towers and its processor: the CLIP's tokenizer, images stretched to ``image_size``.

    >>> from nemo_hf.mining.clip import load_clip
    >>> model, processor = cris_on_clip(*load_clip("nemo-hf/synthetic-clip"), image_size=96, seed=0)
    >>> processor.image_processor.size["height"]
    96
    """
    model = CRISForReferringSegmentation.from_clip(clip, seed=seed)
    side = int(image_size or clip.config.vision_config.image_size)
    image_processor = square_image_processor(clip_processor.image_processor, side)
    return model, CLIPProcessor(image_processor=image_processor, tokenizer=clip_processor.tokenizer)


CRIS = Architecture(
    name="cris",
    display_name="CRIS",
    checkpoint_model_types=("nemo_cris",),
    model_class=CRISForReferringSegmentation,
    processor_class=CLIPProcessor,
    adapter=CRISReferringSegmenter,
    score=LOGIT_SCORE,
    build_on_clip=cris_on_clip,
    default_trainable="all",
    new_layers="CRIS's neck, decoder and projector",
    hub_tag="cris",
    loading_snippet=(
        "As a `transformers` model (CRIS is nemo_hf's class; importing `nemo_hf.modeling` registers it with the "
        "Auto classes):\n\n```python\nimport nemo_hf.modeling\nfrom transformers import AutoModel, CLIPProcessor\n"
        'model = AutoModel.from_pretrained("{model_id}")\nprocessor = CLIPProcessor.from_pretrained("{model_id}")\n```'),
    citation=(
        "@inproceedings{wang2022cris,\n  title={CRIS: CLIP-Driven Referring Image Segmentation},\n"
        "  author={Wang, Zhaoqing and Lu, Yu and Li, Qiang and Tao, Xunqiang and Guo, Yandong and Gong, Mingming "
        "and Liu, Tongliang},\n  booktitle={CVPR}, year={2022}}"),
)
