"""Read RefCOCO-family files: refs pickles / gRefCOCO JSON, ``instances.json``, COCO images.

Everything here treats the files as untrusted downloads: pickles go through the
restricted unpickler, structure is checked up front, and every error names the file and
the offending entry.

>>> import json, tempfile, pathlib
>>> root = pathlib.Path(tempfile.mkdtemp())
>>> _ = (root / "instances.json").write_text(json.dumps({"images": [], "annotations": [],
...     "categories": [{"id": 1, "name": "person"}]}))
>>> load_instances(root / "instances.json").categories
{1: 'person'}
"""

from __future__ import annotations

import gc
import json
import os
import pickle
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .safe_pickle import UnsafePickleError, load_plain_pickle_bytes


class ReferFileError(ValueError):
    """A RefCOCO-family file is missing, unreadable or malformed."""


class ReferDataWarning(UserWarning):
    """Entries were skipped or repaired while reading refer data (counts in the message)."""


REQUIRED_REF_KEYS = ("ref_id", "ann_id", "image_id", "split", "sentences")


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector inside the block (nesting is harmless).

    Parsing refer files builds millions of containers and no cycles; the collections their
    allocation triggers find nothing, and took a third of the time spent reading a
    RefCOCO-sized ``instances.json`` and half of that spent on its refs pickle.

    >>> with gc_paused():
    ...     gc.isenabled()
    False
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def load_refs(path: Path) -> list[dict[str, Any]]:
    """Load a ``refs(*).p`` pickle or ``grefs(*).json`` and check every ref's keys.

    Pickles are read with :func:`~nemo_hf.data.safe_pickle.load_plain_pickle_bytes`, so a
    file that tries to build objects is refused and nothing in it runs.
    """
    path = Path(path)
    data = path.read_bytes()
    try:
        with gc_paused():
            refs = json.loads(data) if path.suffix == ".json" else load_plain_pickle_bytes(data)
    except UnsafePickleError as err:
        raise ReferFileError(f"{path}: {err}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, IndexError, KeyError, TypeError,
            UnicodeDecodeError) as err:
        raise ReferFileError(
            f"{path}: cannot be read ({type(err).__name__}: {err}); the file is truncated or "
            "corrupt — download it again"
        ) from None
    if not isinstance(refs, list):
        raise ReferFileError(f"{path}: expected a list of refs, found {type(refs).__name__}")
    for index, ref in enumerate(refs):
        missing = [k for k in REQUIRED_REF_KEYS if not isinstance(ref, dict) or k not in ref]
        if missing:
            raise ReferFileError(f"{path}: ref #{index} lacks {', '.join(missing)}")
    return refs


@dataclass
class InstancesIndex:
    """``instances.json`` indexed by id: images, annotations, annotations per image."""

    images: dict[int, dict[str, Any]]
    annotations: dict[int, dict[str, Any]]
    categories: dict[int, str]
    anns_by_image: dict[int, list[int]] = field(default_factory=dict)
    path: Path | None = None

    def same_category_others(self, image_id: int, target_ids: set[int]) -> int:
        """How many annotations of the image share a category with the targets but are not one.

        These are the *distractors* of the paper's difficulty analysis.
        """
        categories = {self.annotations[a]["category_id"] for a in target_ids}
        return sum(
            1
            for a in self.anns_by_image.get(image_id, ())
            if a not in target_ids and self.annotations[a]["category_id"] in categories
        )


def load_instances(path: Path) -> InstancesIndex:
    """Parse and index a COCO-style ``instances.json``."""
    path = Path(path)
    try:
        with gc_paused():
            raw = json.loads(path.read_bytes())
            images = {int(im["id"]): im for im in raw["images"]}
            annotations = {int(a["id"]): a for a in raw["annotations"]}
            categories = {int(c["id"]): str(c["name"]) for c in raw["categories"]}
            by_image: dict[int, list[int]] = defaultdict(list)
            for ann_id, ann in annotations.items():
                by_image[int(ann["image_id"])].append(ann_id)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ReferFileError(f"{path}: not valid JSON ({err}); download it again") from None
    except (KeyError, TypeError, ValueError) as err:
        raise ReferFileError(
            f"{path}: not a COCO instances file (missing or bad field {err})"
        ) from None
    return InstancesIndex(images, annotations, categories, dict(by_image), path)


class ImageLocator:
    """Find COCO images under either the train2014 or the train2017 file naming.

    The folder is listed once, so looking up 20k images costs no extra ``stat`` calls.
    """

    def __init__(self, image_dir: Path):
        self.image_dir = Path(image_dir)
        with os.scandir(self.image_dir) as entries:
            self._names = {e.name for e in entries}

    def find(self, image_id: int, file_name: str | None = None) -> Path | None:
        """Return the path of the image, or ``None`` when no known naming exists on disk."""
        for name in (file_name, f"COCO_train2014_{image_id:012d}.jpg", f"{image_id:012d}.jpg"):
            if name and name in self._names:
                return self.image_dir / name
        return None


def sentence_text(sentence: Any) -> str:
    """The raw expression of a refer sentence entry (``raw``, else ``sent``, else tokens)."""
    if isinstance(sentence, str):
        return sentence.strip()
    if not isinstance(sentence, dict):
        return ""
    for key in ("raw", "sent"):
        text = sentence.get(key)
        if isinstance(text, str) and text.strip():
            return text.strip()
    tokens = sentence.get("tokens")
    return " ".join(tokens).strip() if isinstance(tokens, list) else ""
