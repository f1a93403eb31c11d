"""The small layers CRIS builds its neck and projector from: convolution or linear + batch norm + ReLU.

Batch norm, as in CRIS (which trains with synchronised batch norm across its 8 GPUs):
``training/train.py`` converts these layers to ``SyncBatchNorm`` when it runs on several
GPUs. Batch norm makes a training step depend on the batch it sees, so a training batch
needs at least two samples per process.

    >>> import torch
    >>> conv_bn_relu(3, 4, 3)(torch.randn(2, 3, 5, 5)).shape
    torch.Size([2, 4, 5, 5])
    >>> coordinates(torch.zeros(1, 1, 2, 3))[0, 0].tolist()  # x, then y, in [-1, 1]
    [[-1.0, 0.0, 1.0], [-1.0, 0.0, 1.0]]
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["conv_bn_relu", "coordinates", "linear_bn_relu"]


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int = 1) -> nn.Sequential:
    """A ``kernel_size`` convolution (no bias, same size out), batch norm, ReLU: CRIS's ``conv_layer``."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def linear_bn_relu(in_features: int, out_features: int) -> nn.Sequential:
    """A linear layer (no bias), batch norm, ReLU: CRIS's ``linear_layer``."""
    return nn.Sequential(nn.Linear(in_features, out_features, bias=False), nn.BatchNorm1d(out_features), nn.ReLU(inplace=True))


def coordinates(features: torch.Tensor) -> torch.Tensor:
    """``(B, 2, H, W)``: each pixel's x and y in [-1, 1] (CoordConv's extra channels), like ``features``."""
    batch, _, height, width = features.shape
    y = torch.linspace(-1, 1, height, device=features.device, dtype=features.dtype)
    x = torch.linspace(-1, 1, width, device=features.device, dtype=features.dtype)
    grid_y, grid_x = torch.meshgrid(y, x, indexing="ij")
    return torch.stack([grid_x, grid_y]).expand(batch, -1, -1, -1)
