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
import reprlib
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nemo_hf.data.pickle_bounds import OversizedPickleError
from nemo_hf.data.safe_pickle import UnsafePickleError, load_plain_pickle_bytes


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
    """Load a ``refs(*).p`` pickle or ``grefs(*).json`` and check every ref's fields.

    Pickles are read with :func:`~nemo_hf.data.safe_pickle.load_plain_pickle_bytes`, so a
    file that tries to build objects is refused and nothing in it runs. Every ref needs
    integer ``ref_id`` and ``image_id`` (no two refs the same ``ref_id``), an integer
    ``ann_id`` or a list of them, a string ``split``, a list of ``sentences`` and, if any,
    a list of ``sent_ids``; each sentence is checked where it is read
    (:func:`sentence_text`, :func:`sentence_problem`).
    """
    path = Path(path)
    data = path.read_bytes()
    try:
        with gc_paused():
            refs = json.loads(data) if path.suffix == ".json" else load_plain_pickle_bytes(data)
    except (UnsafePickleError, OversizedPickleError) as err:  # their messages say what to do
        raise ReferFileError(f"{path}: {err}") from None
    except MemoryError:
        raise ReferFileError(
            f"{path}: cannot be read: it claims more memory than this machine has (a length "
            f"beyond the file's own {len(data)} bytes); the file is corrupt — download it again"
        ) from None
    except (pickle.UnpicklingError, EOFError, ValueError, IndexError, KeyError, TypeError,
            AttributeError, OverflowError, RecursionError) as err:
        # ValueError covers JSON and Unicode decoding errors
        raise ReferFileError(
            f"{path}: cannot be read ({type(err).__name__}: {err}); the file is truncated or "
            "corrupt — download it again"
        ) from None
    if not isinstance(refs, list):
        raise ReferFileError(f"{path}: expected a list of refs, found {type(refs).__name__}")
    if not _plain_refs(refs):  # then name the first bad ref
        for index, ref in enumerate(refs):
            problem = _ref_problem(ref)
            if problem:
                name = ref["ref_id"] if isinstance(ref, dict) and _is_int64(ref.get("ref_id")) else f"#{index}"
                raise ReferFileError(f"{path}: ref {name}: {problem}; the file is corrupt — download it again")
    _check_unique_ids(path, refs)
    return refs


_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1


def _is_int64(value: Any) -> bool:
    return type(value) is int and _INT64_MIN <= value <= _INT64_MAX


def _all_int64(values: list) -> bool:
    """Whether every value is an ``int`` (not a ``bool``) that fits 64 bits; one pass in C each."""
    return not values or set(map(type, values)) == {int} and min(values) >= _INT64_MIN and max(values) <= _INT64_MAX


def _plain_refs(refs: list) -> bool:
    """Whether every ref passes :func:`_ref_problem`, checked field by field over all refs at
    once (a ref at a time costs more than reading the file)."""
    try:
        ann_ids = [ref["ann_id"] for ref in refs]
        ann_lists = [a for a in ann_ids if type(a) is list]
        return (
            _all_int64([ref["ref_id"] for ref in refs])
            and _all_int64([ref["image_id"] for ref in refs])
            and _all_int64([a for a in ann_ids if type(a) is not list])
            and _all_int64([a for ids in ann_lists for a in ids])
            and set(map(type, [ref["split"] for ref in refs])) <= {str}
            and set(map(type, [ref["sentences"] for ref in refs])) <= {list}
            and set(map(type, [ref.get("sent_ids") for ref in refs])) <= {list, type(None)}
        )
    except (KeyError, TypeError, AttributeError):  # a ref that is not a dict or lacks a key
        return False


def _ref_problem(ref: Any) -> str | None:
    """What is wrong with one ref's fields, or ``None``."""
    missing = [k for k in REQUIRED_REF_KEYS if not isinstance(ref, dict) or k not in ref]
    if missing:
        return f"lacks {', '.join(missing)}"
    for key in ("ref_id", "image_id"):
        if not _is_int64(ref[key]):
            return _not_int64(key, ref[key])
    ann_id = ref["ann_id"]
    if not (_is_int64(ann_id) or type(ann_id) is list and all(map(_is_int64, ann_id))):
        return f"ann_id {_shown(ann_id)} is neither an integer nor a list of integers of 64 bits"
    if type(ref["split"]) is not str:
        return f"split {_shown(ref['split'])} is not a string"
    if type(ref["sentences"]) is not list:
        return f"sentences {_shown(ref['sentences'])} is not a list"
    sent_ids = ref.get("sent_ids")
    if sent_ids is not None and type(sent_ids) is not list:
        return f"sent_ids {_shown(sent_ids)} is not a list"
    return None


def _not_int64(key: str, value: Any) -> str:
    if type(value) is int:  # too large: say so rather than that it is no integer
        return f"{key} {_shown(value)} is not an integer of 64 bits"
    return f"{key} {_shown(value)} is not an integer"


class _ShortRepr(reprlib.Repr):
    """``reprlib``'s abbreviated repr, except that an integer of more than 256 bits is shown by its
    size: writing it out in decimal is slow, and Python refuses beyond 4300 digits
    (``sys.int_max_str_digits``), which made the error about it fail in turn."""

    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > 256:
            return f"<an integer of {x.bit_length()} bits>"
        return super().repr_int(x, level)


def _shown(value: Any) -> str:
    """A short repr of a value read from an untrusted file, for an error message.

    >>> _shown(["left", 10**5000]), _shown("x" * 50)
    ("['left', <an integer of 16610 bits>]", "'xxxxxxxxxxxx...xxxxxxxxxxxxx'")
    """
    return _SHORT_REPR.repr(value)


_SHORT_REPR = _ShortRepr()


def sentence_problem(text: str, sent_id: Any) -> str | None:
    """Why a sentence's text (from :func:`sentence_text`) and id cannot be stored, or ``None``.

    >>> sentence_problem("left man", 3) is None
    True
    >>> print(sentence_problem("a \\ud800 b", 3))
    text 'a \\ud800 b' holds a lone surrogate '\\ud800' (not text)
    >>> print(sentence_problem("left man", "x"))
    sent_id 'x' is not an integer
    """
    problem = _text_problem(text)
    if problem:
        return f"text {problem}"
    if sent_id is not None and not _is_int64(sent_id):
        return _not_int64("sent_id", sent_id)
    return None


def _text_problem(text: str) -> str | None:
    """Why ``text`` cannot be stored as UTF-8 (a lone surrogate), or ``None``."""
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        return f"{_shown(text)} holds a lone surrogate {text[err.start]!r} (not text)"
    return None


def _check_unique_ids(path: Path, refs: list[dict[str, Any]]) -> None:
    """``ReferFileError`` naming the ``ref_id`` s used by more than one ref."""
    ids = [ref["ref_id"] for ref in refs]
    if len(set(ids)) < len(ids):
        _raise_repeated_ids(path, "ref_id", "ref", ids, "each row of the dataset is one ref, so ")


def _raise_repeated_ids(path: Path, what: str, holder: str, ids: list[int], why: str = "") -> None:
    """``ReferFileError`` naming (the first ten of) the values of ``ids`` used more than once."""
    repeated = sorted(value for value, n in Counter(ids).items() if n > 1)
    shown = ", ".join(map(str, repeated[:10])) + (" …" if len(repeated) > 10 else "")
    raise ReferFileError(
        f"{path}: {len(repeated)} {what}(s) used by more than one {holder}: {shown}; {why}the file is "
        "corrupt — download it again"
    )


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
    """Parse and index a COCO-style ``instances.json``.

    Images, annotations and categories need integer ids, no two entries of a part the same
    (annotations also an integer ``image_id`` and ``category_id``), and categories a string
    ``name``. Segmentations, boxes
    and image sizes are checked where they are used.
    """
    path = Path(path)
    try:
        with gc_paused():
            raw = json.loads(path.read_bytes())
    except (ValueError, RecursionError) as err:  # JSON and Unicode decoding errors are ValueErrors
        raise ReferFileError(f"{path}: not valid JSON ({type(err).__name__}: {err}); download it again") from None
    if not isinstance(raw, dict) or not all(isinstance(raw.get(k), list) for k in _INSTANCES_PARTS):
        raise ReferFileError(
            f"{path}: not a COCO instances file (it needs the lists {', '.join(_INSTANCES_PARTS)})")
    with gc_paused():
        images = _by_id(path, raw["images"], "images")
        annotations = _by_id(path, raw["annotations"], "annotations", ("image_id", "category_id"))
        categories = {}
        for category_id, category in _by_id(path, raw["categories"], "categories").items():
            name = category.get("name")
            problem = _text_problem(name) if isinstance(name, str) else "is not a string"
            if problem:
                raise ReferFileError(f"{path}: category {category_id}: name {problem}")
            categories[category_id] = name
        by_image: dict[int, list[int]] = defaultdict(list)
        for ann_id, ann in annotations.items():
            by_image[ann["image_id"]].append(ann_id)
    return InstancesIndex(images, annotations, categories, dict(by_image), path)


_INSTANCES_PARTS = ("images", "annotations", "categories")


def _by_id(path: Path, entries: list, part: str, id_fields: tuple[str, ...] = ()) -> dict[int, dict[str, Any]]:
    """``entries`` keyed by their ``id``; ``ReferFileError`` naming the first whose ``id`` or
    ``id_fields`` are missing or not integers."""
    fields = ("id", *id_fields)
    try:  # a field over all entries at once, then (rarely) the entry at fault
        if all(_all_int64([entry[f] for entry in entries]) for f in fields):
            by_id = {entry["id"]: entry for entry in entries}
            if len(by_id) < len(entries):  # the last entry of an id would silently win
                _raise_repeated_ids(path, f"{_SINGULAR[part]} id", "entry", [entry["id"] for entry in entries])
            return by_id
    except (KeyError, TypeError):
        pass
    position, problem = next((i, p) for i, e in enumerate(entries) if (p := _entry_problem(e, fields)))
    raise ReferFileError(f"{path}: {part} #{position}: {problem}; the file is corrupt — download it again")


_SINGULAR = {"images": "image", "annotations": "annotation", "categories": "category"}


def _entry_problem(entry: Any, fields: tuple[str, ...]) -> str | None:
    if not isinstance(entry, dict):
        return "is not an object"
    bad = next((f for f in fields if not _is_int64(entry.get(f))), None)
    return None if bad is None else _not_int64(bad, entry.get(bad))


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
            if isinstance(name, str) and name in self._names:
                return self.image_dir / name
        return None


def sentence_text(sentence: Any) -> str:
    """The raw expression of a refer sentence entry (``raw``, else ``sent``, else tokens).

    Text of only invisible characters (spaces, controls, zero-width or other format
    characters) counts as none, and so does a field of the wrong type.

    >>> sentence_text({"raw": "\\u200b\\x00 ", "sent": " left man ", "tokens": ["left", "man"]})
    'left man'
    """
    if isinstance(sentence, str):
        return _visible_or_empty(sentence)
    if not isinstance(sentence, dict):
        return ""
    for key in ("raw", "sent"):
        text = sentence.get(key)
        if isinstance(text, str) and (text := _visible_or_empty(text)):
            return text
    tokens = sentence.get("tokens")
    if isinstance(tokens, list) and all(isinstance(token, str) for token in tokens):
        return _visible_or_empty(" ".join(tokens))
    return ""


_ASCII_INVISIBLE = "".join(map(chr, range(33))) + "\x7f"  # controls and the space
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp"})  # controls, format characters, spaces


def _visible_or_empty(text: str) -> str:
    """``text`` stripped of surrounding whitespace, or ``""`` when nothing in it is visible."""
    text = text.strip()
    if text.isascii():
        return text if text.strip(_ASCII_INVISIBLE) else ""
    return text if any(unicodedata.category(c) not in _INVISIBLE_CATEGORIES for c in text) else ""
