"""``CRISConfig``: the CLIP CRIS stands on (a ViT's ``CLIPConfig`` or a :class:`CLIPResNetConfig`) and its new layers' sizes.

``backbone`` names the CLIP family: ``"clip_resnet"`` is CRIS's own (the RN50 and RN101 of
its paper, ``clip_config`` a :class:`~nemo_hf.modeling.cris.clip_resnet.CLIPResNetConfig`),
``"clip_vit"`` a ``transformers`` CLIP ViT (``clip_config`` a ``CLIPConfig``). Inferred from
``clip_config`` when not given; ``"clip_vit"`` when neither says.

The defaults follow CRIS (Wang et al., CVPR 2022; the public code, config
``config/refcoco/cris_r50.yaml``), expressed in the CLIP's own widths so that they give
CRIS's numbers on the CLIPs whose text tower is 512 wide (RN50, RN101, ViT-B/16):

====================================  ===================  =====================================
field                                 CRIS (R50)           default here (``d`` = text width)
====================================  ===================  =====================================
decoder width (``vis_dim``)           512                  ``d`` (words enter it unprojected)
``neck_channels`` (``fpn_out``)       256, 512, 1024       ``d/2, d, 2d``
``decoder_layers`` / heads / FFN      3 / 8 / 2048         3 / 8 / ``4d``
``decoder_dropout``                   0.1                  0.1
``projector_kernel_size``             3                    3
====================================  ===================  =====================================

``pyramid`` says how the three visual scales are made (:mod:`~nemo_hf.modeling.cris.features`):
``"resnet"`` (the only one for a ResNet: CRIS's ``layer2``, ``layer3``, attention pool),
``"vitdet"`` (a ViT's default: ViTDet's, every scale from the last layer; ahead of ``"layers"``
on the synthetic world, training/README.md) or ``"layers"``. ``feature_layers`` names the two ViT layers
``"layers"`` reads for the stride-8 and stride-16 maps (default: a third and two thirds of
the tower's depth, 4 and 8 of ViT-B/16's 12); ``pyramid_channels`` is the width of every
``"vitdet"`` scale (default ``d/2``: ViTDet's 256 on ViT-B/16). Derived values are resolved
when the config is made, so ``config.json`` holds the sizes the model was built with.

    >>> config = CRISConfig()  # transformers' CLIPConfig defaults: a ViT-B/32 CLIP
    >>> config.backbone, config.pyramid, config.pyramid_channels, config.neck_channels, config.decoder_ffn_dim
    ('clip_vit', 'vitdet', 256, [256, 512, 1024], 2048)
    >>> resnet = CRISConfig(backbone="clip_resnet")  # OpenAI's RN50 CLIP: CRIS-R50
    >>> type(resnet.clip_config).__name__, resnet.clip_config.vision_layers, resnet.pyramid, resnet.neck_channels
    ('CLIPResNetConfig', [3, 4, 6, 3], 'resnet', [256, 512, 1024])
    >>> CRISConfig(pyramid="layers").feature_layers  # this project's first design: a third and two thirds down
    [4, 8]
    >>> CRISConfig(pyramid="layers", feature_layers=[3, 13])
    Traceback (most recent call last):
    ...
    ValueError: feature_layers must be two layer numbers in 1..12 of the vision tower, got [3, 13]
"""

from __future__ import annotations

from transformers import CLIPConfig, PreTrainedConfig

from nemo_hf.modeling.cris.clip_resnet import CLIPResNetConfig
from nemo_hf.modeling.losses import SEGMENTATION_LOSSES

__all__ = ["BACKBONES", "PYRAMIDS", "CRISConfig"]

BACKBONES: dict[str, type[PreTrainedConfig]] = {"clip_vit": CLIPConfig, "clip_resnet": CLIPResNetConfig}
PYRAMIDS: dict[str, tuple[str, ...]] = {"clip_vit": ("vitdet", "layers"), "clip_resnet": ("resnet",)}


def _backbone_of(clip_config: dict | PreTrainedConfig | None) -> str | None:
    """The family a given ``clip_config`` (object, or dict with ``model_type``) belongs to, or None if it does not say."""
    model_type = clip_config.get("model_type") if isinstance(clip_config, dict) else getattr(clip_config, "model_type", None)
    return next((name for name, cls in BACKBONES.items() if model_type == cls.model_type), None)


class CRISConfig(PreTrainedConfig):
    """CRIS on a CLIP: ``backbone``, ``clip_config`` and the new layers' sizes (module docstring).

    Args:
        backbone: ``"clip_resnet"`` or ``"clip_vit"`` (default: what ``clip_config`` is, else ``"clip_vit"``).
        clip_config: the CLIP whose towers the model holds — a ``CLIPConfig`` (ViT), a
            ``CLIPResNetConfig``, or either's dict (default: the family's defaults: ViT-B/32, RN50).
        pyramid: how the three visual scales are made: ``"resnet"``; ``"vitdet"`` (default) or ``"layers"`` on a ViT
            (the default when only ``feature_layers`` is given).
        feature_layers: ``"layers"`` only: the vision layers (1 = the first block's output)
            giving the stride-8 and stride-16 maps.
        pyramid_channels: ``"vitdet"`` only: the width of its three maps.
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

    backbone: str | None = None
    clip_config: dict | PreTrainedConfig | None = None
    pyramid: str | None = None
    feature_layers: list[int] | None = None
    pyramid_channels: int | None = None
    neck_channels: list[int] | None = None
    decoder_layers: int = 3
    decoder_attention_heads: int = 8
    decoder_ffn_dim: int | None = None
    decoder_dropout: float = 0.1
    projector_kernel_size: int = 3
    segmentation_loss: str = "bce"

    def __post_init__(self, **kwargs) -> None:
        given = _backbone_of(self.clip_config)
        if self.backbone is None:
            self.backbone = given or "clip_vit"
        if self.backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {tuple(BACKBONES)}, got {self.backbone!r}")
        if given not in (None, self.backbone):
            raise ValueError(f"clip_config is a {given} configuration, but backbone={self.backbone!r}")
        if not isinstance(self.clip_config, PreTrainedConfig):  # None or a dict: the family's class builds it
            fields = {k: v for k, v in (self.clip_config or {}).items() if k != "model_type"}
            self.clip_config = BACKBONES[self.backbone](**fields)
        super().__post_init__(**kwargs)
        width = self.text_width
        if self.pyramid is None:
            # feature_layers alone means "layers": so a config saved before "vitdet" became the default loads as built
            asks_for_layers = self.backbone == "clip_vit" and self.feature_layers is not None
            self.pyramid = "layers" if asks_for_layers else PYRAMIDS[self.backbone][0]
        if self.pyramid == "layers" and self.feature_layers is None:
            depth = self.clip_config.vision_config.num_hidden_layers
            self.feature_layers = [max(1, round(depth / 3)), max(1, round(2 * depth / 3))]
        if self.neck_channels is None:
            self.neck_channels = [width // 2, width, 2 * width]
        self.neck_channels = [int(channels) for channels in self.neck_channels]
        if self.pyramid == "vitdet" and self.pyramid_channels is None:
            self.pyramid_channels = self.neck_channels[0]
        if self.decoder_ffn_dim is None:
            self.decoder_ffn_dim = 4 * width
        if self.feature_layers is not None:
            self.feature_layers = [int(layer) for layer in self.feature_layers]
        self._validate(width)

    @property
    def text_width(self) -> int:
        """The text tower's width: the decoder's."""
        return self.clip_config.text_config.hidden_size

    @property
    def projection_dim(self) -> int:
        """CLIP's joint embedding width: the sentence feature's."""
        return self.clip_config.projection_dim

    def _validate(self, width: int) -> None:
        if self.pyramid not in PYRAMIDS[self.backbone]:
            raise ValueError(f"pyramid must be one of {PYRAMIDS[self.backbone]} on a {self.backbone} backbone, "
                             f"got {self.pyramid!r}")
        if self.pyramid == "layers":
            depth = self.clip_config.vision_config.num_hidden_layers
            if len(self.feature_layers) != 2 or not all(1 <= layer <= depth for layer in self.feature_layers):
                raise ValueError(
                    f"feature_layers must be two layer numbers in 1..{depth} of the vision tower, got {self.feature_layers}"
                )
        elif self.feature_layers is not None:
            raise ValueError(f"feature_layers applies to pyramid='layers' only, not {self.pyramid!r}")
        if self.pyramid != "vitdet" and self.pyramid_channels is not None:
            raise ValueError(f"pyramid_channels applies to pyramid='vitdet' only, not {self.pyramid!r}")
        if self.pyramid == "vitdet" and self.pyramid_channels < 1:
            raise ValueError(f"pyramid_channels must be positive, got {self.pyramid_channels}")
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
