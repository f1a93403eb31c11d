"""CLIP embeddings: equal to one-at-a-time forwards, order-preserving, process-aware; bad input."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from accelerate import debug_launcher
from datasets import Dataset, Features, Image, Value
from safetensors.torch import load_file, save_file
from transformers import CLIPVisionConfig, CLIPVisionModel

from nemo_hf.mining.clip import ClipSource, check_clip, load_clip
from nemo_hf.mining.embed import ImageDecodeError, embed_images, embed_texts
from tests.tiny_models import tiny_clip
from tests.test_mining_fixtures import shapes_dataset

torch.set_num_threads(1)


def unique_images(ds: Dataset) -> Dataset:
    _, first = np.unique(np.asarray(ds["image_id"][:]), return_index=True)
    return ds.select(first)


def one_at_a_time_images(model, processor, ds: Dataset) -> np.ndarray:
    rows = []
    with torch.no_grad():
        for row in ds:
            pixels = processor(images=[row["image"].convert("RGB")], return_tensors="pt")["pixel_values"]
            feats = model.get_image_features(pixel_values=pixels).pooler_output[0]
            rows.append((feats / feats.norm()).numpy())
    return np.stack(rows)


def one_at_a_time_texts(model, processor, texts: list[str]) -> np.ndarray:
    rows = []
    with torch.no_grad():
        for text in texts:
            batch = processor.tokenizer([text], return_tensors="pt")
            feats = model.get_text_features(**batch).pooler_output[0]
            rows.append((feats / feats.norm()).numpy())
    return np.stack(rows)


def test_tiny_clip_is_deterministic_per_seed() -> None:
    a, _ = tiny_clip(0)
    b, _ = tiny_clip(0)
    c, _ = tiny_clip(1)
    state = torch.get_rng_state()
    tiny_clip(5)
    assert torch.equal(state, torch.get_rng_state())  # the global generator is untouched
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(x, y), name
    assert not torch.equal(a.visual_projection.weight, c.visual_projection.weight)


def test_image_embeddings_equal_single_image_forwards() -> None:
    model, processor = tiny_clip(0)
    ds = unique_images(shapes_dataset(n_images=9, seed=1))
    got = embed_images(model, processor, ds, batch_size=4, device="cpu")
    np.testing.assert_allclose(got, one_at_a_time_images(model, processor, ds), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-6)


def test_text_embeddings_keep_input_order_despite_length_batching() -> None:
    model, processor = tiny_clip(0)
    texts = ["the red circle", "a very small blue square at the top of the picture, next to the green one",
             "left", "the yellow triangle on the right", "black"]  # fmt: skip
    got = embed_texts(model, processor, texts, batch_size=2, device="cpu")
    np.testing.assert_allclose(got, one_at_a_time_texts(model, processor, texts), atol=1e-5)


def test_worker_processes_give_identical_embeddings() -> None:
    model, processor = tiny_clip(0)
    ds = unique_images(shapes_dataset(n_images=10, seed=2))
    in_process = embed_images(model, processor, ds, batch_size=3, device="cpu")
    workers = embed_images(model, processor, ds, batch_size=3, device="cpu", num_workers=2)
    np.testing.assert_array_equal(in_process, workers)


def _embed_in_each_process(out_dir: str) -> None:
    from accelerate import PartialState

    from nemo_hf.mining.device import process_state

    # Forked from pytest: forget any single-process state the parent had set up.
    PartialState._reset_state()
    state = process_state()
    assert state.num_processes == 2
    torch.set_num_threads(1)
    model, processor = tiny_clip(0)
    forward, embedded = model.get_image_features, []

    def counting_forward(pixel_values, **kwargs):
        embedded.append(len(pixel_values))
        return forward(pixel_values=pixel_values, **kwargs)

    model.get_image_features = counting_forward
    ds = unique_images(shapes_dataset(n_images=7, seed=3))
    texts = [t for row in shapes_dataset(n_images=7, seed=3)["sentences"] for t in row]
    images = embed_images(model, processor, ds, batch_size=2, device="cpu")
    sentences = embed_texts(model, processor, texts, batch_size=3, device="cpu")
    np.save(Path(out_dir) / f"images-{state.process_index}.npy", images)
    np.save(Path(out_dir) / f"texts-{state.process_index}.npy", sentences)
    np.save(Path(out_dir) / f"embedded-{state.process_index}.npy", np.asarray(sum(embedded)))


def test_two_processes_embed_like_one(tmp_path: Path) -> None:
    debug_launcher(_embed_in_each_process, args=(str(tmp_path),), num_processes=2)
    model, processor = tiny_clip(0)
    ds = unique_images(shapes_dataset(n_images=7, seed=3))
    texts = [t for row in shapes_dataset(n_images=7, seed=3)["sentences"] for t in row]
    images = embed_images(model, processor, ds, batch_size=2, device="cpu")
    sentences = embed_texts(model, processor, texts, batch_size=3, device="cpu")
    # Each process embedded its own shard (7 images: 4 + 3) ...
    assert [int(np.load(tmp_path / f"embedded-{rank}.npy")) for rank in (0, 1)] == [4, 3]
    for rank in (0, 1):  # ... and every process ends with the full, gathered arrays.
        np.testing.assert_allclose(np.load(tmp_path / f"images-{rank}.npy"), images, atol=1e-6)
        np.testing.assert_allclose(np.load(tmp_path / f"texts-{rank}.npy"), sentences, atol=1e-6)


def _image_rows(values: list) -> Dataset:
    return Dataset.from_dict(
        {"image": values, "image_id": [11 * (i + 1) for i in range(len(values))]},
        features=Features({"image": Image(), "image_id": Value("int64")}),
    )


def _jpeg_bytes(size=(40, 30)) -> bytes:
    buffer = io.BytesIO()
    PIL.Image.new("RGB", size, "green").save(buffer, format="JPEG")
    return buffer.getvalue()


@pytest.mark.parametrize(
    "broken",
    [
        {"bytes": b"this is not an image", "path": "broken.jpg"},
        {"bytes": _jpeg_bytes()[:200], "path": "truncated.jpg"},
        {"bytes": None, "path": "/nonexistent/missing.jpg"},
    ],
)
def test_an_undecodable_image_is_an_error_naming_its_image_id(broken) -> None:
    model, processor = tiny_clip(0)
    ds = _image_rows([{"bytes": _jpeg_bytes(), "path": "fine.jpg"}, broken])
    with pytest.raises(ImageDecodeError, match=r"image_id 22 \(.*(broken|truncated|missing)\.jpg\)"):
        embed_images(model, processor, ds, device="cpu")


def test_a_checkpoint_without_projection_heads_is_an_error(tmp_path: Path) -> None:
    model, processor = tiny_clip(0)
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    save_file({k: v for k, v in weights.items() if "projection" not in k}, tmp_path / "model.safetensors",
              metadata={"format": "pt"})  # fmt: skip
    with pytest.raises(ValueError, match=r"no projection heads.*text_projection\.weight, visual_projection\.weight"):
        load_clip(str(tmp_path))


def test_a_vision_only_model_is_refused() -> None:
    _, processor = tiny_clip(0)
    vision = CLIPVisionModel(CLIPVisionConfig(hidden_size=32, intermediate_size=37, num_hidden_layers=1,
                                              num_attention_heads=2, image_size=32, patch_size=8))  # fmt: skip
    with pytest.raises(TypeError, match="CLIPVisionModel, not a transformers CLIPModel with projection heads"):
        ClipSource.resolve(vision, processor)
    with pytest.raises(TypeError, match="image_processor and a tokenizer"):
        check_clip(tiny_clip(0)[0], processor.image_processor)


def test_a_saved_checkpoint_loads_and_is_keyed_by_its_files(tmp_path: Path) -> None:
    model, processor = tiny_clip(0)
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    loaded, _ = load_clip(str(tmp_path))
    assert torch.equal(loaded.text_projection.weight, model.text_projection.weight)
    by_name = ClipSource.resolve(str(tmp_path))
    key = by_name.key()
    assert by_name.model is None  # keying a named checkpoint does not load it
    model.save_pretrained(tmp_path)  # rewriting the files invalidates the key
    assert ClipSource.resolve(str(tmp_path)).key() != key
    assert ClipSource.resolve("org/clip", revision="abc").key() != ClipSource.resolve("org/clip").key()
