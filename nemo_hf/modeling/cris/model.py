"""``CRISForReferringSegmentation``: CRIS (Wang et al., CVPR 2022) on ``transformers``' CLIP towers.

The forward pass, as in CRIS's ``model/segmenter.py`` (public code), with a CLIP ViT for
its CLIP ResNet:

1. **Text** — the text tower's last hidden states are the words; the EOS token's state
   through the text projection is the sentence (CLIP's text embedding).
2. **Image** — three maps at strides patch/2, patch and 2·patch from the vision tower's
   hidden states (:mod:`~nemo_hf.modeling.cris.features`: 8, 16, 32 on ViT-B/16, CRIS's
   C3–C5). The position embeddings are interpolated to the input's grid at every forward
   pass, so the tower's weights stay CLIP's (CRIS resizes its attention pool's likewise).
3. **Neck** — the scales fused under the sentence, plus coordinates
   (:mod:`~nemo_hf.modeling.cris.neck`).
4. **Decoder** — pixels attend to each other and to the words
   (:mod:`~nemo_hf.modeling.cris.decoder`).
5. **Text-to-pixel** — the sentence as a dynamic kernel over upsampled pixel embeddings:
   logits at a quarter of the input's side for 16-pixel patches (104² at CRIS's 416²;
   :mod:`~nemo_hf.modeling.cris.projector`).

With ``labels`` (``(B, H, W)`` masks in [0, 1] at the input's size, as ``transformers``'
segmentation models take them) the output also holds ``loss``: the loss of
``config.segmentation_loss`` (CRIS's per-pixel binary cross-entropy by default) at the
logits' resolution, the labels brought there by averaging each block of input pixels
(:func:`~nemo_hf.modeling.losses.labels_at`: a label is the share of its output pixel the
object covers). CRIS resizes its masks with nearest neighbour instead.

The model saves and loads like any ``transformers`` model (``save_pretrained`` writes
``config.json`` and ``model.safetensors``); importing ``nemo_hf.modeling`` registers it
with ``AutoConfig`` and ``AutoModel``.

    >>> import torch
    >>> model = CRISForReferringSegmentation.from_clip("nemo-hf/synthetic-clip", seed=0).eval()
    >>> pixels, ids = torch.zeros(2, 3, 64, 64), torch.tensor([[0, 5, 1], [0, 7, 1]])
    >>> output = model(pixel_values=pixels, input_ids=ids, labels=torch.ones(2, 64, 64))
    >>> output.logits.shape, output.loss.shape  # 8-pixel patches: logits at half the side
    (torch.Size([2, 32, 32]), torch.Size([]))
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import CLIPModel, CLIPTextModel, CLIPVisionModel, PreTrainedModel
from transformers import initialization as init

from nemo_hf.mining.clip import load_clip
from nemo_hf.modeling.cris.configuration import CRISConfig
from nemo_hf.modeling.cris.decoder import VisionLanguageDecoder
from nemo_hf.modeling.cris.features import ViTFeaturePyramid
from nemo_hf.modeling.cris.neck import CrossModalNeck
from nemo_hf.modeling.cris.projector import TextToPixelProjector
from nemo_hf.modeling.interface import ReferringSegmenterOutput
from nemo_hf.modeling.losses import segmentation_loss

__all__ = ["CRISForReferringSegmentation", "CRISOutput", "CRISPreTrainedModel"]

# the CLIPModel weights the towers take; the logit scale has no use in segmentation
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
        """PyTorch's own initialisation for the new layers (small initial logits), written to spare loaded weights."""
        if isinstance(module, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            init.kaiming_uniform_(module.weight, a=math.sqrt(5))
            if module.bias is not None:
                fan_in, _ = nn.init._calculate_fan_in_and_fan_out(module.weight)
                bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
                init.uniform_(module.bias, -bound, bound)
        elif isinstance(module, nn.MultiheadAttention):
            init.xavier_uniform_(module.in_proj_weight)
            init.zeros_(module.in_proj_bias)
        elif isinstance(module, (nn.LayerNorm, nn.BatchNorm1d, nn.BatchNorm2d)):
            init.ones_(module.weight)
            init.zeros_(module.bias)
            if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
                init.zeros_(module.running_mean)
                init.ones_(module.running_var)
                init.zeros_(module.num_batches_tracked)


class CRISForReferringSegmentation(CRISPreTrainedModel):
    """CRIS on CLIP's towers (see the module docstring); :meth:`from_clip` builds one on a CLIP's weights."""

    def __init__(self, config: CRISConfig) -> None:
        super().__init__(config)
        clip = config.clip_config
        vision_width, text_width = clip.vision_config.hidden_size, clip.text_config.hidden_size
        self.text_model = CLIPTextModel(clip.text_config)
        self.text_projection = nn.Linear(text_width, clip.projection_dim, bias=False)
        self.vision_model = CLIPVisionModel(clip.vision_config)
        self.visual_projection = nn.Linear(vision_width, clip.projection_dim, bias=False)
        self.pyramid = ViTFeaturePyramid(vision_width)
        self.neck = CrossModalNeck((vision_width, vision_width, clip.projection_dim), config.neck_channels,
                                   sentence_dim=clip.projection_dim)
        self.decoder = VisionLanguageDecoder(text_width, config.decoder_layers, config.decoder_attention_heads,
                                             config.decoder_ffn_dim, config.decoder_dropout)
        self.projector = TextToPixelProjector(text_width, clip.projection_dim, config.projector_kernel_size)
        self.post_init()

    def new_modules(self) -> list[nn.Module]:
        """The layers CRIS adds to CLIP (pyramid, neck, decoder, projector): what ``from_clip`` initialises."""
        return [self.pyramid, self.neck, self.decoder, self.projector]

    def encode_text(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(words (B, T, text width), sentence (B, projection dim))``."""
        output = self.text_model(input_ids=input_ids, attention_mask=attention_mask)
        return output.last_hidden_state, self.text_projection(output.pooler_output)

    def encode_image(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(C3, C4, C5)`` at strides patch/2, patch, 2·patch (see :mod:`~nemo_hf.modeling.cris.features`)."""
        output = self.vision_model(pixel_values=pixel_values, output_hidden_states=True, interpolate_pos_encoding=True)
        patch = self.config.clip_config.vision_config.patch_size
        grid = (pixel_values.shape[-2] // patch, pixel_values.shape[-1] // patch)
        early, middle = (output.hidden_states[layer] for layer in self.config.feature_layers)
        joint = self.visual_projection(self.vision_model.post_layernorm(output.last_hidden_state))
        return self.pyramid(early, middle, joint, grid)

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
        clip: str | os.PathLike[str] | CLIPModel,
        *,
        seed: int = 0,
        revision: str | None = None,
        **config_overrides: Any,
    ) -> CRISForReferringSegmentation:
        """CRIS on ``clip`` (a Hub id, folder, shipped name such as ``nemo-hf/synthetic-clip``, or a ``CLIPModel``).

        The towers and their projections take the CLIP's weights; the new layers are drawn
        from ``seed`` alone (the global generator is left as it was), so two calls with one
        seed give one model. ``config_overrides`` are :class:`CRISConfig` fields
        (``decoder_layers=2``, ``feature_layers=[2, 3]``, …).
        """
        if not isinstance(clip, CLIPModel):
            clip, _ = load_clip(os.fspath(clip), revision=revision)
        config = CRISConfig(clip_config=clip.config.to_dict(), **config_overrides)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = cls(config)
        towers = {key: value for key, value in clip.state_dict().items() if key.startswith(_CLIP_TOWERS)}
        missing, unexpected = model.load_state_dict(towers, strict=False)
        not_loaded = [key for key in missing if key.startswith(_CLIP_TOWERS)]
        if not_loaded or unexpected:
            raise ValueError(f"the CLIP's weights do not fit CRIS's towers: missing {not_loaded}, unexpected {unexpected}")
        return model.eval()
