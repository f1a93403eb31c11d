"""``CRISConfig``: a CLIP (its ``CLIPConfig``) and the sizes of the layers CRIS adds to it.

The defaults follow CRIS (Wang et al., CVPR 2022; the public code, config
``config/refcoco/cris_r50.yaml``), expressed in the CLIP's own widths so that they give
CRIS's numbers on CLIP ViT-B/16, whose text tower is 512 wide like the ResNets' CRIS used:

====================================  ===================  =====================================
field                                 CRIS (R50)           default here (``d`` = text width)
====================================  ===================  =====================================
decoder width (``vis_dim``)           512                  ``d`` (words enter it unprojected)
``neck_channels`` (``fpn_out``)       256, 512, 1024       ``d/2, d, 2d``
``decoder_layers`` / heads / FFN      3 / 8 / 2048         3 / 8 / ``4d``
``decoder_dropout``                   0.1                  0.1
``projector_kernel_size``             3                    3
====================================  ===================  =====================================

``feature_layers`` names the two vision layers read for the stride-8 and stride-16 maps
(default: a third and two thirds of the tower's depth, 4 and 8 of ViT-B/16's 12); the
stride-32 map is always the tower's output in CLIP's joint embedding space, as CRIS's is
its ResNet's attention-pool output. Derived values are resolved when the config is made,
so ``config.json`` holds the sizes the model was built with.

    >>> config = CRISConfig()  # transformers' CLIPConfig defaults: a ViT-B/32 CLIP
    >>> config.feature_layers, config.neck_channels, config.decoder_ffn_dim
    ([4, 8], [256, 512, 1024], 2048)
    >>> CRISConfig(feature_layers=[3, 13])
    Traceback (most recent call last):
    ...
    ValueError: feature_layers must be two layer numbers in 1..12 of the vision tower, got [3, 13]
"""

from __future__ import annotations

from transformers import CLIPConfig, PreTrainedConfig

from nemo_hf.modeling.losses import SEGMENTATION_LOSSES

__all__ = ["CRISConfig"]


class CRISConfig(PreTrainedConfig):
    """CRIS on a CLIP: ``clip_config`` (a ``CLIPConfig`` or its dict) and the new layers' sizes (module docstring).

    Args:
        clip_config: the CLIP whose towers the model holds (``CLIPConfig`` defaults if None).
        feature_layers: the vision layers (1 = the first block's output) giving the
            stride-8 and stride-16 maps.
        neck_channels: the cross-modal neck's widths at strides 8, 16 and 32 (CRIS's
            ``fpn_out``); the middle one is the decoder's width and must equal the text
            tower's.
        decoder_layers, decoder_attention_heads, decoder_ffn_dim, decoder_dropout: the
            vision-language decoder.
        projector_kernel_size: side of the dynamic kernel the sentence is turned into.
        segmentation_loss: the training loss the model computes from ``labels``: ``"bce"``
            (CRIS's) or ``"bce+dice"`` (:mod:`nemo_hf.modeling.losses`).
    """

    model_type = "nemo_cris"
    sub_configs_defaults = {"clip_config": CLIPConfig}

    clip_config: dict | CLIPConfig | None = None
    feature_layers: list[int] | None = None
    neck_channels: list[int] | None = None
    decoder_layers: int = 3
    decoder_attention_heads: int = 8
    decoder_ffn_dim: int | None = None
    decoder_dropout: float = 0.1
    projector_kernel_size: int = 3
    segmentation_loss: str = "bce"

    def __post_init__(self, **kwargs) -> None:
        super().__post_init__(**kwargs)
        depth = self.clip_config.vision_config.num_hidden_layers
        width = self.clip_config.text_config.hidden_size
        if self.feature_layers is None:
            self.feature_layers = [max(1, round(depth / 3)), max(1, round(2 * depth / 3))]
        if self.neck_channels is None:
            self.neck_channels = [width // 2, width, 2 * width]
        if self.decoder_ffn_dim is None:
            self.decoder_ffn_dim = 4 * width
        self.feature_layers = [int(layer) for layer in self.feature_layers]
        self.neck_channels = [int(channels) for channels in self.neck_channels]
        self._validate(depth, width)

    def _validate(self, depth: int, width: int) -> None:
        if len(self.feature_layers) != 2 or not all(1 <= layer <= depth for layer in self.feature_layers):
            raise ValueError(
                f"feature_layers must be two layer numbers in 1..{depth} of the vision tower, got {self.feature_layers}"
            )
        if len(self.neck_channels) != 3 or self.neck_channels[1] != width:
            raise ValueError(
                f"neck_channels must be three widths, the middle one the text tower's width {width} (the decoder's "
                f"width: words enter its cross-attention unprojected, as in CRIS), got {self.neck_channels}"
            )
        # the 2-D sine positions give each axis half the channels, in sine/cosine pairs
        if width % 4 or width % self.decoder_attention_heads:
            raise ValueError(
                f"the decoder's width (the text tower's, {width}) must be a multiple of 4 and of "
                f"decoder_attention_heads={self.decoder_attention_heads}"
            )
        if self.projector_kernel_size < 1 or self.projector_kernel_size % 2 == 0:
            raise ValueError(f"projector_kernel_size must be odd and positive, got {self.projector_kernel_size}")
        if self.segmentation_loss not in SEGMENTATION_LOSSES:
            raise ValueError(f"segmentation_loss must be one of {SEGMENTATION_LOSSES}, got {self.segmentation_loss!r}")
        if self.decoder_layers < 1 or not 0.0 <= self.decoder_dropout < 1.0:
            raise ValueError(f"decoder_layers must be >= 1 and decoder_dropout in [0, 1), got "
                             f"{self.decoder_layers} and {self.decoder_dropout}")
