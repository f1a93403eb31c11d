"""The RefCOCO-family variants: where each one's files live, its splits and published sizes.

One entry per (dataset, split scheme), as the field names them. Sizes are the counts of the
original release (refs / images / sentences), used for the dataset description and to tell
users how far a build is from the canonical split. A tree that ``nemo_hf.synthetic`` wrote
says so in its ``instances.json`` (:func:`synthetic_description`), and its card then says
it is synthetic, with none of the release's sizes, licence or citations
(:func:`card_fields`).

>>> VARIANTS["refcoco_unc"].splits
('train', 'val', 'testA', 'testB')
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

HOMEPAGE = "https://github.com/lichengunc/refer"
LICENSE_NOTE = (
    "Images: MS-COCO (Flickr terms of use; COCO annotations CC BY 4.0). Referring expressions: "
    "RefCOCO/RefCOCO+/RefCOCOg/gRefCOCO annotations from their authors' releases; check their "
    "terms before redistribution."
)
SUMMARIES = {
    "refcoco": "RefCOCO: short referring expressions for objects in MS-COCO images.",
    "refcoco+": "RefCOCO+: like RefCOCO, but location words were forbidden to the annotators.",
    "refcocog": "RefCOCOg: longer expressions (about 8 words) collected in a non-interactive setting.",
    "grefcoco": "gRefCOCO: generalized referring expressions with several or no target objects.",
}

CITATIONS = {
    "refcoco": """@inproceedings{yu2016modeling,
  title={Modeling Context in Referring Expressions},
  author={Yu, Licheng and Poirson, Patrick and Yang, Shan and Berg, Alexander C. and Berg, Tamara L.},
  booktitle={ECCV}, year={2016}}
@inproceedings{kazemzadeh2014referitgame,
  title={ReferItGame: Referring to Objects in Photographs of Natural Scenes},
  author={Kazemzadeh, Sahar and Ordonez, Vicente and Matten, Mark and Berg, Tamara},
  booktitle={EMNLP}, year={2014}}""",
    "refcocog": """@inproceedings{mao2016generation,
  title={Generation and Comprehension of Unambiguous Object Descriptions},
  author={Mao, Junhua and Huang, Jonathan and Toshev, Alexander and Camburu, Oana and Yuille, Alan L. and Murphy, Kevin},
  booktitle={CVPR}, year={2016}}
@inproceedings{nagaraja2016modeling,
  title={Modeling Context Between Objects for Referring Expression Understanding},
  author={Nagaraja, Varun K. and Morariu, Vlad I. and Davis, Larry S.},
  booktitle={ECCV}, year={2016}}""",
    "grefcoco": """@inproceedings{liu2023gres,
  title={GRES: Generalized Referring Expression Segmentation},
  author={Liu, Chang and Ding, Henghui and Jiang, Xudong},
  booktitle={CVPR}, year={2023}}""",
    "coco": """@inproceedings{lin2014microsoft,
  title={Microsoft COCO: Common Objects in Context},
  author={Lin, Tsung-Yi and Maire, Michael and Belongie, Serge and others},
  booktitle={ECCV}, year={2014}}""",
}


@dataclass(frozen=True)
class Variant:
    """Static facts about one RefCOCO-family variant."""

    name: str
    folder: str  # sub-folder of the refer root holding the files
    refs_file: str
    splits: tuple[str, ...]
    # split -> (refs, images, sentences) in the original release; None where unpublished
    published: dict[str, tuple[int, int, int | None]]
    citation_keys: tuple[str, ...]
    generalized: bool = False  # gRefCOCO: multi-target and no-target expressions

    @property
    def instances_file(self) -> str:
        return "instances.json"


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant(
            "refcoco_unc", "refcoco", "refs(unc).p", ("train", "val", "testA", "testB"),
            {"train": (42404, 16994, 120624), "val": (3811, 1500, 10834),
             "testA": (1975, 750, 5657), "testB": (1810, 750, 5095)},
            ("refcoco", "coco"),
        ),
        Variant(
            "refcoco_google", "refcoco", "refs(google).p", ("train", "val", "test"),
            {"train": (40000, 19213, None), "val": (5000, 4559, None), "test": (5000, 4527, None)},
            ("refcoco", "coco"),
        ),
        Variant(
            "refcocoplus_unc", "refcoco+", "refs(unc).p", ("train", "val", "testA", "testB"),
            {"train": (42278, 16992, 120191), "val": (3805, 1500, 10758),
             "testA": (1975, 750, 5726), "testB": (1798, 750, 4889)},
            ("refcoco", "coco"),
        ),
        Variant(
            "refcocog_umd", "refcocog", "refs(umd).p", ("train", "val", "test"),
            {"train": (42226, 21899, 80512), "val": (2573, 1300, 4896), "test": (5023, 2600, 9602)},
            ("refcocog", "coco"),
        ),
        Variant(
            "refcocog_google", "refcocog", "refs(google).p", ("train", "val"),
            {"train": (44822, 24698, 85474), "val": (5000, 4650, 9536)},
            ("refcocog", "coco"),
        ),
        Variant(
            "grefcoco_unc", "grefcoco", "grefs(unc).json", ("train", "val", "testA", "testB"),
            {}, ("grefcoco", "refcoco", "coco"), generalized=True,
        ),
    )
}


def get_variant(name: str) -> Variant:
    """Look up a variant by config name, with an error listing the valid names.

    >>> get_variant("refcocog_umd").folder
    'refcocog'
    """
    try:
        return VARIANTS[name]
    except KeyError:
        raise ValueError(
            f"unknown RefCOCO config {name!r}; choose one of: {', '.join(VARIANTS)}"
        ) from None


def check_split(variant: Variant, split: str) -> None:
    """Raise a ValueError naming the allowed splits when ``split`` is not one of them."""
    if split not in variant.splits:
        raise ValueError(
            f"config {variant.name!r} has no split {split!r}; its splits are: "
            f"{', '.join(variant.splits)}"
        )


def published_table(variant: Variant) -> str:
    """A Markdown table of the original release's split sizes (for descriptions and cards)."""
    if not variant.published:
        return f"Published split sizes for {variant.name} are not listed here."
    rows = ["| split | refs | images | sentences |", "|---|---|---|---|"]
    for split, (refs, images, sents) in variant.published.items():
        rows.append(f"| {split} | {refs:,} | {images:,} | {'—' if sents is None else f'{sents:,}'} |")
    return "\n".join(rows)


# how nemo_hf.synthetic's instances.json describes itself (its "info" block comes first in the file)
SYNTHETIC_MARK = "nemo_hf synthetic"
_INFO_DESCRIPTION = re.compile(r'^\s*\{\s*"info"\s*:\s*\{[^{}]*?"description"\s*:\s*("(?:[^"\\]|\\.)*")')


def synthetic_description(data_dir: str | os.PathLike[str], name: str) -> str | None:
    """What a synthetic tree's ``instances.json`` says it is, or None for any other tree (or none there).

    ``data_dir`` is the refer root or the variant's own folder, as for the builder. Only the
    head of the file is read: a real ``instances.json`` runs to hundreds of megabytes.

    >>> import tempfile
    >>> from nemo_hf.synthetic import make_refer_dataset
    >>> tree = make_refer_dataset(Path(tempfile.mkdtemp()) / "refer", 12, datasets=("refcocog",), seed=3)
    >>> synthetic_description(tree.root, "refcocog_umd")
    'nemo_hf synthetic shapes in refer format (seed 3)'
    """
    variant = get_variant(name)
    root = Path(data_dir)
    folder = root / variant.folder if (root / variant.folder).is_dir() else root
    try:
        with (folder / variant.instances_file).open("rb") as f:
            head = f.read(1 << 16).decode("utf-8", errors="replace")
    except OSError:
        return None
    found = _INFO_DESCRIPTION.match(head)
    if found is None:
        return None
    description = json.loads(found.group(1))
    return description if description.startswith(SYNTHETIC_MARK) else None


def card_fields(name: str, synthetic: str | None = None) -> dict[str, object]:
    """The dataset-card fields of one variant (summary, sizes, license, citation).

    ``synthetic`` (:func:`synthetic_description`) marks a build of a synthetic tree: the card
    says so first, and claims none of the real release's sizes, licence terms or citations.

    >>> card_fields("refcocog_umd", synthetic="nemo_hf synthetic shapes in refer format (seed 0)")["license"]
    'Generated by nemo_hf (MIT licence): no MS-COCO image and no RefCOCO-family annotation is in it.'
    """
    variant = get_variant(name)
    if synthetic is not None:
        real = SUMMARIES[variant.folder].split(":")[0]
        return {
            "pretty_name": f"synthetic {variant.folder} ({name}) with masks, made by nemo_hf",
            "summary": (f"**Synthetic data, not {real}** ({synthetic}): scenes of coloured "
                        f"shapes drawn by `nemo_hf.synthetic`, with machine-written expressions in the style of "
                        f"{real} and the splits of `{name}`. For testing pipelines and methods offline; results on "
                        f"it do not compare with published {real} results."),
            "published": "",
            "license": ("Generated by nemo_hf (MIT licence): no MS-COCO image and no RefCOCO-family annotation is in "
                        "it."),
            "citation": "",
            "generalized": variant.generalized,
            "synthetic": True,
        }
    return {
        "pretty_name": f"{variant.folder} ({name}) with masks",
        "summary": SUMMARIES[variant.folder],
        "published": published_table(variant),
        "license": LICENSE_NOTE,
        "citation": "\n".join(CITATIONS[k] for k in variant.citation_keys),
        "generalized": variant.generalized,
        "synthetic": False,
    }
