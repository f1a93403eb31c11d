"""A ViT's hidden states turned into the three scales CRIS reads from its ResNet.

CRIS takes a CLIP ResNet's C3, C4 and C5 (strides 8, 16 and 32; C5 is the attention
pool's output, in CLIP's joint embedding space). A ViT has one stride, its patch size, at
every layer, and ``transformers`` has no CLIP ResNet. So, in the manner of ViTDet's
simple feature pyramid (Li et al., ECCV 2022), from layers of increasing depth:

- stride patch/2 (C3): an earlier layer's patch tokens, upsampled ×2 by a learned 2×2
  transposed convolution;
- stride patch (C4): a middle layer's patch tokens as they are;
- stride 2·patch (C5): the last layer's patch tokens through the tower's final layer norm
  and visual projection, in the joint space as C5 is, max-pooled ×2.

With 16-pixel patches (ViT-B/16) the strides are CRIS's 8, 16 and 32; with 8-pixel
patches they are 4, 8 and 16. The class token is dropped.

    >>> import torch
    >>> pyramid = ViTFeaturePyramid(vision_width=8)
    >>> tokens = torch.randn(2, 1 + 6 * 4, 8)  # class token + a 6x4 grid
    >>> [tuple(m.shape) for m in pyramid(tokens, tokens, tokens[..., :5], grid=(6, 4))]
    [(2, 8, 12, 8), (2, 8, 6, 4), (2, 5, 3, 2)]
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ViTFeaturePyramid", "tokens_to_map"]


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
    """Tokens of an earlier layer, a middle layer and the projected last layer → maps at ×2, ×1 and ×½ the grid."""

    def __init__(self, vision_width: int) -> None:
        super().__init__()
        self.upsample = nn.ConvTranspose2d(vision_width, vision_width, kernel_size=2, stride=2)

    def forward(
        self, early: torch.Tensor, middle: torch.Tensor, projected_last: torch.Tensor, grid: tuple[int, int]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(C3, C4, C5)``; ``ceil_mode`` keeps the last row and column of an odd grid in C5."""
        c3 = self.upsample(tokens_to_map(early, grid))
        c4 = tokens_to_map(middle, grid)
        c5 = F.max_pool2d(tokens_to_map(projected_last, grid), kernel_size=2, stride=2, ceil_mode=True)
        return c3, c4, c5
