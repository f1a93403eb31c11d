"""Refer-file writers: ``instances.json``, ``refs(*).p`` pickles and ``grefs(unc).json``.

Annotations and refs are spooled to disk one JSON line each while images are drawn, then
streamed into the final files, so memory stays flat however large the tree. The file names
per dataset are the ones the readers in :mod:`nemo_hf.data` look for.

>>> import pickle, tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "refs.p"
>>> write_list_pickle(path, ({"ref_id": n} for n in range(3)))
>>> pickle.loads(path.read_bytes())
[{'ref_id': 0}, {'ref_id': 1}, {'ref_id': 2}]
>>> REFS_FILES["refcocog"]
(('umd', 'refs(umd).p'), ('google', 'refs(google).p'))
"""

from __future__ import annotations

import io
import json
import pickle
import shutil
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from nemo_hf.data.configs import VARIANTS
from nemo_hf.synthetic.scenes import CATEGORIES, Scene, Shape


def _refs_files() -> dict[str, tuple[tuple[str, str], ...]]:
    files: dict[str, list[tuple[str, str]]] = {}
    for variant in VARIANTS.values():
        scheme = variant.name.rsplit("_", 1)[1]
        files.setdefault(variant.folder, []).append((scheme, variant.refs_file))
    return {folder: tuple(pairs) for folder, pairs in files.items()}


# dataset folder -> ((split scheme, refs file name), ...), as the readers expect them
REFS_FILES = _refs_files()
FIRST_ANN_ID = 100_000  # far from 0: a reader that takes an id for a list position fails loudly
_PICKLE_BATCH = 1000  # items per APPENDS opcode, as the standard pickler batches them


class Counter:
    """Running ids: ``take()`` returns the next one."""

    def __init__(self, start: int = 0):
        self.next = start

    def take(self) -> int:
        self.next += 1
        return self.next - 1


class Spool:
    """Items of one output list, one JSON line each, until the list is complete."""

    def __init__(self, path: Path):
        self.path = path
        self._file = path.open("w", encoding="utf-8")

    def add(self, item: Any) -> None:
        self._file.write(json.dumps(item, separators=(",", ":")) + "\n")

    def close(self) -> None:
        self._file.close()

    def lines(self) -> Iterator[str]:
        with self.path.open(encoding="utf-8") as f:
            for line in f:
                yield line.rstrip("\n")


@dataclass
class Sink:
    """One dataset's spooled refs and its running ref / sentence ids."""

    spool: Spool
    ref_ids: Counter
    sent_ids: Counter


# --------------------------------------------------------------------------- annotations


def _uncompressed_counts(mask: np.ndarray) -> list[int]:
    """COCO's uncompressed RLE: run lengths in column-major order, starting with a 0-run."""
    flat = mask.ravel(order="F")
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    counts = np.diff(np.concatenate([[0], change, [flat.size]])).tolist()
    return [0, *counts] if flat[0] else counts


def annotation(shape: Shape, ann_id: int, image_id: int, scene: Scene, encoding: str) -> dict[str, Any]:
    """The COCO annotation of one shape, its mask stored as ``encoding`` (see :func:`encoding_of`)."""
    h, w = scene.height, scene.width
    rle = mask_utils.merge(mask_utils.frPyObjects([list(p) for p in shape.parts], h, w), intersect=False)
    if encoding == "polygon":
        segmentation: Any = [list(p) for p in shape.parts]
    elif encoding == "rle":
        segmentation = {"size": [h, w], "counts": rle["counts"].decode("ascii")}
    else:
        segmentation = {"size": [h, w], "counts": _uncompressed_counts(mask_utils.decode(rle))}
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": shape.category.id,
        "bbox": [round(float(v), 2) for v in mask_utils.toBbox(rle)],
        "segmentation": segmentation,
        "area": float(mask_utils.area(rle)),
        "iscrowd": int(encoding == "uncompressed"),
        # ground truth beyond COCO's fields (readers ignore unknown keys): what the grammar
        # knows of the shape, the centre at full precision so positions judge as it did
        "attributes": {"colour": shape.colour, "size": shape.size, "centre": [shape.cx, shape.cy]},
    }


def encoding_of(index: int, rle_share: float) -> str:
    """Every 1/share-th annotation is RLE, alternating uncompressed and compressed."""
    if int((index + 1) * rle_share) == int(index * rle_share):
        return "polygon"
    return "uncompressed" if int((index + 1) * rle_share) % 2 else "rle"


def ref_dict(
    ref_id: int, image_id: int, ann_id: Any, category_id: Any, splits: dict[str, str], sentences: list[dict]
) -> dict[str, Any]:
    """A ref as the refer files hold it, plus ``splits`` (scheme → split) until it is written."""
    return {
        "sent_ids": [s["sent_id"] for s in sentences],
        "file_name": f"COCO_train2014_{image_id:012d}_{ref_id}.jpg",
        "ann_id": ann_id,
        "ref_id": ref_id,
        "image_id": image_id,
        # the scheme's split is filled in from "splits" when its file is written
        "split": None,
        "sentences": sentences,
        "category_id": category_id,
        "splits": splits,
    }


# --------------------------------------------------------------------------- files


def _pickle_body(item: Any) -> bytes:
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, protocol=2)
    # no memo: each item stands alone, so items can be streamed into one list
    pickler.fast = True
    pickler.dump(item)
    return buffer.getvalue()[2:-1]  # without PROTO 2 and STOP


def write_list_pickle(path: Path, items: Iterable[Any]) -> None:
    """Pickle a list (protocol 2) item by item; loads exactly like ``pickle.dump(list(items))``."""
    with path.open("wb") as f:
        f.write(pickle.PROTO + bytes([2]) + pickle.EMPTY_LIST)
        batch: list[bytes] = []
        for item in items:
            batch.append(_pickle_body(item))
            if len(batch) == _PICKLE_BATCH:
                f.write(pickle.MARK + b"".join(batch) + pickle.APPENDS)
                batch = []
        if batch:
            f.write(pickle.MARK + b"".join(batch) + pickle.APPENDS)
        f.write(pickle.STOP)


def _write_json_list(f: Any, lines: Iterable[str]) -> None:
    f.write("[")
    for n, line in enumerate(lines):
        f.write("," if n else "")
        f.write(line)
    f.write("]")


def _write_instances(path: Path, images: Spool, annotations: Spool, seed: int) -> None:
    info = {"description": f"nemo_hf synthetic shapes in refer format (seed {seed})", "version": "1.0"}
    categories = [{"supercategory": "shape", "id": c.id, "name": c.name} for c in CATEGORIES]
    with path.open("w", encoding="utf-8") as f:
        f.write('{"info":' + json.dumps(info) + ',"images":')
        _write_json_list(f, images.lines())
        f.write(',"licenses":[],"annotations":')
        _write_json_list(f, annotations.lines())
        f.write(',"categories":' + json.dumps(categories, separators=(",", ":")) + "}")


def _with_split(lines: Iterable[str], scheme: str) -> Iterator[dict[str, Any]]:
    for line in lines:
        ref = json.loads(line)
        ref["split"] = ref.pop("splits")[scheme]
        yield ref


def write_outputs(
    tmp: Path, datasets: Sequence[str], seed: int, images: Spool, annotations: Spool, sinks: dict[str, Sink]
) -> None:
    """The final files: one instances.json (copied per dataset) and each scheme's refs file."""
    first_instances = None
    for name in datasets:
        folder = tmp / name
        folder.mkdir()
        if first_instances is None:
            first_instances = folder / "instances.json"
            _write_instances(first_instances, images, annotations, seed)
        else:
            shutil.copyfile(first_instances, folder / "instances.json")
        for scheme, file_name in REFS_FILES[name]:
            split_refs = _with_split(sinks[name].spool.lines(), scheme)
            if file_name.endswith(".json"):
                with (folder / file_name).open("w", encoding="utf-8") as f:
                    _write_json_list(f, (json.dumps(ref, separators=(",", ":")) for ref in split_refs))
            else:
                write_list_pickle(folder / file_name, split_refs)
