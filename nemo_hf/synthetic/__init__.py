"""Synthetic RefCOCO-family trees: scenes of coloured shapes written as real refer files.

:func:`make_refer_dataset` draws JPEG scenes of 2–6 filled shapes on a textured background
and writes them in the exact layout and formats of the downloads, so any RefCOCO reader
(the original ``refer`` toolkit included) reads them with no special case::

    root/refcoco/   instances.json  refs(unc).p  refs(google).p
    root/refcoco+/  instances.json  refs(unc).p
    root/refcocog/  instances.json  refs(umd).p  refs(google).p
    root/grefcoco/  instances.json  grefs(unc).json
    root/images/train2014/COCO_train2014_%012d.jpg   (shared by all datasets, like COCO)

What the files hold, and how it is controlled:

* **Shapes** — ten categories (COCO-style ids 1..10, supercategory ``"shape"``); circle,
  ellipse and ring form the *round* group, which plays the role of RefCOCO's "people":
  unc ``testA`` refers only to round shapes and ``testB`` only to the others. Colours come
  from :data:`PALETTE`; sizes are small / medium / large by radius.
* **Distractors** (other objects of the referred object's category) are set per image:
  image *i* gets a level ``L`` in 0, 1, 2, 3 ("3+"), draws its *primary* category
  ``L + 1`` times (``3`` → 4–6 times) and every other shape in a category of its own.
  ``distractor_levels`` weighs the four levels (default: equal, so a few dozen images
  already cover 0, 1, 2 and 3+ with near-equal counts); see :func:`make_refer_dataset`
  for how the levels show in the ``distractors`` column. Shapes are at least 6 px in
  radius and 6 px apart, also in small images.
* **Masks** — every segmentation is rasterised from the same vertex list PIL draws. A
  cross is two overlapping bars (two polygon parts: readers must take the union, not the
  sum), a ring is one keyhole polygon around its hole. Every ``1 / rle_share``-th
  annotation is stored as RLE instead, alternating uncompressed (``counts`` a list,
  ``iscrowd`` 1, as COCO stores crowds) and compressed (``counts`` a string, as COCO JSON
  stores it). Referred objects can be any of the three kinds.
* **Expressions** name colour, shape, size, absolute position and relations to another
  shape; each is kept only if it picks out the object in its scene, except where nothing
  can (then the most specific description is used). RefCOCO+ uses appearance words only,
  RefCOCOg longer sentences (~8 words). ``raw`` may start with a capital and end with
  punctuation; ``sent`` and ``tokens`` are the lowercased words.
* **Ground truth** rides along in keys the refer readers ignore: every annotation has
  ``attributes`` (``colour``, ``size`` class, ``centre`` ``[x, y]``), every sentence a
  ``meaning`` (what it states, evaluable by :func:`nemo_hf.data.meaning.fits`) and
  ``needs``: the smallest set of kinds among category, colour, size, position, relation
  that singles its target out (``None`` for the most-specific fallback when nothing
  does, and for gRefCOCO's multi- and no-target refs). The builder exposes them as
  columns (:mod:`nemo_hf.data.ground_truth`).
* **How hard** — ``objects_per_image``, ``same_colour_prob`` and ``separated_sizes``
  (:class:`WorldRules`) set how often category and colour alone suffice. With the
  defaults they do for ~97% of RefCOCOg sentences and ~80% of RefCOCO ones;
  :data:`FAIR_WORLD` makes about 70% need size, position or a relation.
* **Splits** — unc (RefCOCO, RefCOCO+, gRefCOCO) and umd (RefCOCOg) split by image, about
  70/10/10/10 and 80/10/10; google splits by object (RefCOCO train/val/test 80/10/10,
  RefCOCOg train/val 90/10), so its train and val share images. Both schemes of one
  dataset hold the same refs. From :data:`MIN_NUM_IMAGES` images on, every split of every
  scheme is non-empty and some image is shared by google train and val.
* **gRefCOCO** ``grefs(unc).json`` holds refs with the fields ``ref_id``, ``image_id``,
  ``ann_id`` (a list; ``[-1]`` for no target), ``category_id`` (a list parallel to
  ``ann_id``; ``[-1]`` for no target), ``no_target``, ``split``, ``sent_ids``,
  ``sentences`` and ``file_name``; besides one-object refs it has multi-target
  expressions ("all red shapes", "the two circles") and no-target ones that describe a
  shape absent from the image ("the purple circle" where no circle is purple).

The parts: :mod:`~nemo_hf.synthetic.scenes` (categories, colours, sizes, placement,
drawing), :mod:`~nemo_hf.synthetic.expressions` (the phrase grammar of each dataset),
:mod:`~nemo_hf.synthetic.splits` (split and level planning), :mod:`~nemo_hf.synthetic.writers`
(the refer files) and :mod:`~nemo_hf.synthetic.tree` (:func:`make_refer_dataset`).

Output is a deterministic function of the arguments (byte-identical files for one seed)
and each image draws from its own seeded stream, so the images and the RefCOCO refs do
not depend on which other datasets are requested. Work is streamed: one image is in
memory at a time and annotations and refs are spooled to disk, so a RefCOCO-sized tree
(20k images) costs a few ms per image at 640×480 and flat memory. The tree is built in a
temporary folder beside ``root`` and renamed into place, so an interrupted run leaves no
half-written tree.

>>> import tempfile, pathlib, pickle
>>> tree = make_refer_dataset(pathlib.Path(tempfile.mkdtemp()) / "refer", num_images=12)
>>> refs = pickle.loads((tree.data_dir("refcoco") / "refs(unc).p").read_bytes())
>>> sorted({ref["split"] for ref in refs})
['testA', 'testB', 'train', 'val']
"""

from nemo_hf.synthetic.scenes import CATEGORIES, PALETTE, ShapeCategory, WorldRules
from nemo_hf.synthetic.splits import MIN_NUM_IMAGES
from nemo_hf.synthetic.tokenizer import word_tokenizer
from nemo_hf.synthetic.tree import (
    DATASETS,
    FAIR_WORLD,
    SyntheticRefer,
    make_refer_dataset,
)

__all__ = [
    "CATEGORIES",
    "DATASETS",
    "FAIR_WORLD",
    "MIN_NUM_IMAGES",
    "PALETTE",
    "ShapeCategory",
    "SyntheticRefer",
    "WorldRules",
    "make_refer_dataset",
    "word_tokenizer",
]
