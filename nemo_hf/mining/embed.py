"""L2-normalised CLIP embeddings of images and sentences, batched and process-aware.

Under ``accelerate launch`` every process embeds its contiguous shard of the rows
(``datasets.distributed.split_dataset_by_node``) and the shards are gathered back in
order, so N processes take about 1/N of the time and all of them end with the full,
identical array. In a plain process nothing distributed happens.

    >>> from datasets import Dataset, Features, Image, Value
    >>> from PIL import Image as PILImage
    >>> from nemo_hf.mining import load_clip
    >>> model, processor = load_clip("nemo-hf/synthetic-clip")
    >>> ds = Dataset.from_dict(
    ...     {"image": [PILImage.new("RGB", (40, 30), "red")], "image_id": [7]},
    ...     features=Features({"image": Image(), "image_id": Value("int64")}))
    >>> images = embed_images(model, processor, ds, device="cpu")
    >>> texts = embed_texts(model, processor, ["the red square"], device="cpu")
    >>> images.shape == texts.shape == (1, model.config.projection_dim)
    True
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import PIL.Image
import torch
from accelerate import PartialState
from accelerate.utils import gather
from datasets import Dataset, Image
from datasets.distributed import split_dataset_by_node
from tqdm.auto import tqdm
from transformers import CLIPModel, CLIPProcessor

from nemo_hf.data.image_values import ImageSource, open_image
from nemo_hf.mining.device import process_state, resolve_device

__all__ = ["ImageDecodeError", "decode_image", "embed_images", "embed_texts"]


class ImageDecodeError(ValueError):
    """An image of the dataset could not be read; the message names its image_id."""


def decode_image(value: ImageSource, image_id: object) -> PIL.Image.Image:
    """Decode an image value (e.g. ``{"bytes", "path"}``) fully into an RGB PIL image.

    >>> try:
    ...     decode_image({"bytes": b"not an image", "path": "x.jpg"}, 42)
    ... except ImageDecodeError as error:
    ...     print(error)  # doctest: +ELLIPSIS
    image_id 42 (x.jpg): cannot decode image: cannot identify image file ...
    """
    try:
        # convert() forces the full decode, so truncated files fail here, not later.
        return open_image(value).convert("RGB")
    except (OSError, ValueError, TypeError, PIL.Image.DecompressionBombError) as error:
        where = (value.get("path") if isinstance(value, Mapping) else None) or "embedded bytes"
        raise ImageDecodeError(f"image_id {image_id} ({where}): cannot decode image: {error}") from error


class _ImageCollate:
    """DataLoader collate: decode a batch of image values and run the CLIP image processor."""

    def __init__(self, processor: CLIPProcessor, image_column: str, id_column: str) -> None:
        self.image_processor = processor.image_processor
        self.image_column, self.id_column = image_column, id_column

    def __call__(self, rows: list[dict[str, Any]]) -> torch.Tensor:
        images = [decode_image(row[self.image_column], row[self.id_column]) for row in rows]
        return self.image_processor(images=images, return_tensors="pt")["pixel_values"]


def _single_threaded_worker(_: int) -> None:
    # Forked workers inherit the parent's torch thread pool state; one thread each avoids
    # the known hang and oversubscription (they only decode and resize).
    torch.set_num_threads(1)


def _normalise(features: torch.Tensor, what: Callable[[int], str]) -> torch.Tensor:
    features = features.float()
    norms = features.norm(dim=1)
    bad = torch.nonzero(~torch.isfinite(norms) | (norms == 0)).flatten().tolist()
    if bad:
        raise ValueError(f"CLIP gave a zero or non-finite embedding for {what(bad[0])}")
    return features / norms[:, None]


def _gather_rows(local: np.ndarray, state: PartialState, dim: int) -> np.ndarray:
    """Concatenate every process's rows in process order (shards may differ by one row)."""
    tensor = torch.from_numpy(local).to(state.device)
    sizes = gather(torch.tensor([tensor.shape[0]], device=state.device)).tolist()
    padded = torch.zeros(max(sizes), dim, dtype=tensor.dtype, device=state.device)
    padded[: tensor.shape[0]] = tensor
    everything = gather(padded).reshape(len(sizes), max(sizes), dim).cpu().numpy()
    return np.concatenate([everything[rank, :size] for rank, size in enumerate(sizes)])


def _sharded(rows: Dataset, compute: Callable[[Dataset], np.ndarray], dim: int) -> np.ndarray:
    state = process_state()
    if state.num_processes == 1:
        return compute(rows)
    shard = split_dataset_by_node(rows, rank=state.process_index, world_size=state.num_processes)
    return _gather_rows(compute(shard), state, dim)


def embed_images(
    model: CLIPModel,
    processor: CLIPProcessor,
    images: Dataset,
    *,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    num_workers: int = 0,
    image_column: str = "image",
    id_column: str = "image_id",
    progress: bool = False,
) -> np.ndarray:
    """Embed every row's image: ``(len(images), projection_dim)`` float32, unit rows.

    Images are decoded here (not by ``datasets``) so that a broken file raises
    :class:`ImageDecodeError` naming its ``id_column`` value. ``num_workers`` decode in
    DataLoader worker processes, which pays off on a GPU. The model is moved to ``device``.
    """
    dev = resolve_device(device)
    model = model.to(dev).eval()
    dim = int(model.config.projection_dim)
    rows = images.select_columns([image_column, id_column]).cast_column(image_column, Image(decode=False))
    collate = _ImageCollate(processor, image_column, id_column)

    def compute(shard: Dataset) -> np.ndarray:
        out = np.empty((len(shard), dim), dtype=np.float32)
        shard_ids = shard[id_column][:]
        loader = torch.utils.data.DataLoader(
            shard,
            batch_size=batch_size,
            num_workers=num_workers,
            collate_fn=collate,
            worker_init_fn=_single_threaded_worker if num_workers else None,
        )
        start = 0
        with torch.inference_mode():
            for pixel_values in tqdm(loader, desc="CLIP images", disable=not progress):
                pixels = pixel_values.to(dev, dtype=model.dtype)
                feats = model.get_image_features(pixel_values=pixels).pooler_output
                feats = _normalise(feats, lambda i, s=start: f"image_id {shard_ids[s + i]}")
                out[start : start + len(pixels)] = feats.cpu().numpy()
                start += len(pixels)
        return out

    return _sharded(rows, compute, dim)


def embed_texts(
    model: CLIPModel,
    processor: CLIPProcessor,
    texts: Sequence[str],
    *,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> np.ndarray:
    """Embed sentences: ``(len(texts), projection_dim)`` float32, unit rows.

    Sentences longer than the text model's positions (77 tokens for CLIP) are truncated.
    Batches hold sentences of similar length, so little compute goes into padding; the
    output keeps the input order.
    """
    dev = resolve_device(device)
    model = model.to(dev).eval()
    dim = int(model.config.projection_dim)
    tokenizer = processor.tokenizer
    max_length = model.config.text_config.max_position_embeddings
    rows = Dataset.from_dict({"text": list(texts)})

    def compute(shard: Dataset) -> np.ndarray:
        shard_texts: list[str] = shard["text"][:]
        if not shard_texts:
            return np.empty((0, dim), dtype=np.float32)
        lengths = [len(ids) for ids in tokenizer(shard_texts, truncation=True, max_length=max_length)["input_ids"]]
        order = np.argsort(np.asarray(lengths, dtype=np.int64), kind="stable")
        out = np.empty((len(shard_texts), dim), dtype=np.float32)
        with torch.inference_mode():
            for start in tqdm(range(0, len(order), batch_size), desc="CLIP texts", disable=not progress):
                picked = order[start : start + batch_size]
                batch = tokenizer(
                    [shard_texts[i] for i in picked],
                    padding=True,
                    truncation=True,
                    max_length=max_length,
                    return_tensors="pt",
                ).to(dev)
                feats = model.get_text_features(
                    input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
                ).pooler_output
                feats = _normalise(feats, lambda i, p=picked: f"sentence {shard_texts[p[i]]!r}")
                out[picked] = feats.cpu().numpy()
        return out

    return _sharded(rows, compute, dim)
