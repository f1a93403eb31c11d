"""CRIS's vision-language decoder: pixels attend to each other, then to the words, then pass an FFN.

As CRIS's ``TransformerDecoder`` (``model/layers.py`` of the public code): each layer is
pre-norm self-attention over the pixels of the neck's map (queries and keys with fixed 2-D
sine positions), cross-attention from the pixels to the words (keys with fixed 1-D sine
positions; padding masked), each attention's output layer-normed before its residual, then
an FFN (linear, ReLU, dropout, layer norm, linear); a final layer norm. The words are the
text tower's last hidden states, as wide as the decoder.

    >>> import torch
    >>> decoder = VisionLanguageDecoder(width=8, layers=2, heads=2, ffn_dim=16, dropout=0.0)
    >>> pixels, words = torch.randn(2, 8, 3, 4), torch.randn(2, 5, 8)
    >>> padding = torch.tensor([[False] * 5, [False] * 3 + [True] * 2])
    >>> decoder(pixels, words, padding).shape
    torch.Size([2, 8, 3, 4])
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["VisionLanguageDecoder", "sine_positions_1d", "sine_positions_2d"]


def _frequencies(channels: int, device: torch.device) -> torch.Tensor:
    return torch.exp(torch.arange(0, channels, 2, dtype=torch.float32, device=device) * (-math.log(10000.0) / channels))


def sine_positions_1d(width: int, length: int, device: torch.device | None = None) -> torch.Tensor:
    """``(length, width)`` sine/cosine positions (Vaswani et al.), as CRIS gives the words.

    >>> [round(value, 3) for value in sine_positions_1d(4, 2)[1].tolist()]  # sin, cos of 1 and 1/100
    [0.841, 0.54, 0.01, 1.0]
    """
    position = torch.arange(length, dtype=torch.float32, device=device)[:, None]
    angles = position * _frequencies(width, position.device)
    return torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(1)


def sine_positions_2d(width: int, height: int, columns: int, device: torch.device | None = None) -> torch.Tensor:
    """``(height·columns, width)`` positions: the first half of the channels encodes x, the second y (CRIS's ``pos2d``).

    >>> table = sine_positions_2d(8, 2, 3)
    >>> table.shape, bool(table[1, 4:].eq(table[0, 4:]).all())  # same row: same y half
    (torch.Size([6, 8]), True)
    """
    half = width // 2
    x = sine_positions_1d(half, columns, device)  # (columns, half)
    y = sine_positions_1d(half, height, device)  # (height, half)
    return torch.cat([x[None, :, :].expand(height, -1, -1), y[:, None, :].expand(-1, columns, -1)], dim=-1).flatten(0, 1)


class DecoderLayer(nn.Module):
    """One layer: self-attention over pixels, cross-attention to words, FFN (see the module docstring)."""

    def __init__(self, width: int, heads: int, ffn_dim: int, dropout: float) -> None:
        super().__init__()
        self.self_attn_input_norm = nn.LayerNorm(width)
        self.self_attn = nn.MultiheadAttention(width, heads, dropout=dropout, batch_first=True)
        self.self_attn_output_norm = nn.LayerNorm(width)
        self.cross_attn_input_norm = nn.LayerNorm(width)
        self.cross_attn = nn.MultiheadAttention(width, heads, dropout=dropout, batch_first=True)
        self.cross_attn_output_norm = nn.LayerNorm(width)
        self.ffn_input_norm = nn.LayerNorm(width)
        self.ffn = nn.Sequential(
            nn.Linear(width, ffn_dim), nn.ReLU(inplace=True), nn.Dropout(dropout), nn.LayerNorm(ffn_dim),
            nn.Linear(ffn_dim, width),
        )
        self.dropout = nn.Dropout(dropout)

    def forward(
        self, pixels: torch.Tensor, words: torch.Tensor, pixel_positions: torch.Tensor, word_positions: torch.Tensor,
        word_padding: torch.Tensor,
    ) -> torch.Tensor:
        normed = self.self_attn_input_norm(pixels)
        query = normed + pixel_positions
        attended = self.self_attn(query, query, normed, need_weights=False)[0]
        pixels = pixels + self.dropout(self.self_attn_output_norm(attended))
        normed = self.cross_attn_input_norm(pixels)
        attended = self.cross_attn(normed + pixel_positions, words + word_positions, words,
                                   key_padding_mask=word_padding, need_weights=False)[0]
        pixels = pixels + self.dropout(self.cross_attn_output_norm(attended))
        return pixels + self.dropout(self.ffn(self.ffn_input_norm(pixels)))


class VisionLanguageDecoder(nn.Module):
    """``(pixels (B, C, h, w), words (B, T, C), word_padding (B, T) bool) → (B, C, h, w)``."""

    def __init__(self, width: int, layers: int, heads: int, ffn_dim: int, dropout: float) -> None:
        super().__init__()
        self.layers = nn.ModuleList(DecoderLayer(width, heads, ffn_dim, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(width)

    def forward(self, pixels: torch.Tensor, words: torch.Tensor, word_padding: torch.Tensor) -> torch.Tensor:
        batch, width, height, columns = pixels.shape
        sequence = pixels.flatten(2).transpose(1, 2)  # (B, h·w, C)
        pixel_positions = sine_positions_2d(width, height, columns, pixels.device).to(pixels.dtype)
        word_positions = sine_positions_1d(width, words.shape[1], pixels.device).to(words.dtype)
        for layer in self.layers:
            sequence = layer(sequence, words, pixel_positions, word_positions, word_padding)
        # contiguous: the transposed view has channels-last strides, through which the projector's convolutions
        # backpropagate 1.4x slower on CPU (measured at CRIS's 26x26x512)
        return self.norm(sequence).transpose(1, 2).reshape(batch, width, height, columns).contiguous()
