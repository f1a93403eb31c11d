"""The three visual scales CRIS reads (C3, C4, C5 at strides 8, 16, 32), from a CLIP ResNet or a CLIP ViT.

CRIS (``model/clip.py`` of the public code) reads a CLIP ResNet: C3 is ``layer2``'s output,
C4 ``layer3``'s, and C5 the attention pool run at every position of ``layer4``'s map (its
position table resized to the grid), plus a residual branch CRIS adds — a 1×1 convolution
and batch norm of ``layer4`` — then a ReLU: :class:`ResNetFeaturePyramid` holds that branch.

A ViT has one stride, its patch, at every layer; two ways to make three scales of it:

- ``"layers"`` (:class:`ViTFeaturePyramid`, this project's design): layers of increasing
  depth — an earlier layer's patch tokens upsampled ×2 by a learned 2×2 transposed
  convolution (C3), a middle layer's as they are (C4), and the last layer's through the
  tower's final layer norm and visual projection, in CLIP's joint space as CRIS's C5 is,
  max-pooled ×2 (C5). The intermediate tokens enter un-normalised.
- ``"vitdet"`` (:class:`ViTDetFeaturePyramid`, after ViTDet's simple feature pyramid, Li et
  al., ECCV 2022): every scale from the last layer (through the tower's final layer norm) —
  ×2 by a 2×2 transposed convolution to half the width, ×1 as it is, ×½ by 2×2 max pooling —
  each then a 1×1 and a 3×3 convolution, each followed by a layer norm over channels, to one
  width (ViTDet: 256). A ViT's default: slightly ahead of ``"layers"`` on the synthetic world
  at equal steps (training/README.md).

With 16-pixel patches (ViT-B/16) the strides are CRIS's 8, 16 and 32; with 8-pixel patches
4, 8 and 16. The class token is dropped. Odd grids keep their last row and column in C5
(``ceil_mode``).

    >>> import torch
    >>> pyramid = ViTFeaturePyramid(vision_width=8)
    >>> tokens = torch.randn(2, 1 + 6 * 4, 8)  # class token + a 6x4 grid
    >>> [tuple(m.shape) for m in pyramid(tokens, tokens, tokens[..., :5], grid=(6, 4))]
    [(2, 8, 12, 8), (2, 8, 6, 4), (2, 5, 3, 2)]
    >>> [tuple(m.shape) for m in ViTDetFeaturePyramid(vision_width=8, channels=6)(tokens, grid=(6, 4))]
    [(2, 6, 12, 8), (2, 6, 6, 4), (2, 6, 3, 2)]
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ChannelLayerNorm", "ResNetFeaturePyramid", "ViTDetFeaturePyramid", "ViTFeaturePyramid", "tokens_to_map"]


def tokens_to_map(tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """``(B, 1 + h·w, C)`` tokens (class token first) → a ``(B, C, h, w)`` map of the patch tokens.

    >>> tokens_to_map(torch.arange(7.0).view(1, 7, 1), (2, 3))[0, 0].tolist()
    [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]
    """
    patches = tokens[:, 1:, :]
    if patches.shape[1] != grid[0] * grid[1]:
        raise ValueError(f"{patches.shape[1]} patch tokens do not form a {grid[0]}x{grid[1]} grid")
    return patches.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], *grid)


class ViTFeaturePyramid(nn.Module):
    """``"layers"``: an earlier layer's, a middle layer's and the projected last layer's tokens → ×2, ×1, ×½ the grid."""

    def __init__(self, vision_width: int) -> None:
        super().__init__()
        self.upsample = nn.ConvTranspose2d(vision_width, vision_width, kernel_size=2, stride=2)

    def forward(
        self, early: torch.Tensor, middle: torch.Tensor, projected_last: torch.Tensor, grid: tuple[int, int]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(C3, C4, C5)``."""
        c3 = self.upsample(tokens_to_map(early, grid))
        c4 = tokens_to_map(middle, grid)
        c5 = F.max_pool2d(tokens_to_map(projected_last, grid), kernel_size=2, stride=2, ceil_mode=True)
        return c3, c4, c5


class ChannelLayerNorm(nn.LayerNorm):
    """Layer norm over the channels of a ``(B, C, H, W)`` map at each position (ViTDet's ``LayerNorm`` for maps).

    >>> out = ChannelLayerNorm(4)(torch.randn(1, 4, 2, 2) * 5 + 3)
    >>> [round(v, 4) for v in (out.mean(1).abs().max().item(), out.var(1, unbiased=False).mean().item())]
    [0.0, 1.0]
    """

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        return super().forward(maps.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def _output_convs(in_channels: int, channels: int) -> nn.Sequential:
    """ViTDet's per-scale head: 1×1 then 3×3 convolution (no bias), each followed by a layer norm over channels."""
    return nn.Sequential(
        nn.Conv2d(in_channels, channels, 1, bias=False), ChannelLayerNorm(channels),
        nn.Conv2d(channels, channels, 3, padding=1, bias=False), ChannelLayerNorm(channels),
    )


class ViTDetFeaturePyramid(nn.Module):
    """``"vitdet"``: the last layer's tokens (normed) → ×2, ×1, ×½ the grid, each ``channels`` wide (module docstring)."""

    def __init__(self, vision_width: int, channels: int) -> None:
        super().__init__()
        self.upsample = nn.ConvTranspose2d(vision_width, vision_width // 2, kernel_size=2, stride=2)
        self.out3 = _output_convs(vision_width // 2, channels)
        self.out4 = _output_convs(vision_width, channels)
        self.out5 = _output_convs(vision_width, channels)

    def forward(self, last: torch.Tensor, grid: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(C3, C4, C5)`` from the last layer's tokens."""
        maps = tokens_to_map(last, grid)
        c5 = F.max_pool2d(maps, kernel_size=2, stride=2, ceil_mode=True)
        return self.out3(self.upsample(maps)), self.out4(maps), self.out5(c5)


class ResNetFeaturePyramid(nn.Module):
    """CRIS's C3, C4, C5 of a CLIP ResNet: ``layer2``, ``layer3``, ReLU(attention pool + residual branch) of ``layer4``.

    The residual branch (CRIS's ``connect``: 1×1 convolution without bias, batch norm) is
    the only weights here; the attention pool is CLIP's.

    >>> pyramid = ResNetFeaturePyramid(in_channels=16, out_channels=4)
    >>> c3, c4, c5 = pyramid([None, torch.randn(1, 8, 8, 8), torch.randn(1, 12, 4, 4), torch.randn(1, 16, 2, 2)],
    ...                      attention_pool=lambda x: x[:, :4])
    >>> tuple(c5.shape), bool((c5 >= 0).all())
    ((1, 4, 2, 2), True)
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.residual = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels))

    def forward(
        self, stages: list[torch.Tensor], attention_pool: nn.Module
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``stages``: the ResNet's four stage outputs; ``attention_pool``: CLIP's, run at every position."""
        _, layer2, layer3, layer4 = stages
        return layer2, layer3, F.relu(attention_pool(layer4) + self.residual(layer4))
