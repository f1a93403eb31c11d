"""The CLIP model used for mining: given by checkpoint name (loaded lazily) or as objects.

A :class:`ClipSource` knows how to load the model and how to name it in a cache key
without loading it, and pickles as its name and revision only, so objects holding one
stay cheap to pickle and to fingerprint.

    >>> source = ClipSource.resolve("nemo-hf/synthetic-clip")
    >>> source.model is None  # not loaded yet, and keyed without loading
    True
    >>> model, processor = source.load()
    >>> ClipSource.resolve(model, processor).key() == ClipSource.resolve(*load_clip("nemo-hf/synthetic-clip")).key()
    True
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import CLIPModel, CLIPProcessor

from nemo_hf.pretrained import resolve_pretrained

__all__ = ["DEFAULT_CLIP", "ClipSource", "check_clip", "load_clip"]

# The paper does not name its CLIP; a commented-out 512-d index in the released code fits
# ViT-B/32, ViT-B/16 or RN101 (docs/method.md). ViT-B/16 is the strongest of those.
DEFAULT_CLIP = "openai/clip-vit-base-patch16"
_PROJECTIONS = ("visual_projection.weight", "text_projection.weight")


def check_clip(model: Any, processor: Any, name: str = "the given model") -> None:
    """Raise a clear error unless ``model``/``processor`` can embed images and sentences.

    >>> check_clip(object(), None)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    TypeError: the given model is a object, not a transformers CLIPModel with projection heads ...
    """
    if not isinstance(model, CLIPModel):
        raise TypeError(
            f"{name} is a {type(model).__name__}, not a transformers CLIPModel with projection "
            "heads (visual_projection, text_projection)"
        )
    if getattr(processor, "image_processor", None) is None or getattr(processor, "tokenizer", None) is None:
        raise TypeError(
            f"the processor for {name} must have an image_processor and a tokenizer "
            f"(a CLIPProcessor), got {type(processor).__name__}"
        )


def load_clip(
    name: str, revision: str | None = None, dtype: torch.dtype = torch.float32
) -> tuple[CLIPModel, CLIPProcessor]:
    """Load a CLIP checkpoint (Hub id or local folder) and check it has projection heads.

    A checkpoint without the projection weights would load with freshly initialised
    heads and give meaningless similarities, so that is an error here.

    >>> model, processor = load_clip("nemo-hf/synthetic-clip")
    >>> type(model).__name__, model.training
    ('CLIPModel', False)
    """
    name = resolve_pretrained(name)
    try:
        model, info = CLIPModel.from_pretrained(name, revision=revision, dtype=dtype, output_loading_info=True)
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot load CLIP checkpoint {name!r} (revision {revision!r}): {error}") from error
    missing = sorted(set(info.get("missing_keys", ())) & set(_PROJECTIONS))
    if missing:
        raise ValueError(
            f"CLIP checkpoint {name!r} has no projection heads ({', '.join(missing)} missing): "
            "its image and text embeddings would not share a space. Use a full CLIPModel "
            "checkpoint such as 'openai/clip-vit-base-patch16'."
        )
    processor = CLIPProcessor.from_pretrained(name, revision=revision)
    check_clip(model, processor, repr(name))
    return model.eval(), processor


def _local_files_digest(folder: Path) -> str:
    """Names, sizes and modification times of a local checkpoint's files."""
    entries = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir() if p.is_file())
    return hashlib.sha256(json.dumps(entries).encode()).hexdigest()


def _files_content_digest(folder: Path) -> str:
    """Names and bytes of a checkpoint folder's files."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _weights_digest(model: torch.nn.Module, processor: Any) -> str:
    """Digest of the weights and preprocessing: what decides the embeddings."""
    digest = hashlib.sha256()
    for key, tensor in sorted(model.state_dict().items()):
        digest.update(key.encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    digest.update(model.config.to_json_string().encode())
    digest.update(type(processor.image_processor).__name__.encode())
    digest.update(processor.image_processor.to_json_string().encode())
    tokenizer = json.loads(processor.tokenizer.backend_tokenizer.to_str())
    # Padding/truncation are per-call state that tokenizing changes, not part of the model.
    tokenizer.pop("padding", None)
    tokenizer.pop("truncation", None)
    digest.update(json.dumps(tokenizer, sort_keys=True).encode())
    return digest.hexdigest()


@dataclass
class ClipSource:
    """A CLIP checkpoint name + revision, or an already built model and processor.

    The model is loaded on the first :meth:`load`. Pickling keeps only ``name`` and
    ``revision``: a source built from objects therefore cannot load after a round trip
    unless its ``name`` is a loadable checkpoint.
    """

    name: str
    revision: str | None = None
    model: CLIPModel | None = field(default=None, repr=False, compare=False)
    processor: CLIPProcessor | None = field(default=None, repr=False, compare=False)
    _key: str | None = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def resolve(
        cls,
        clip: str | os.PathLike[str] | CLIPModel | None = None,
        processor: CLIPProcessor | None = None,
        revision: str | None = None,
    ) -> ClipSource:
        """Build a source from what a user passes: a name/path, a model (+ processor), or nothing.

        >>> ClipSource.resolve().name
        'openai/clip-vit-base-patch16'
        """
        if clip is None or isinstance(clip, (str, os.PathLike)):
            if processor is not None:
                raise ValueError("pass `processor` only together with an instantiated CLIP model")
            name = os.fspath(clip) if clip is not None else DEFAULT_CLIP
            resolve_pretrained(name)  # a missing local folder fails here, not when mining first loads it
            return cls(name=name, revision=revision)
        if processor is None:
            raise ValueError(
                f"an instantiated CLIP model ({type(clip).__name__}) needs its processor: "
                "pass processor=CLIPProcessor.from_pretrained(...)"
            )
        check_clip(clip, processor)
        name = getattr(clip, "name_or_path", "") or ""
        return cls(name=name, revision=revision, model=clip.eval(), processor=processor)

    def load(self) -> tuple[CLIPModel, CLIPProcessor]:
        """The model and processor, loading them on first use."""
        if self.model is None or self.processor is None:
            if not self.name:
                raise ValueError(
                    "this CLIP source was built from an unnamed model object and has been "
                    "pickled, which drops the model: pass the model again or give a checkpoint name"
                )
            self.model, self.processor = load_clip(self.name, self.revision)
        return self.model, self.processor

    def key(self) -> str:
        """A cache key for the embeddings this model gives, without loading a named model.

        Named Hub checkpoints are keyed by name + revision (pin ``revision`` to a commit
        for exact reuse); local folders also by their files' sizes and times; objects by
        a digest of their weights and preprocessing.
        """
        if self._key is None:
            shipped = resolve_pretrained(self.name)
            if self.model is not None and self.processor is not None:
                parts = ["weights", _weights_digest(self.model, self.processor)]
            elif shipped != self.name:  # a few MB inside the package: key by content, stable across installs
                parts = ["shipped", self.name, _files_content_digest(Path(shipped))]
            elif Path(self.name).is_dir():
                parts = ["folder", str(Path(self.name).resolve()), _local_files_digest(Path(self.name))]
            else:
                parts = ["hub", self.name, self.revision or "main"]
            self._key = hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:32]
        return self._key

    def __getstate__(self) -> dict[str, Any]:
        state: dict[str, Any] = {"name": self.name, "revision": self.revision}
        if not self.name:
            # An unnamed model object is known only by its weights: without their digest two
            # different models would pickle, and so fingerprint a Dataset.map, alike.
            state["key"] = self.key()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.name, self.revision = state["name"], state["revision"]
        self.model = self.processor = None
        self._key = state.get("key")
