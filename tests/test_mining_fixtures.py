"""Small synthetic datasets in the nemo_hf row schema, for the mining tests.

Rows are referred objects: a coloured shape on a coloured background, 1-3 refs per
image, 1-3 sentences per ref. Everything derives from the seed.
"""

from __future__ import annotations

import numpy as np
import PIL.Image
import PIL.ImageDraw
from datasets import Dataset, Features, Image, List, Value

COLOURS = {
    "red": (220, 30, 30), "green": (30, 180, 60), "blue": (40, 60, 220), "yellow": (240, 220, 40),
    "white": (245, 245, 245), "black": (15, 15, 15), "purple": (140, 40, 170), "orange": (250, 140, 20),
}  # fmt: skip
SHAPES = ("circle", "square", "triangle")
POSITIONS = ("on the left", "on the right", "at the top", "at the bottom", "in the middle")

FEATURES = Features(
    {
        "image": Image(),
        "mask": Image(),
        "sentences": List(Value("string")),
        "sent_ids": List(Value("int64")),
        "ref_id": Value("int64"),
        "ann_id": Value("int64"),
        "image_id": Value("int64"),
        "category_id": Value("int64"),
        "category": Value("string"),
        "bbox": List(Value("float32")),
        "width": Value("int64"),
        "height": Value("int64"),
        "distractors": Value("int64"),
    }
)


Drawn = tuple[PIL.Image.Image, PIL.Image.Image, str, str, list[float]]


def _draw(rng: np.random.Generator, width: int, height: int) -> Drawn:
    names = list(COLOURS)
    background, colour = rng.choice(len(names), size=2, replace=False)
    shape = SHAPES[int(rng.integers(len(SHAPES)))]
    image = PIL.Image.new("RGB", (width, height), COLOURS[names[background]])
    noise = rng.integers(0, 40, size=(height, width, 3), dtype=np.uint8)
    image = PIL.Image.fromarray(np.clip(np.asarray(image, dtype=np.int16) + noise - 20, 0, 255).astype(np.uint8))
    mask = PIL.Image.new("L", (width, height), 0)
    w, h = int(rng.integers(width // 4, width // 2)), int(rng.integers(height // 4, height // 2))
    x, y = int(rng.integers(0, width - w)), int(rng.integers(0, height - h))
    box = [x, y, x + w, y + h]
    for target, fill in ((PIL.ImageDraw.Draw(image), COLOURS[names[colour]]), (PIL.ImageDraw.Draw(mask), 255)):
        if shape == "circle":
            target.ellipse(box, fill=fill)
        elif shape == "square":
            target.rectangle(box, fill=fill)
        else:
            target.polygon([(x, y + h), (x + w, y + h), (x + w // 2, y)], fill=fill)
    return image, mask, names[colour], shape, [float(x), float(y), float(w), float(h)]


def shapes_dataset(n_images: int = 8, seed: int = 0, max_refs: int = 3, max_sentences: int = 3) -> Dataset:
    """A RefCOCO-schema dataset of ``n_images`` images with 1..max_refs refs each."""
    rng = np.random.default_rng(seed)
    rows: dict[str, list] = {name: [] for name in FEATURES}
    ref_id = sent_id = 0
    for image_index in range(n_images):
        width, height = int(rng.integers(40, 72)), int(rng.integers(40, 72))
        image, _, _, _, _ = _draw(rng, width, height)
        for _ in range(int(rng.integers(1, max_refs + 1))):
            _, mask, colour, shape, bbox = _draw(rng, width, height)
            n_sentences = int(rng.integers(1, max_sentences + 1))
            sentences = [
                f"the {colour} {shape} {POSITIONS[int(rng.integers(len(POSITIONS)))]}" for _ in range(n_sentences)
            ]
            rows["image"].append(image)
            rows["mask"].append(mask)
            rows["sentences"].append(sentences)
            rows["sent_ids"].append(list(range(sent_id, sent_id + n_sentences)))
            rows["ref_id"].append(ref_id)
            rows["ann_id"].append(1000 + ref_id)
            rows["image_id"].append(100 + 7 * image_index)
            rows["category_id"].append(SHAPES.index(shape) + 1)
            rows["category"].append(shape)
            rows["bbox"].append(bbox)
            rows["width"].append(width)
            rows["height"].append(height)
            rows["distractors"].append(0)
            ref_id += 1
            sent_id += n_sentences
    return Dataset.from_dict(rows, features=FEATURES)


def test_shapes_dataset_follows_the_schema_and_the_seed() -> None:
    ds = shapes_dataset(n_images=4, seed=3)
    again = shapes_dataset(n_images=4, seed=3)
    assert ds._fingerprint == again._fingerprint
    assert set(ds.column_names) == set(FEATURES)
    assert len(set(ds["image_id"])) == 4
    assert all(len(r["sentences"]) == len(r["sent_ids"]) >= 1 for r in ds)
    assert ds[0]["mask"].mode == "L"
