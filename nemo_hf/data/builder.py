"""The ``RefCOCO`` dataset builder: RefCOCO, RefCOCO+, RefCOCOg and gRefCOCO as ``datasets``.

One config per (dataset, split scheme). Rows are referred objects sorted by ``ref_id``;
masks are the union of the object's polygon parts. Local builds store the COCO image by
path (no copy of 13 GB of JPEGs); ``push_to_hub`` / :func:`nemo_hf.hub.write_parquet`
embed the bytes.

Datasets 5 no longer runs builder scripts from ``load_dataset``, so this is an importable
class (use :func:`nemo_hf.load_refcoco` for the one-liner)::

    >>> import tempfile
    >>> from nemo_hf.synthetic import make_refer_dataset
    >>> work = Path(tempfile.mkdtemp())
    >>> tree = make_refer_dataset(work / "refer", num_images=12, datasets=("refcoco",))
    >>> builder = RefCOCO(config_name="refcoco_unc", data_dir=str(tree.root),
    ...                   image_dir=str(tree.image_dir), cache_dir=str(work / "cache"))
    >>> builder.download_and_prepare()
    >>> builder.as_dataset("val").column_names[:4]
    ['image', 'mask', 'sentences', 'sent_ids']
"""

from __future__ import annotations

import gc
import hashlib
import os
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import datasets
import pyarrow as pa

from nemo_hf.data.configs import (
    CITATIONS,
    HOMEPAGE,
    LICENSE_NOTE,
    VARIANTS,
    Variant,
    get_variant,
    published_table,
)
from nemo_hf.data.ground_truth import (
    GROUND_TRUTH_FEATURES,
    GroundTruthError,
    objects_of,
    sentence_ground_truth,
    target_attributes,
)
from nemo_hf.data.images import check_image_file, without_exif
from nemo_hf.data.instances import INSTANCES_FEATURE, ImageInstances
from nemo_hf.data.masks import MaskRuns, check_mask_size, segmentation_to_rle
from nemo_hf.data.orphans import exit_with_parent, forks_exit_with_this_process
from nemo_hf.data.refer_files import (
    ImageLocator,
    InstancesIndex,
    ReferDataWarning,
    ReferFileError,
    gc_paused,
    load_instances,
    load_refs,
    sentence_problem,
    sentence_text,
)
from nemo_hf.version import __version__

_SHARED_INPUTS: dict[tuple, tuple] = {}  # parsed inputs of the build in progress, keyed by _inputs_key
_REFS_PER_SHARD = 2000  # a shard is the unit of work handed to a num_proc worker
_MAX_SHARDS = 16


def _features(generalized: bool) -> datasets.Features:
    columns: dict[str, Any] = {
        "image": datasets.Image(),
        "mask": datasets.Image(),
        "sentences": datasets.List(datasets.Value("string")),
        "sent_ids": datasets.List(datasets.Value("int64")),
        "ref_id": datasets.Value("int64"),
        "ann_id": datasets.Value("int64"),
        "image_id": datasets.Value("int64"),
        "category_id": datasets.Value("int64"),
        "category": datasets.Value("string"),
        "bbox": datasets.List(datasets.Value("float32"), length=4),
        "width": datasets.Value("int32"),
        "height": datasets.Value("int32"),
        "distractors": datasets.Value("int32"),
    }
    if generalized:
        columns["ann_ids"] = datasets.List(datasets.Value("int64"))
    columns.update(GROUND_TRUTH_FEATURES)  # None for real data: one schema for all
    columns["instances"] = INSTANCES_FEATURE  # None when built with_instances=False
    return datasets.Features(columns)


@dataclass
class RefCOCOConfig(datasets.BuilderConfig):
    """Config of one variant. ``image_dir`` holds COCO train2014 (or train2017) images.

    ``verify_images`` checks every image's header and end marker before the build (cheap;
    catches truncated downloads); it does not decode the pixels.

    ``with_instances`` fills the ``instances`` column: every annotated object of the row's
    image with its mask as RLE (:mod:`nemo_hf.data.instances`), what object accuracy is
    scored against. ``False`` leaves it null, for a smaller and faster build.
    """

    image_dir: str | None = None
    verify_images: bool = True
    with_instances: bool = True

    @property
    def variant(self) -> Variant:
        return get_variant(self.name)


@dataclass
class _SplitCounts:
    """What a split's generation skipped or repaired, reported as one warning."""

    empty_sentences: int = 0  # none, or only invisible characters
    refs_without_sentences: int = 0
    refs_missing_annotation: int = 0
    refs_missing_image: int = 0
    dropped_polygons: int = 0
    empty_masks: int = 0  # refs whose targets' segmentations have nothing to draw (rows kept)
    boxes_replaced_by_mask_boxes: int = 0  # missing, malformed or outside the image
    refs_with_unknown_category: int = 0  # category_id not among instances.json's categories (category "")
    first: dict[str, str] = field(default_factory=dict)  # a count's first case, where the report names it

    def report(self, source: Path, split: str) -> None:
        parts = [f"{n} {name.replace('_', ' ')}" + (f" (first: {self.first[name]})" if name in self.first else "")
                 for name, n in vars(self).items() if n and type(n) is int]
        if parts:
            warnings.warn(f"{source} [{split}]: skipped or repaired " + ", ".join(parts),
                          ReferDataWarning, stacklevel=2)


class RefCOCO(datasets.ArrowBasedBuilder):
    """RefCOCO-family builder (configs: refcoco_unc, refcoco_google, refcocoplus_unc,
    refcocog_umd, refcocog_google, grefcoco_unc)."""

    VERSION = datasets.Version("1.0.0")
    BUILDER_CONFIG_CLASS = RefCOCOConfig
    BUILDER_CONFIGS = [
        RefCOCOConfig(name=name, version=datasets.Version("1.0.0"),
                      description=f"{name}: referring expressions with masks")
        for name in VARIANTS
    ]
    DEFAULT_WRITER_BATCH_SIZE = 1000

    def __init__(self, *args: Any, hash: str | None = None, **kwargs: Any):
        if "config_name" in kwargs and kwargs["config_name"] not in VARIANTS:
            get_variant(kwargs["config_name"])  # raises with the list of valid names
        # A hand-made builder has no code hash: key the cache on the package version and
        # on the input files, so neither a code change nor a replaced download reuses it.
        super().__init__(*args, hash=hash or _cache_hash(kwargs), **kwargs)

    def _info(self) -> datasets.DatasetInfo:
        variant = self.config.variant
        description = (
            f"{variant.name}: one row per referred object, with the object's mask (union of its "
            f"polygon parts) and its referring expressions. Built by nemo_hf {__version__}.\n\n"
            f"Split sizes of the original release:\n\n{published_table(variant)}"
        )
        return datasets.DatasetInfo(
            description=description,
            features=_features(variant.generalized),
            homepage=HOMEPAGE,
            license=LICENSE_NOTE,
            citation="\n".join(CITATIONS[k] for k in variant.citation_keys),
        )

    # -- up-front checks -------------------------------------------------------------
    def _paths(self) -> tuple[Path, Path, Path]:
        variant = self.config.variant
        if not self.config.data_dir:
            raise ReferFileError(
                f"{variant.name} needs data_dir: the refer root holding '{variant.folder}/' "
                f"with {variant.instances_file} and {variant.refs_file}"
            )
        root = Path(self.config.data_dir).expanduser()
        # Accept the refer root (root/refcoco/...) or the dataset folder itself.
        folder = root / variant.folder if (root / variant.folder).is_dir() else root
        refs_path, instances_path = folder / variant.refs_file, folder / variant.instances_file
        for path in (instances_path, refs_path):
            if not path.is_file():
                raise ReferFileError(
                    f"missing {path}: {variant.name} needs {variant.instances_file} and "
                    f"{variant.refs_file} in {root / variant.folder} (download the "
                    f"'{variant.folder}' annotations, e.g. from a mirror of the refer release "
                    f"{HOMEPAGE}, and unzip them into {root})"
                )
        if not self.config.image_dir:
            raise ReferFileError(
                f"{variant.name} needs image_dir: the folder of MS-COCO train2014 images "
                "(COCO_train2014_<id>.jpg) or train2017 images (<id>.jpg)"
            )
        image_dir = Path(self.config.image_dir).expanduser()
        if not image_dir.is_dir():
            raise ReferFileError(
                f"missing image folder {image_dir}: download MS-COCO train2014 "
                "(http://images.cocodataset.org/zips/train2014.zip) and unzip it there"
            )
        return refs_path, instances_path, image_dir

    def _load(self) -> tuple[Path, list[dict], InstancesIndex, dict[int, Path]]:
        """Read every input once; return refs, the instances index and each image's path.

        Image *files* are located here, before anything is written; their contents are
        checked by the shard that uses them (see ``_generate_tables``), so that work is
        shared among ``num_proc`` workers.
        """
        if getattr(self, "_loaded", None) is None:
            self._loaded = _SHARED_INPUTS.get(self._inputs_key())
        if self._loaded is None:
            refs_path, instances_path, image_dir = self._paths()
            refs = load_refs(refs_path)
            index = load_instances(instances_path)
            locator = ImageLocator(image_dir)
            image_paths: dict[int, Path] = {}
            for ref in refs:
                image_id = int(ref["image_id"])
                if image_id in image_paths or image_id not in index.images:
                    continue  # absent images are a counted skip at generation time
                path = locator.find(image_id, index.images[image_id].get("file_name"))
                if path is None:
                    raise ReferFileError(
                        f"image {image_id} (ref {ref['ref_id']}) is not in {image_dir}: expected "
                        f"COCO_train2014_{image_id:012d}.jpg or {image_id:012d}.jpg — is this the "
                        "complete COCO train2014 folder?"
                    )
                image_paths[image_id] = path
            self._loaded = (refs_path, refs, index, image_paths)
        return self._loaded

    def __getstate__(self) -> dict[str, Any]:
        # never pickled to num_proc workers: they find the inputs in _SHARED_INPUTS (forked)
        # or read them again (spawned)
        return {k: v for k, v in self.__dict__.items() if k != "_loaded"}

    def _inputs_key(self) -> tuple[str, str | None, str | None, str | None]:
        return (self.config.name, self.config.data_dir, self.config.image_dir, self.hash)

    def _download_and_prepare(self, dl_manager: Any, verification_mode: Any, **prepare_split_kwargs: Any) -> None:
        # Workers of num_proc are forked from this process and inherit module globals:
        # publishing the parsed inputs there spares each of them re-reading instances.json.
        key = self._inputs_key()
        freeze = gc.get_freeze_count() == 0  # leave a caller's own freeze alone
        with gc_paused():
            _SHARED_INPUTS[key] = self._load()
            if freeze:
                # The parsed inputs (millions of objects, no cycles) move out of the collector's
                # reach: no collection walks them again, here or in forked workers (whose
                # memory pages then stay shared with this process).
                gc.freeze()
        self._build_pid = os.getpid()
        try:
            # num_proc workers (and datasets' manager process) must not outlive a killed build
            with forks_exit_with_this_process():
                super()._download_and_prepare(dl_manager, verification_mode, **prepare_split_kwargs)
            # an empty split is refused by datasets when read, naming nothing: name it while the
            # build can still fail (nothing of it is kept)
            refs_path, refs, _, _ = self._load()
            _check_no_split_empty(refs_path, refs, self.info.splits)
        finally:
            self._build_pid = None
            _SHARED_INPUTS.pop(key, None)
            if freeze:
                gc.unfreeze()

    def _split_generators(self, dl_manager: Any) -> list[datasets.SplitGenerator]:
        refs_path, refs, _, _ = self._load()
        present = Counter(str(ref["split"]) for ref in refs)
        unknown = set(present) - set(self.config.variant.splits)
        if unknown:
            raise ReferFileError(
                f"{refs_path}: split names {sorted(unknown)} are not splits of "
                f"{self.config.name} ({', '.join(self.config.variant.splits)})"
            )
        _check_every_split_present(refs_path, present, self.config.name, self.config.variant.splits)
        generators = []
        for split in self.config.variant.splits:
            # contiguous ranges of the ref_id-sorted split; datasets hands each worker a run
            # of them and concatenates the workers' files in order, so rows stay sorted
            size = present.get(split, 0)
            step = max(_REFS_PER_SHARD, -(-size // _MAX_SHARDS))
            ranges = [(start, min(start + step, size)) for start in range(0, size, step)] or [(0, 0)]
            generators.append(datasets.SplitGenerator(name=split, gen_kwargs={"split": split, "ranges": ranges}))
        return generators

    # -- rows ------------------------------------------------------------------------
    def _generate_tables(self, split: str, ranges: list[tuple[int, int]]) -> Iterator[tuple[int, pa.Table]]:
        # Arrow batches rather than per-row dicts: datasets' per-example encoding would
        # cost more than decoding the masks themselves.
        if getattr(self, "_build_pid", None) not in (None, os.getpid()):
            exit_with_parent()  # a num_proc worker that was not forked (spawn, forkserver)
        refs_path, refs, index, image_paths = self._load()
        schema = self.info.features.arrow_schema
        generalized = self.config.variant.generalized
        counts = _SplitCounts()
        in_split = sorted((r for r in refs if r["split"] == split), key=lambda r: int(r["ref_id"]))
        checked: dict[int, bool] = {}  # image_id -> carries an EXIF orientation
        objects = ImageInstances(index, enabled=self.config.with_instances)
        for start, stop in ranges:
            objects.forget()  # each image's objects are encoded once per shard
            batch: list[tuple[dict[str, Any], list[dict]]] = []
            for ref in in_split[start:stop]:
                image_id = int(ref["image_id"])
                if self.config.verify_images and image_id in image_paths and image_id not in checked:
                    height, width = _image_size(index.images[image_id], index, ref["ref_id"])  # checked first
                    checked[image_id] = check_image_file(image_paths[image_id], expected_size=(width, height))
                pending = _ref_to_row(ref, refs_path, index, image_paths, generalized, counts)
                if pending is not None:
                    if checked.get(image_id):
                        # embed the stored pixels: datasets would rotate the file by its
                        # EXIF tag on decoding, away from the annotations
                        pending[0]["image"]["bytes"] = without_exif(image_paths[image_id])
                    batch.append(pending)
                if len(batch) == self.DEFAULT_WRITER_BATCH_SIZE:
                    yield int(batch[0][0]["ref_id"]), _with_masks(objects.fill(batch), schema)
                    batch = []
            if batch:
                yield int(batch[0][0]["ref_id"]), _with_masks(objects.fill(batch), schema)
        counts.report(refs_path, split)
        objects.report(index.path, split)


def _check_every_split_present(refs_path: Path, present: Counter, name: str, splits: tuple[str, ...]) -> None:
    """``ReferFileError`` unless the refs hold every split of the scheme (datasets cannot read an empty one)."""
    if not present:
        raise ReferFileError(f"{refs_path}: holds no refs; the file is truncated or corrupt — download it again")
    missing = [split for split in splits if not present.get(split)]
    if missing:
        found = ", ".join(f"{split}: {present[split]}" for split in splits if present.get(split))
        raise ReferFileError(
            f"{refs_path}: no ref of split {', '.join(map(repr, missing))} (the file holds {found}); {name}'s "
            f"splits are {', '.join(splits)}, so the file is incomplete or of another split scheme — "
            "download it again"
        )


def _check_no_split_empty(refs_path: Path, refs: list[dict], splits: datasets.SplitDict) -> None:
    """``ReferFileError`` naming a split whose refs were all skipped (counted in its warning)."""
    for split, info in splits.items():
        if info.num_examples == 0:
            count = sum(1 for ref in refs if ref["split"] == split)
            raise ReferFileError(
                f"{refs_path} [{split}]: none of its {count} refs could be built (the warning above counts "
                "why each was skipped); check that instances.json and the images are those of this refs file"
            )


def _with_masks(batch: list[tuple[dict[str, Any], list[dict]]], schema: pa.Schema) -> pa.Table:
    """The rows as an Arrow table, each ``mask`` (and a missing ``bbox``) made from its RLEs.

    All the batch's masks are encoded together (:class:`MaskRuns`): one mask alone costs
    more in numpy calls than in work.
    """
    masks = MaskRuns.from_rles([rles for _, rles in batch], [(row["height"], row["width"]) for row, _ in batch])
    for (row, _), png, box in zip(batch, masks.pngs(), masks.bboxes()):
        row["mask"] = {"path": None, "bytes": png}
        if row["bbox"] is None:
            row["bbox"] = box
    return pa.Table.from_pylist([row for row, _ in batch], schema=schema)


def _ref_to_row(
    ref: dict, refs_path: Path, index: InstancesIndex, image_paths: dict[int, Path], generalized: bool,
    counts: _SplitCounts,
) -> tuple[dict[str, Any], list[dict]] | None:
    """One dataset row for one ref, its mask still as RLEs (and its ``bbox`` ``None`` where
    the mask's is wanted), or ``None`` (counted) when it cannot be built."""
    image_id = int(ref["image_id"])
    image = index.images.get(image_id)
    if image is None or image_id not in image_paths:
        counts.refs_missing_image += 1
        return None
    raw_ann = ref["ann_id"]
    ann_ids = [int(a) for a in (raw_ann if isinstance(raw_ann, list) else [raw_ann]) if int(a) >= 0]
    if any(a not in index.annotations for a in ann_ids) or (not ann_ids and not generalized):
        counts.refs_missing_annotation += 1
        return None

    sentences, sent_ids, kept = [], [], []
    listed_ids = ref.get("sent_ids") or []
    for position, sentence in enumerate(ref["sentences"]):
        text = sentence_text(sentence)
        if not text:
            counts.empty_sentences += 1
            continue
        sent_id = sentence.get("sent_id") if isinstance(sentence, dict) else None
        if sent_id is None and position < len(listed_ids):
            sent_id = listed_ids[position]
        problem = sentence_problem(text, sent_id)
        if problem:
            raise ReferFileError(f"{refs_path}: ref {ref['ref_id']}: sentence {position}: {problem}; the file "
                                 "is corrupt — download it again")
        sentences.append(text)
        sent_ids.append(-1 if sent_id is None else sent_id)
        kept.append(sentence)
    if not sentences:
        counts.refs_without_sentences += 1
        return None

    height, width = _image_size(image, index, ref["ref_id"])
    rles = []
    for ann_id in ann_ids:
        try:
            rle, dropped = segmentation_to_rle(index.annotations[ann_id]["segmentation"], height, width)
        except (ValueError, TypeError, KeyError) as err:
            raise ReferFileError(
                f"{index.path}: annotation {ann_id} (ref {ref['ref_id']}) has an unreadable "
                f"segmentation: {err}"
            ) from None
        counts.dropped_polygons += dropped
        if rle is not None:
            rles.append(rle)
    if ann_ids and not rles:
        counts.empty_masks += 1
    first = index.annotations[ann_ids[0]] if ann_ids else None
    category_id = first["category_id"] if first else -1
    if first and category_id not in index.categories:  # a dangling reference: counted, as the refs' are
        counts.refs_with_unknown_category += 1
        counts.first.setdefault("refs_with_unknown_category",
                                f"ref {ref['ref_id']}, category_id {category_id} of annotation {ann_ids[0]}")
    box = _box_in_image(first.get("bbox"), width, height) if len(ann_ids) == 1 else None
    if len(ann_ids) == 1 and box is None:
        counts.boxes_replaced_by_mask_boxes += 1
    row = {
        "image": {"path": str(image_paths[image_id]), "bytes": None},
        "mask": None,
        "sentences": sentences,
        "sent_ids": sent_ids,
        "ref_id": int(ref["ref_id"]),
        "ann_id": ann_ids[0] if ann_ids else -1,
        "image_id": image_id,
        "category_id": category_id,
        "category": index.categories.get(category_id, ""),
        "bbox": box,
        "width": width,
        "height": height,
        "distractors": index.same_category_others(image_id, set(ann_ids)),
    }
    if generalized:
        row["ann_ids"] = ann_ids
    row.update(_ground_truth(ref, kept, ann_ids, index, refs_path))
    return row, rles


def _ground_truth(
    ref: dict, sentences: list[Any], ann_ids: list[int], index: InstancesIndex, refs_path: Path
) -> dict[str, Any]:
    """The ground-truth columns of one row (:mod:`~nemo_hf.data.ground_truth`); ``None`` where the files have none."""
    try:
        truths = [sentence_ground_truth(sentence) for sentence in sentences]
        image_anns = [index.annotations[a] for a in index.anns_by_image.get(int(ref["image_id"]), ())]
        return {
            "target_attributes": target_attributes([index.annotations[a] for a in ann_ids]),
            "needs": [needs for needs, _ in truths],
            "meaning": [meaning for _, meaning in truths],
            "scene_objects": objects_of(image_anns, index.categories),
        }
    except GroundTruthError as err:
        raise ReferFileError(f"{refs_path} / {index.path}: ref {ref['ref_id']}: {err}; the file is corrupt") from None


def _image_size(image: dict, index: InstancesIndex, ref_id: int) -> tuple[int, int]:
    """``(height, width)`` of an ``instances.json`` image entry; ``ReferFileError`` unless
    masks of that size may be drawn (:func:`~nemo_hf.data.masks.check_mask_size`)."""
    try:
        for key in ("height", "width"):  # int() would read "285" or 285.7 as a size
            if key not in image:
                raise ValueError(f"it has no {key}")
            if type(image[key]) is not int:
                raise ValueError(f"{key} {image[key]!r} is not an integer")
        height, width = image["height"], image["width"]
        check_mask_size(height, width)
    except (KeyError, TypeError, ValueError, OverflowError) as err:
        raise ReferFileError(
            f"{index.path}: image {image.get('id')} (ref {ref_id}) has no usable size ({err}); the file is "
            "corrupt — download it again"
        ) from None
    return height, width


def _box_in_image(box: Any, width: int, height: int) -> list[float] | None:
    """``box`` as ``[x, y, w, h]`` floats if it is one and lies in the image (give or take a
    pixel), else ``None``.

    >>> _box_in_image([10, 20, 30, 40.5], 640, 480), _box_in_image([0, 0, 1e30, 5], 640, 480)
    ([10.0, 20.0, 30.0, 40.5], None)
    """
    if not isinstance(box, (list, tuple)) or len(box) != 4 or bool in map(type, box):
        return None
    try:
        x, y, w, h = map(float, box)
    except (TypeError, ValueError, OverflowError):
        return None
    inside = -1 <= x and -1 <= y and 0 <= w and 0 <= h and x + w <= width + 1 and y + h <= height + 1
    return [x, y, w, h] if inside else None


def _cache_hash(kwargs: dict[str, Any]) -> str:
    """Package version, the schema, and size and mtime of the variant's input files."""
    digest = hashlib.sha256(f"nemo_hf={__version__}".encode())
    # the schema too: a build cached before a column was added must not be served without it
    digest.update(repr([_features(generalized) for generalized in (False, True)]).encode())
    name, data_dir = kwargs.get("config_name"), kwargs.get("data_dir")
    if name in VARIANTS and data_dir:
        variant = VARIANTS[name]
        for folder in (Path(data_dir) / variant.folder, Path(data_dir)):
            for file in (variant.refs_file, variant.instances_file):
                path = folder / file
                if path.is_file():
                    stat = path.stat()
                    digest.update(f"{path}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]
