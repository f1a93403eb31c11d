"""One-call loading of RefCOCO-family variants, the per-sentence view and a stats table.

>>> import tempfile
>>> from pathlib import Path
>>> from nemo_hf.synthetic import make_refer_dataset
>>> work = Path(tempfile.mkdtemp())
>>> tree = make_refer_dataset(work / "refer", num_images=12, datasets=("refcoco",))
>>> val = load_refcoco("refcoco_unc", tree.root, tree.image_dir, split="val", cache_dir=work / "cache")
>>> per_sentence(val).column_names[:3]
['image', 'mask', 'sentence']
"""

from __future__ import annotations

from os import PathLike
from typing import Any

import datasets
import pyarrow.compute as pc
from datasets.exceptions import DatasetGenerationError

from nemo_hf.data.builder import RefCOCO
from nemo_hf.data.configs import check_split, get_variant
from nemo_hf.data.refer_files import ReferFileError

PER_SENTENCE_DROPPED = ("sentences", "sent_ids")
# The schema's own lists describe the ref (its box, gRefCOCO's objects, its image's objects),
# whatever their length.
REF_LISTS = ("bbox", "ann_ids", "instances")


def load_refcoco(
    name: str,
    data_dir: str | PathLike,
    image_dir: str | PathLike,
    split: str | None = None,
    cache_dir: str | PathLike | None = None,
    *,
    streaming: bool = False,
    verify_images: bool = True,
    with_instances: bool = True,
    num_proc: int | None = None,
) -> datasets.Dataset | datasets.DatasetDict | datasets.IterableDataset | datasets.IterableDatasetDict:
    """Build (or reuse from cache) one RefCOCO-family variant.

    ``name`` is a config (``refcoco_unc``, ``refcoco_google``, ``refcocoplus_unc``,
    ``refcocog_umd``, ``refcocog_google``, ``grefcoco_unc``); ``data_dir`` the refer root
    (holding ``refcoco/``, ``refcoco+/``, ``refcocog/``, ``grefcoco/``) or the variant's own
    folder; ``image_dir`` the COCO train2014 (or train2017) images. Returns one split when
    ``split`` is given, else a ``DatasetDict``. ``streaming=True`` reads rows lazily
    without writing a cache. ``with_instances=False`` leaves the ``instances`` column
    (every object of the image, for object accuracy) null.
    """
    variant = get_variant(name)
    if split is not None:
        check_split(variant, split)
    builder = RefCOCO(
        config_name=name,
        data_dir=str(data_dir),
        image_dir=str(image_dir),
        cache_dir=None if cache_dir is None else str(cache_dir),
        dataset_name="refcoco",
        verify_images=verify_images,
        with_instances=with_instances,
    )
    if streaming:
        return builder.as_streaming_dataset(split=split)
    try:
        builder.download_and_prepare(num_proc=num_proc)
    except DatasetGenerationError as err:
        # datasets wraps errors raised while writing rows; ours already name the file and row
        if isinstance(err.__cause__, ReferFileError):
            raise err.__cause__ from None
        raise
    return builder.as_dataset(split=split)


def parallel_columns(ds: datasets.Dataset) -> list[str]:
    """Columns with one entry per sentence: lists exactly as long as ``sentences`` in every row.

    Columns added after the build (mined negatives, say) that hold one value per sentence
    are found this way; the schema's own lists (:data:`REF_LISTS`) never are.

    >>> ds = datasets.Dataset.from_dict({"sentences": [["a", "b"], ["c"]], "sent_ids": [[0, 1], [2]],
    ...                                  "scores": [[0.5, 0.1], [0.9]], "tags": [[1], [2]]})
    >>> parallel_columns(ds)
    ['scores']
    """
    lists = [name for name, feature in ds.features.items()
             if isinstance(feature, datasets.List) and name not in (*PER_SENTENCE_DROPPED, *REF_LISTS)]
    if not lists:
        return []
    table = ds.select_columns(["sentences", *lists]).with_format("arrow")[:]
    counts = pc.list_value_length(table.column("sentences"))

    def parallel(name: str) -> bool:
        lengths = pc.fill_null(pc.list_value_length(table.column(name)), -1)
        return bool(pc.all(pc.equal(lengths, counts), min_count=0).as_py())

    return [name for name in lists if parallel(name)]


def _explode(batch: dict[str, list], split: list[str]) -> dict[str, list]:
    """One row per sentence; the ``split`` columns take the sentence's own entry."""
    out: dict[str, list] = {key: [] for key in batch if key not in PER_SENTENCE_DROPPED}
    out["sentence"], out["sent_id"] = [], []
    for row, (sentences, sent_ids) in enumerate(zip(batch["sentences"], batch["sent_ids"])):
        for position, (sentence, sent_id) in enumerate(zip(sentences, sent_ids)):
            out["sentence"].append(sentence)
            out["sent_id"].append(sent_id)
            for key in out:
                if key in split:
                    out[key].append(batch[key][row][position])
                elif key not in ("sentence", "sent_id"):
                    out[key].append(batch[key][row])
    return out


def per_sentence(ds: datasets.Dataset | datasets.DatasetDict, **map_kwargs: Any):
    """One row per expression (``sentence``, ``sent_id``, and the ref's other columns).

    Columns with one entry per sentence (:func:`parallel_columns`, e.g. mined negatives)
    keep the sentence's own entry; the ref's own lists (:data:`REF_LISTS`: ``bbox``,
    ``ann_ids``, the image's ``instances``) go whole to each of its sentences.

    RIS metrics are reported per sentence, so evaluation iterates this view. Images are
    passed through undecoded.

    Extra keyword arguments go to ``Dataset.map`` (e.g. ``num_proc``).
    """
    if isinstance(ds, datasets.DatasetDict):
        return datasets.DatasetDict({k: per_sentence(v, **map_kwargs) for k, v in ds.items()})
    image_columns = [k for k, f in ds.features.items() if isinstance(f, datasets.Image)]
    raw = ds.cast_column(image_columns[0], datasets.Image(decode=False)) if image_columns else ds
    for column in image_columns[1:]:
        raw = raw.cast_column(column, datasets.Image(decode=False))
    split = parallel_columns(raw)
    features = datasets.Features(
        {k: v.feature if k in split else v
         for k, v in raw.features.items() if k not in PER_SENTENCE_DROPPED}
        | {"sentence": datasets.Value("string"), "sent_id": datasets.Value("int64")}
    )
    exploded = raw.map(_explode, batched=True, fn_kwargs={"split": split}, remove_columns=raw.column_names,
                       features=features, desc="one row per sentence", **map_kwargs)
    for column in image_columns:
        exploded = exploded.cast_column(column, datasets.Image())
    order = ["image", "mask", "sentence", "sent_id", "ref_id"]
    first = [c for c in order if c in exploded.column_names]
    return exploded.select_columns(first + [c for c in exploded.column_names if c not in first])


def stats_table(ds: datasets.DatasetDict) -> str:
    """A Markdown table of refs / images / sentences / mean words / distractors per split."""
    lines = ["| split | refs | images | sentences | words/sentence | with distractors |",
             "|---|---|---|---|---|---|"]
    for split, part in ds.items():
        columns = part.select_columns(["image_id", "sentences", "distractors"]).to_dict()
        sentences = [s for group in columns["sentences"] for s in group]
        words = sum(len(s.split()) for s in sentences) / max(1, len(sentences))
        hard = sum(1 for d in columns["distractors"] if d > 0) / max(1, len(part))
        lines.append(
            f"| {split} | {len(part):,} | {len(set(columns['image_id'])):,} | "
            f"{len(sentences):,} | {words:.1f} | {hard:.0%} |"
        )
    return "\n".join(lines)
