"""CRIS's text-to-pixel prediction: the sentence becomes a convolution kernel applied to upsampled pixel embeddings.

As CRIS's ``Projector`` (``model/layers.py`` of the public code): the decoder's map is
upsampled ×4 (twice ×2, bilinear, each followed by a 3×3 convolution, batch norm and ReLU;
the width halves) and given a 1×1 convolution: pixel embeddings of width ``width / 2``.
The sentence feature is projected to one ``k×k`` kernel of that width plus a bias, and
each sample's kernel is convolved with its own pixel embeddings (a grouped convolution
over the batch): one logit per pixel, the text-to-pixel score that the per-pixel
binary cross-entropy trains. From the neck's stride (16 on ViT-B/16) the logits come out
at stride 4: a quarter of the input's side.

    >>> import torch
    >>> projector = TextToPixelProjector(width=8, sentence_dim=6, kernel_size=3)
    >>> projector(torch.randn(2, 8, 5, 4), torch.randn(2, 6)).shape
    torch.Size([2, 20, 16])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nemo_hf.modeling.cris.blocks import conv_bn_relu

__all__ = ["TextToPixelProjector"]


class TextToPixelProjector(nn.Module):
    """``(pixels (B, width, h, w), sentence (B, sentence_dim)) → logits (B, 4h, 4w)``."""

    def __init__(self, width: int, sentence_dim: int, kernel_size: int) -> None:
        super().__init__()
        half = width // 2
        self.kernel_size = kernel_size
        self.upsample1 = conv_bn_relu(width, width, 3)
        self.upsample2 = conv_bn_relu(width, half, 3)
        self.embed = nn.Conv2d(half, half, 1)
        self.kernel = nn.Linear(sentence_dim, half * kernel_size * kernel_size + 1)

    def forward(self, pixels: torch.Tensor, sentence: torch.Tensor) -> torch.Tensor:
        pixels = self.upsample1(F.interpolate(pixels, scale_factor=2, mode="bilinear", align_corners=False))
        pixels = self.upsample2(F.interpolate(pixels, scale_factor=2, mode="bilinear", align_corners=False))
        pixels = self.embed(pixels)
        batch, channels, height, width = pixels.shape
        kernel = self.kernel(sentence)
        weight = kernel[:, :-1].reshape(batch, channels, self.kernel_size, self.kernel_size)
        logits = F.conv2d(pixels.reshape(1, batch * channels, height, width), weight, bias=kernel[:, -1],
                          padding=self.kernel_size // 2, groups=batch)
        return logits.reshape(batch, height, width)
