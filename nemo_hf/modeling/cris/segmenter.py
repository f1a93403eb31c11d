"""CRIS behind the :class:`~nemo_hf.modeling.ReferringSegmenter` interface that training and evaluation use.

``CRISForReferringSegmentation`` already returns the interface's output (logits, and its own
loss from ``labels``), so this adapter passes the call through and names the model's parts:

- ``"decoder"`` — what CRIS adds to CLIP: feature pyramid, neck, decoder, projector;
- ``"text"`` — CLIP's text tower and text projection;
- ``"vision"`` — CLIP's vision tower (and visual projection).

CRIS trains all three (``trainable="all"``, the default here). The optimizer gives each
part its learning rate (``training/configs/cris_*.yaml``: the new layers 1e-4, the towers a
tenth); with ``rate_groups="cris"`` (the default) the parts are regrouped as CRIS's
``build_segmenter`` groups them: the towers' position embeddings (the text tower's and the
attention pool's, or a ViT's) train at the new layers' rate, and the residual branch CRIS
adds to a ResNet's C5 trains with the vision tower, at its rate. ``rate_groups="parts"``
keeps each part whole. Regrouping only moves parameters between trained parts: what is
frozen is the same. ``"decoder"`` and ``"decoder+text"`` freeze the towers for cheaper ablations.

    >>> import torch
    >>> from nemo_hf.modeling import CRISForReferringSegmentation
    >>> model = CRISForReferringSegmentation.from_clip("nemo-hf/synthetic-clip")
    >>> segmenter = CRISReferringSegmenter(model)
    >>> sorted(segmenter.trainable_parameters()), segmenter.trainable, segmenter.rate_groups
    (['decoder', 'text', 'vision'], 'all', 'cris')
    >>> positions = {id(p) for p in model.position_embeddings()}
    >>> sum(id(p) in positions for p in segmenter.trainable_parameters()["decoder"])  # the text's and the ViT's
    2
    >>> segmenter.eval()(torch.zeros(1, 3, 64, 64), torch.tensor([[0, 5, 1]]), torch.ones(1, 3)).logits.shape
    torch.Size([1, 32, 32])
"""

from __future__ import annotations

from typing import Any, Literal, get_args

import torch
from torch import nn
from transformers import CLIPModel, CLIPProcessor

from nemo_hf.modeling.architecture import Architecture
from nemo_hf.modeling.cris.clip_resnet import CLIPResNetModel
from nemo_hf.modeling.cris.model import CRISForReferringSegmentation
from nemo_hf.modeling.inference import LOGIT_SCORE
from nemo_hf.modeling.interface import ReferringSegmenterOutput
from nemo_hf.modeling.losses import SegmentationLoss
from nemo_hf.modeling.parts import PartwiseSegmenter, Trainable
from nemo_hf.modeling.processors import square_image_processor

__all__ = ["CRIS", "RATE_GROUPS", "CRISReferringSegmenter", "RateGroups", "cris_on_clip"]

RateGroups = Literal["cris", "parts"]
RATE_GROUPS: tuple[str, ...] = get_args(RateGroups)


class CRISReferringSegmenter(PartwiseSegmenter):
    """A ``CRISForReferringSegmentation`` with a chosen trainable part: logits ``(B, h, w)``, its loss with labels.

    ``save_pretrained`` saves the wrapped model, which loads with
    ``CRISForReferringSegmentation.from_pretrained`` or ``AutoModel.from_pretrained``;
    ``loss`` is written into its config (None: the config's, BCE). ``rate_groups``: how
    :meth:`trainable_parameters` groups the parameters for their learning rates (module docstring).
    """

    def __init__(
        self, model: CRISForReferringSegmentation, trainable: Trainable = "all", loss: SegmentationLoss | None = None,
        rate_groups: RateGroups = "cris",
    ) -> None:
        if rate_groups not in RATE_GROUPS:
            raise ValueError(f"rate_groups must be one of {RATE_GROUPS}, got {rate_groups!r}")
        self.rate_groups = rate_groups  # read by trainable_parameters, which the base class calls
        super().__init__(model, trainable, loss)

    def part_modules(self) -> dict[str, list[nn.Module]]:
        """``decoder``: CRIS's new layers; ``text`` and ``vision``: the CLIP towers with their projections."""
        return {"decoder": self.model.new_modules(), "text": [self.model.text_model, self.model.text_projection],
                "vision": self.model.vision_modules()}

    def trainable_parameters(self) -> dict[str, list[nn.Parameter]]:
        """The trained parameters by learning-rate group: the parts, regrouped as CRIS does with ``rate_groups="cris"``.

        CRIS's ``build_segmenter`` gives every backbone parameter (CLIP's, and the C5
        residual branch it adds to the ResNet) the backbone's rate except those named
        ``positional_embedding``, which join the head's (the new layers').
        """
        parts = super().trainable_parameters()
        if self.rate_groups == "parts":
            return parts
        model = self.model
        moves = {id(p): "decoder" for p in model.position_embeddings()}
        if "vision" in parts and model.config.backbone == "clip_resnet":
            moves |= {id(p): "vision" for p in model.pyramid.parameters()}
        regrouped: dict[str, list[nn.Parameter]] = {part: [] for part in parts}
        for part, params in parts.items():
            for param in params:
                target = moves.get(id(param), part)
                regrouped[target if target in parts else part].append(param)
        return regrouped

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
    clip: CLIPModel | CLIPResNetModel, clip_processor: CLIPProcessor, image_size: int | None, seed: int,
    **config_overrides: Any,
) -> tuple[CRISForReferringSegmentation, CLIPProcessor]:
    """A new CRIS on ``clip``'s towers (a ViT or ResNet CLIP) and its processor: the CLIP's tokenizer, ``image_size`` squares.

    ``config_overrides`` are :class:`~nemo_hf.modeling.CRISConfig` fields (``pyramid="layers"``, …).

    >>> from nemo_hf.mining.clip import load_clip
    >>> model, processor = cris_on_clip(*load_clip("nemo-hf/synthetic-clip"), image_size=96, seed=0)
    >>> processor.image_processor.size["height"]
    96
    """
    model = CRISForReferringSegmentation.from_clip(clip, seed=seed, **config_overrides)
    native = clip.config.image_size if isinstance(clip, CLIPResNetModel) else clip.config.vision_config.image_size
    side = int(image_size or native)
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
