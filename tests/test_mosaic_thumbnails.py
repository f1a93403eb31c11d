"""Pool images shrunk to the largest cell: the bound, the shrinking, and what a cell looks like after."""

from __future__ import annotations

import io

import numpy as np
import pytest
from datasets import Dataset, Features
from datasets import Image as DatasetImage
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from nemo_hf.mosaic import CLIP_MEAN_FILL, compose_mosaic, decode_to_cell, grid_layout, sample_cross_point
from nemo_hf.mosaic.thumbnails import RAW_MAX_PIXELS, largest_cell, shrink_pool, shrink_to_cover
from tests.test_mosaic_cells import textured


def _jpeg(image: Image.Image, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


@settings(max_examples=40, deadline=None)
@given(grid=st.sampled_from([2, 3]), size=st.integers(8, 600), jitter=st.sampled_from([0.0, 0.1, 0.25, 0.45]),
       seed=st.integers(0, 2**32 - 1))
def test_no_sampled_layout_has_a_cell_beyond_the_bound_and_the_bound_is_reached(grid, size, jitter, seed):
    bound = largest_cell(grid, size, jitter)
    rng = np.random.default_rng(seed)
    widths, heights = [], []
    for _ in range(200):
        for box in grid_layout(grid, size, cross_point=sample_cross_point(rng, jitter)):
            widths.append(box.width)
            heights.append(box.height)
    assert max(widths) <= bound[0] and max(heights) <= bound[1]
    extreme = grid_layout(grid, size, cross_point=(0.5 + jitter, 0.5 + jitter) if jitter else None)
    assert bound[0] in {b.width for b in extreme} | {b.width for b in grid_layout(grid, size, (0.5 - jitter,) * 2)}


@settings(max_examples=30, deadline=None)
@given(width=st.integers(1, 700), height=st.integers(1, 700), cover_w=st.integers(1, 300), cover_h=st.integers(1, 300))
def test_a_shrunk_copy_covers_the_cell_keeps_the_aspect_and_never_grows(width, height, cover_w, cover_h):
    source = _jpeg(Image.new("RGB", (width, height), "olive"))
    shrunk = Image.open(io.BytesIO(shrink_to_cover(source, (cover_w, cover_h))))
    w, h = shrunk.size
    assert shrunk.format == ("BMP" if w * h <= RAW_MAX_PIXELS else "JPEG") and shrunk.mode == "RGB"
    assert w <= width and h <= height
    assert (w >= cover_w or w == width) and (h >= cover_h or h == height)
    if (w, h) != (width, height):  # shrunk: the tighter axis is exact, the other rounded up
        scale = max(cover_w / width, cover_h / height)
        assert (w, h) == (min(width, -(-width * scale // 1)), min(height, -(-height * scale // 1)))


@pytest.mark.parametrize("cell", [(240, 240), (320, 160), (97, 181), (40, 30)])
def test_a_cell_drawn_from_the_copy_looks_like_one_drawn_from_the_original(cell):
    originals = [_jpeg(textured(640, 480, seed)) for seed in range(4)]
    for original in originals:
        copy = shrink_to_cover(original, cell)
        direct = np.asarray(decode_to_cell(original, cell), dtype=np.float64)
        via_copy = np.asarray(decode_to_cell(copy, cell), dtype=np.float64)
        assert direct.shape == via_copy.shape == (cell[1], cell[0], 3)
        assert np.abs(direct - via_copy).mean() < 1.5  # grey levels, of 255
        assert len(copy) < len(original) / 2


def test_shrink_pool_keeps_rows_in_order_and_names_a_broken_image(tmp_path):
    images = [textured(200 + 20 * i, 150, seed=i) for i in range(3)]
    paths = []
    for i, image in enumerate(images):
        paths.append(tmp_path / f"{i}.jpg")
        image.save(paths[-1], quality=90)
    ds = Dataset.from_dict({"image": [str(p) for p in paths]}, features=Features({"image": DatasetImage(decode=False)}))
    shrunk = shrink_pool(ds, (50, 50))
    sizes = [Image.open(io.BytesIO(row["image"]["bytes"])).size for row in shrunk]
    assert sizes == [(round(50 * (200 + 20 * i) / 150 + 0.49), 50) for i in range(3)]

    paths[1].write_bytes(b"\xff\xd8 not really a jpeg")
    broken = Dataset.from_dict({"image": [str(p) for p in paths]}, features=Features({"image": DatasetImage(decode=False)}))
    with pytest.raises(ValueError, match="cannot shrink pool image .*1.jpg"):
        shrink_pool(broken, (50, 50))


@pytest.mark.parametrize("resize", ["stretch", "letterbox"])
def test_a_query_drawn_from_its_copy_stays_aligned_with_its_mask(resize):
    original = _jpeg(textured(500, 260, seed=7))
    mask = np.zeros((260, 500), bool)
    mask[40:200, 120:310] = True
    negatives = [_jpeg(textured(300, 400, seed=s)) for s in (8, 9, 10)]
    boxes = grid_layout(2, 200, cross_point=(0.4, 0.6))
    cover = largest_cell(2, 200, 0.1)
    direct_image, direct_mask = compose_mosaic(original, mask, negatives, boxes, 2, resize=resize)
    copies = [shrink_to_cover(n, cover) for n in negatives]
    image, out_mask = compose_mosaic(shrink_to_cover(original, cover), mask, copies, boxes, 2, resize=resize,
                                     target_size=(500, 260))
    np.testing.assert_array_equal(out_mask, direct_mask)
    difference = np.abs(np.asarray(image, np.float64) - np.asarray(direct_image, np.float64))
    assert difference.mean() < 2.5  # cells smaller than the copy resample twice
    if resize == "letterbox":  # the padding bands are exactly where they were
        padding = np.all(np.asarray(direct_image) == CLIP_MEAN_FILL, axis=-1)
        assert padding.sum() > 1000 and np.all(np.asarray(image)[padding] == CLIP_MEAN_FILL)
    with pytest.raises(ValueError, match="does not match its image size"):
        compose_mosaic(shrink_to_cover(original, cover), mask, copies, boxes, 2)  # the copy's own size
