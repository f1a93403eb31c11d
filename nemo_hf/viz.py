"""Pictures a person would rather look at than numbers: samples with masks and expressions.

>>> import tempfile
>>> mask = np.zeros((48, 64), bool); mask[10:30, 8:40] = True
>>> rows = [{"image": Image.new("RGB", (64, 48), colour), "mask": mask, "sentences": [f"the {colour} box"]}
...         for colour in ("red", "green", "blue", "white")]
>>> Image.open(save_sample_grid(rows, tempfile.mkdtemp() + "/samples.png", n=4, columns=2)).size
(512, 636)
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any, Iterable

import numpy as np
from PIL import Image, ImageDraw, ImageFont

_TILE = 256
_TEXT_LINES = 4
_LINE_HEIGHT = 14
_OUTLINE = np.array([255, 230, 0], dtype=np.uint8)  # yellow inside a black halo: visible on any colour
_HALO = np.array([0, 0, 0], dtype=np.uint8)


def mask_outline(mask: np.ndarray, width: int = 2) -> np.ndarray:
    """Pixels of ``mask`` within ``width`` pixels of its border (a bool array).

    >>> square = np.zeros((6, 6), bool); square[1:5, 1:5] = True
    >>> int(mask_outline(square, width=1).sum())
    12
    """
    inner = mask.copy()
    for _ in range(width):
        shrunk = inner.copy()
        shrunk[1:, :] &= inner[:-1, :]
        shrunk[:-1, :] &= inner[1:, :]
        shrunk[:, 1:] &= inner[:, :-1]
        shrunk[:, :-1] &= inner[:, 1:]
        shrunk[[0, -1], :] = False
        shrunk[:, [0, -1]] = False
        inner = shrunk
    return mask & ~inner


def _grow(mask: np.ndarray) -> np.ndarray:
    grown = mask.copy()
    grown[1:, :] |= mask[:-1, :]
    grown[:-1, :] |= mask[1:, :]
    grown[:, 1:] |= mask[:, :-1]
    grown[:, :-1] |= mask[:, 1:]
    return grown


def overlay_mask(image: Image.Image, mask: Any, dim: float = 0.45) -> Image.Image:
    """Dim everything outside the mask and outline it (yellow, black halo); a new RGB image."""
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32)
    region = np.asarray(mask) > 0
    if region.shape != rgb.shape[:2]:
        raise ValueError(f"mask is {region.shape[::-1]} but image is {image.size}")
    rgb[~region] *= 1 - dim
    shown = rgb.astype(np.uint8)
    width = max(2, min(region.shape) // 120)
    shown[_grow(_grow(region)) & ~region] = _HALO
    shown[mask_outline(region, width=width)] = _OUTLINE
    return Image.fromarray(shown)


def caption_tile(image: Image.Image, mask: Any | None, caption: str) -> Image.Image:
    """``image`` (with ``mask`` overlaid, unless ``None``) fitted in a square, ``caption`` under it.

    >>> caption_tile(Image.new("RGB", (40, 30)), None, "the dark one").size
    (256, 318)
    """
    shown = image.convert("RGB") if mask is None else overlay_mask(image, mask)
    shown.thumbnail((_TILE, _TILE))
    tile = Image.new("RGB", (_TILE, _TILE + _TEXT_LINES * _LINE_HEIGHT + 6), "white")
    tile.paste(shown, ((_TILE - shown.width) // 2, (_TILE - shown.height) // 2))
    draw = ImageDraw.Draw(tile)
    font = ImageFont.load_default(size=12)
    for i, line in enumerate(textwrap.wrap(caption, width=40)[:_TEXT_LINES]):
        draw.text((4, _TILE + 3 + i * _LINE_HEIGHT), line, fill="black", font=font)
    return tile


def _caption(row: dict[str, Any]) -> str:
    text = row.get("sentence") or " | ".join(row.get("sentences", []))
    return f"[{row['mosaic_kind']}] {text}" if "mosaic_kind" in row else text


def save_sample_grid(rows: Iterable[dict[str, Any]], path: str | Path, n: int = 6, columns: int = 3) -> Path:
    """Save a PNG of the first ``n`` rows: image, target outlined in yellow, expression under it.

    Rows need ``image``, ``mask`` and ``sentences`` (or ``sentence``); a NeMo output's
    ``mosaic_kind`` is shown before the expression.
    """
    tiles = []
    for row in rows:
        if len(tiles) == n:
            break
        tiles.append(caption_tile(row["image"], row["mask"], _caption(row)))
    if not tiles:
        raise ValueError("no rows to draw")
    return save_tile_sheet(tiles, path, columns)


def save_mosaic_grid(ds: Iterable[dict[str, Any]], path: str | Path, n: int = 8) -> Path:
    """Save a PNG of ``n`` NeMo samples (mosaic, target outlined, ``[kind] expression``).

    >>> import tempfile
    >>> rows = [{"image": Image.new("RGB", (64, 64), "white"), "mask": np.eye(64, dtype=bool),
    ...          "sentence": "the diagonal", "mosaic_kind": kind} for kind in ("single", "mined")]
    >>> Image.open(save_mosaic_grid(rows, tempfile.mkdtemp() + "/mosaics.png")).size
    (512, 318)
    """
    return save_sample_grid(ds, path, n=n, columns=4)


def save_tile_sheet(tiles: list[Image.Image], path: str | Path, columns: int) -> Path:
    """Save equal-sized ``tiles`` as one PNG, row by row, ``columns`` to a row (fewer if fewer tiles).

    >>> import tempfile
    >>> tiles = [Image.new("RGB", (10, 20))] * 5
    >>> Image.open(save_tile_sheet(tiles, tempfile.mkdtemp() + "/sheet.png", columns=2)).size
    (20, 60)
    """
    columns = min(columns, len(tiles))
    rows_needed = -(-len(tiles) // columns)
    width, height = tiles[0].size
    sheet = Image.new("RGB", (columns * width, rows_needed * height), "white")
    for i, tile in enumerate(tiles):
        sheet.paste(tile, ((i % columns) * width, (i // columns) * height))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path
