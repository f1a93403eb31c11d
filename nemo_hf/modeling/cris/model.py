"""``CRISForReferringSegmentation``: CRIS (Wang et al., CVPR 2022) on a CLIP's towers — a ResNet CLIP's, as CRIS, or a ViT's.

The forward pass, as in CRIS's ``model/segmenter.py`` (public code):

1. **Text** — the text tower's last hidden states are the words; the end token's state
   through the text projection is the sentence (CLIP's text embedding). The tower is
   ``transformers``' ``CLIPTextModel`` for both families.
2. **Image** — three maps at strides 8, 16 and 32 (CRIS's C3–C5;
   :mod:`~nemo_hf.modeling.cris.features`). On a CLIP ResNet
   (:mod:`~nemo_hf.modeling.cris.clip_resnet`) as CRIS takes them: ``layer2``, ``layer3``,
   and the attention pool at every position of ``layer4`` plus a residual branch, then a
   ReLU. On a CLIP ViT (16-pixel patches give those strides) by the ``config.pyramid``
   chosen. Position tables (the attention pool's, a ViT's) are resized to the input's grid
   at every forward pass, so the towers' weights stay CLIP's.
3. **Neck** — the scales fused under the sentence, plus coordinates
   (:mod:`~nemo_hf.modeling.cris.neck`).
4. **Decoder** — pixels attend to each other and to the words
   (:mod:`~nemo_hf.modeling.cris.decoder`).
5. **Text-to-pixel** — the sentence as a dynamic kernel over upsampled pixel embeddings:
   logits at a quarter of the input's side (104² at CRIS's 416²;
   :mod:`~nemo_hf.modeling.cris.projector`).

With ``labels`` (``(B, H, W)`` masks in [0, 1] at the input's size, as ``transformers``'
segmentation models take them) the output also holds ``loss``: the loss of
``config.segmentation_loss`` (CRIS's per-pixel binary cross-entropy by default) at the
logits' resolution, the labels brought there by averaging each block of input pixels
(:func:`~nemo_hf.modeling.losses.labels_at`: a label is the share of its output pixel the
object covers). CRIS resizes its masks with nearest neighbour instead.

The new layers start from PyTorch's default initialisation, as CRIS's do (its attention
layers' output bias zero, as ``nn.MultiheadAttention`` sets it). The model saves and loads
like any ``transformers`` model (``save_pretrained`` writes ``config.json``, which holds
the backbone's architecture, and ``model.safetensors``, all its weights); importing
``nemo_hf.modeling`` registers it with ``AutoConfig`` and ``AutoModel``.

    >>> import torch
    >>> model = CRISForReferringSegmentation.from_clip("nemo-hf/synthetic-clip", seed=0).eval()
    >>> pixels, ids = torch.zeros(2, 3, 64, 64), torch.tensor([[0, 5, 1], [0, 7, 1]])
    >>> output = model(pixel_values=pixels, input_ids=ids, labels=torch.ones(2, 64, 64))
    >>> output.logits.shape, output.loss.shape  # 8-pixel patches: logits at half the side
    (torch.Size([2, 32, 32]), torch.Size([]))
    >>> from nemo_hf.modeling.cris.clip_resnet import CLIPResNetConfig
    >>> resnet = CLIPResNetConfig(vision_layers=[1, 1, 1, 1], vision_width=8, image_size=64, projection_dim=16,
    ...                           text_config=model.config.clip_config.text_config.to_dict())
    >>> cris_resnet = CRISForReferringSegmentation(CRISConfig(clip_config=resnet)).eval()
    >>> [tuple(m.shape[1:]) for m in cris_resnet.encode_image(pixels)]  # layer2, layer3, pool: strides 8, 16, 32
    [(64, 8, 8), (128, 4, 4), (16, 2, 2)]
    >>> cris_resnet(pixel_values=pixels, input_ids=ids).logits.shape
    torch.Size([2, 16, 16])
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import CLIPModel, CLIPTextModel, CLIPVisionModel, PreTrainedModel
from transformers import initialization as init

from nemo_hf.modeling.cris.clip_resnet import (
    CLIPResNetModel,
    CLIPResNetVision,
    default_init_weights,
    load_any_clip,
)
from nemo_hf.modeling.cris.configuration import CRISConfig
from nemo_hf.modeling.cris.decoder import VisionLanguageDecoder
from nemo_hf.modeling.cris.features import (
    ResNetFeaturePyramid,
    ViTDetFeaturePyramid,
    ViTFeaturePyramid,
)
from nemo_hf.modeling.cris.neck import CrossModalNeck
from nemo_hf.modeling.cris.projector import TextToPixelProjector
from nemo_hf.modeling.interface import ReferringSegmenterOutput
from nemo_hf.modeling.losses import segmentation_loss

__all__ = ["CRISForReferringSegmentation", "CRISOutput", "CRISPreTrainedModel"]

# the CLIP weights the towers take (a CLIPModel's, a CLIPResNetModel's); the logit scale has no use in segmentation,
# nor has the visual projection where C5 does not read it (pyramid "vitdet")
_CLIP_TOWERS = ("text_model.", "text_projection.", "vision_model.", "visual_projection.")


@dataclass
class CRISOutput(ReferringSegmenterOutput):
    """``logits`` ``(B, h, w)`` per pixel; ``loss`` (``config.segmentation_loss``) when labels were given."""


class CRISPreTrainedModel(PreTrainedModel):
    """Weight initialisation and loading of CRIS models; the CLIP towers keep CLIP's own initialisation."""

    config_class = CRISConfig
    config: CRISConfig
    base_model_prefix = "cris"
    main_input_name = "pixel_values"
    _supports_sdpa = True
    _no_split_modules = ["CLIPEncoderLayer", "CLIPTextEmbeddings", "CLIPVisionEmbeddings"]

    def _init_weights(self, module: nn.Module) -> None:
        """PyTorch's own initialisation for the new layers (small initial logits), written to spare loaded weights.

        As CRIS's layers start (PyTorch's defaults): ``nn.MultiheadAttention`` draws its input
        projection Xavier-uniform and zeroes its biases, the output projection's too; this runs
        after the output projection's own ``nn.Linear`` initialisation (children first).
        """
        if isinstance(module, nn.MultiheadAttention):
            init.xavier_uniform_(module.in_proj_weight)
            init.zeros_(module.in_proj_bias)
            init.zeros_(module.out_proj.bias)
        else:
            default_init_weights(module)


class CRISForReferringSegmentation(CRISPreTrainedModel):
    """CRIS on CLIP's towers (see the module docstring); :meth:`from_clip` builds one on a CLIP's weights."""

    def __init__(self, config: CRISConfig) -> None:
        super().__init__(config)
        clip = config.clip_config
        text_width, joint = config.text_width, config.projection_dim
        self.text_model = CLIPTextModel(clip.text_config)
        self.text_projection = nn.Linear(text_width, joint, bias=False)
        self.visual_projection: nn.Linear | None = None
        if config.backbone == "clip_resnet":
            self.vision_model = CLIPResNetVision(clip)
            _, c3, c4, c5 = clip.stage_widths
            self.pyramid = ResNetFeaturePyramid(c5, joint)
            in_channels = (c3, c4, joint)
        elif config.pyramid == "vitdet":
            self.vision_model = CLIPVisionModel(clip.vision_config)
            self.pyramid = ViTDetFeaturePyramid(clip.vision_config.hidden_size, config.pyramid_channels)
            in_channels = (config.pyramid_channels,) * 3
        else:
            vision_width = clip.vision_config.hidden_size
            self.vision_model = CLIPVisionModel(clip.vision_config)
            self.visual_projection = nn.Linear(vision_width, joint, bias=False)
            self.pyramid = ViTFeaturePyramid(vision_width)
            in_channels = (vision_width, vision_width, joint)
        self.neck = CrossModalNeck(in_channels, config.neck_channels, sentence_dim=joint)
        self.decoder = VisionLanguageDecoder(text_width, config.decoder_layers, config.decoder_attention_heads,
                                             config.decoder_ffn_dim, config.decoder_dropout)
        self.projector = TextToPixelProjector(text_width, joint, config.projector_kernel_size)
        self.post_init()

    def new_modules(self) -> list[nn.Module]:
        """The layers CRIS adds to CLIP (pyramid, neck, decoder, projector): what ``from_clip`` initialises.

        On a ResNet the pyramid is CRIS's residual branch of C5, which CRIS trains with the
        backbone (:class:`~nemo_hf.modeling.cris.segmenter.CRISReferringSegmenter`).
        """
        return [self.pyramid, self.neck, self.decoder, self.projector]

    def vision_modules(self) -> list[nn.Module]:
        """The CLIP's vision tower, and its visual projection where C5 reads it (``pyramid="layers"``)."""
        return [self.vision_model] + ([self.visual_projection] if self.visual_projection is not None else [])

    def position_embeddings(self) -> list[nn.Parameter]:
        """The towers' position tables: the text tower's, the attention pool's or the ViT's.

        CRIS trains these at the new layers' learning rate, the rest of the backbone at a tenth.
        """
        vision = (self.vision_model.attnpool.positional_embedding if isinstance(self.vision_model, CLIPResNetVision)
                  else self.vision_model.embeddings.position_embedding.weight)
        return [self.text_model.embeddings.position_embedding.weight, vision]

    def encode_text(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(words (B, T, text width), sentence (B, projection dim))``."""
        output = self.text_model(input_ids=input_ids, attention_mask=attention_mask)
        return output.last_hidden_state, self.text_projection(output.pooler_output)

    def encode_image(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(C3, C4, C5)`` (see :mod:`~nemo_hf.modeling.cris.features`)."""
        if isinstance(self.vision_model, CLIPResNetVision):
            return self.pyramid(self.vision_model(pixel_values), self.vision_model.attnpool)
        layers = self.config.pyramid == "layers"
        output = self.vision_model(pixel_values=pixel_values, output_hidden_states=layers, interpolate_pos_encoding=True)
        patch = self.config.clip_config.vision_config.patch_size
        grid = (pixel_values.shape[-2] // patch, pixel_values.shape[-1] // patch)
        last = self.vision_model.post_layernorm(output.last_hidden_state)
        if not layers:
            return self.pyramid(last, grid)
        early, middle = (output.hidden_states[layer] for layer in self.config.feature_layers)
        return self.pyramid(early, middle, self.visual_projection(last), grid)

    def forward(
        self,
        pixel_values: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> CRISOutput:
        """Logits ``(B, h, w)`` (a quarter of the input's side for 16-pixel patches); ``loss`` with ``labels``."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        words, sentence = self.encode_text(input_ids, attention_mask)
        fused = self.neck(self.encode_image(pixel_values), sentence)
        pixels = self.decoder(fused, words, word_padding=attention_mask == 0)
        logits = self.projector(pixels, sentence)
        loss = None if labels is None else segmentation_loss(logits, labels.to(logits.device),
                                                              self.config.segmentation_loss)
        return CRISOutput(loss=loss, logits=logits)

    @classmethod
    def from_clip(
        cls,
        clip: str | os.PathLike[str] | CLIPModel | CLIPResNetModel | nn.Module | Mapping[str, torch.Tensor],
        *,
        seed: int = 0,
        revision: str | None = None,
        **config_overrides: Any,
    ) -> CRISForReferringSegmentation:
        """CRIS on ``clip``'s towers: a ViT or ResNet CLIP, as an object or by name.

        ``clip`` is a ``transformers`` ``CLIPModel`` (a ViT), a
        :class:`~nemo_hf.modeling.cris.clip_resnet.CLIPResNetModel`, an open_clip or OpenAI
        ResNet ``CLIP`` module (or its state dict), or the name of either kind of checkpoint:
        a Hub id or folder of a ``CLIPModel`` (``openai/clip-vit-base-patch16``, the shipped
        ``nemo-hf/synthetic-clip``) or in open_clip's format (``timm/resnet50_clip.openai``,
        ``timm/resnet101_clip.openai``). The towers and their projections take the CLIP's
        weights; the new layers are drawn from ``seed`` alone (the global generator is left as
        it was), so two calls with one seed give one model. ``config_overrides`` are
        :class:`CRISConfig` fields (``decoder_layers=2``, ``pyramid="layers"``, …).
        """
        if isinstance(clip, (str, os.PathLike)):
            clip, _ = load_any_clip(clip, revision=revision)
        elif not isinstance(clip, (CLIPModel, CLIPResNetModel)):
            clip = CLIPResNetModel.from_open_clip(clip)
        config = CRISConfig(clip_config=clip.config.to_dict(), **config_overrides)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = cls(config)
        wanted = _CLIP_TOWERS if model.visual_projection is not None else _CLIP_TOWERS[:3]
        towers = {key: value for key, value in clip.state_dict().items() if key.startswith(wanted)}
        missing, unexpected = model.load_state_dict(towers, strict=False)
        not_loaded = [key for key in missing if key.startswith(_CLIP_TOWERS)]
        if not_loaded or unexpected:
            raise ValueError(f"the CLIP's weights do not fit CRIS's towers: missing {not_loaded}, unexpected {unexpected}")
        return model.eval()
