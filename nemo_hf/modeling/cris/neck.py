"""CRIS's cross-modal neck: the three visual scales fused with the sentence into one map at the middle stride.

As CRIS's ``FPN`` (``model/layers.py`` of the public code), with C3, C4, C5 at strides 8,
16, 32 (patch/2, patch, 2·patch on a ViT) and ``channels`` = CRIS's ``fpn_out``:

1. C5 and the projected sentence are multiplied channel-wise (the sentence conditions
   the coarsest map), then batch norm and ReLU;
2. the result, upsampled, is concatenated with C4 and mixed by a 1×1 convolution;
3. C3, average-pooled to stride 16, is concatenated with that and mixed likewise;
4. the three fused maps, brought to stride 16, are concatenated, aggregated, and given two
   coordinate channels (CoordConv) before a last 3×3 convolution.

Upsampling targets the C4 map's size rather than a factor of 2, so that a grid of odd
side (whose C5 was pooled with ``ceil_mode``) lines up.

    >>> import torch
    >>> neck = CrossModalNeck(in_channels=(8, 8, 6), channels=(4, 8, 12), sentence_dim=6)
    >>> maps = torch.randn(2, 8, 10, 10), torch.randn(2, 8, 5, 5), torch.randn(2, 6, 3, 3)
    >>> neck(maps, torch.randn(2, 6)).shape
    torch.Size([2, 8, 5, 5])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nemo_hf.modeling.cris.blocks import conv_bn_relu, coordinates, linear_bn_relu

__all__ = ["CrossModalNeck"]


def _resize(features: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    if features.shape[-2:] == like.shape[-2:]:
        return features
    return F.interpolate(features, size=like.shape[-2:], mode="bilinear", align_corners=False)


class CrossModalNeck(nn.Module):
    """``((C3, C4, C5), sentence) → (B, channels[1], h, w)`` at C4's size (see the module docstring).

    Args:
        in_channels: channels of C3, C4 and C5.
        channels: the neck's widths at the three strides (CRIS's ``fpn_out``); the output
            has ``channels[1]``.
        sentence_dim: width of the sentence feature (CLIP's joint embedding).
    """

    def __init__(self, in_channels: Sequence[int], channels: Sequence[int], sentence_dim: int) -> None:
        super().__init__()
        c3_in, c4_in, c5_in = in_channels
        low, mid, high = channels
        self.sentence_proj = linear_bn_relu(sentence_dim, high)
        self.c5_proj = conv_bn_relu(c5_in, high, 1)
        self.c5_norm = nn.Sequential(nn.BatchNorm2d(high), nn.ReLU(inplace=True))
        self.c4_proj = conv_bn_relu(c4_in, mid, 3)
        self.c4_fuse = conv_bn_relu(high + mid, mid, 1)
        self.c3_proj = conv_bn_relu(c3_in, low, 3)
        self.c3_fuse = conv_bn_relu(low + mid, mid, 1)
        self.out5 = conv_bn_relu(high, mid, 3)
        self.out4 = conv_bn_relu(mid, mid, 3)
        self.out3 = conv_bn_relu(mid, mid, 3)
        self.aggregate = conv_bn_relu(3 * mid, mid, 1)
        self.coord_conv = conv_bn_relu(mid + 2, mid, 3)
        self.final = conv_bn_relu(mid, mid, 3)

    def forward(self, maps: Sequence[torch.Tensor], sentence: torch.Tensor) -> torch.Tensor:
        c3, c4, c5 = maps
        f5 = self.c5_norm(self.c5_proj(c5) * self.sentence_proj(sentence)[:, :, None, None])
        f4 = self.c4_fuse(torch.cat([self.c4_proj(c4), _resize(f5, c4)], dim=1))
        f3 = F.avg_pool2d(self.c3_proj(c3), kernel_size=2, stride=2)
        f3 = self.c3_fuse(torch.cat([_resize(f3, f4), f4], dim=1))
        fused = torch.cat([self.out3(f3), self.out4(f4), _resize(self.out5(f5), f4)], dim=1)
        fused = self.aggregate(fused)
        return self.final(self.coord_conv(torch.cat([fused, coordinates(fused)], dim=1)))
