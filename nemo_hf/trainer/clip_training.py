"""Train a small CLIP contrastively on the synthetic referring world (the shipped ``nemo-hf/synthetic-clip``).

What ``training/train_clip.py`` runs (:func:`main`; :func:`train_clip` takes the parsed arguments):

    python training/train_clip.py --config training/configs/synthetic_clip.yaml
    python training/train_clip.py --config training/configs/synthetic_clip.yaml \\
        --resume_from_checkpoint latest                     # continue a killed run

No real CLIP can be downloaded where the offline demo and the tests run, and a CLIP with
random weights mines negatives no better than chance. This script makes one that knows the
synthetic world: a ``CLIPModel`` from a small config (ViT image tower, text tower, one
tokenizer word per vocabulary word), trained with CLIP's symmetric contrastive loss on
(image, referring expression) pairs.

- **Data**: a synthetic refer tree (``num_images`` scenes, ``data_seed``) read through the
  ``RefCOCO`` builder; every image of the train splits of ``refcoco_unc``, ``refcocoplus_unc``
  and ``refcocog_umd`` with all their expressions: short spatial ones, appearance-only ones
  and long relational ones.
- **Steps**: each draws ``train_batch_size`` distinct images and one expression of each,
  from a generator seeded by (``seed``, step), so a resumed run sees exactly the batches
  the uninterrupted one would. A share ``same_colour_batches`` of the steps draw a
  *same-colour batch* instead: every expression refers to an object of one colour, and
  every image holds one. Random batches can be told apart by colour alone (a synthetic
  scene has two to four colours of ten), so a CLIP trained on them reads colour and learns
  category and size late or never; within a same-colour batch only category, size and
  position tell the images apart. A share ``scene_captions`` of a batch's expressions are
  replaced by its image's *scene caption*, every object it holds ("two small red circles and
  a large white star"): a referring expression often names its target by where it is, which
  a CLIP can match by layout alone; a scene caption can only be matched by what is there.
  A share ``twin_batches`` of the steps draw *twin pairs* instead
  (:mod:`nemo_hf.synthetic.twins`): a scene and the same scene with one shape drawn as
  another category, each with the expression true of it alone ("the red star", "the red
  ring"), so only category tells the two apart. All three are off by default, and
  measured, not recommended: on the fair world none lifted the CLIP's category reading.
  With same-colour batches and captions its tower matched layout, colour sets and counts
  instead (captions lifted its size reading); with twin batches it read category worse
  than without, and told held-out twins apart at chance while the plain recipe learnt to
  (BENCHMARKS.md, the synthetic CLIP's gate).
- **Evaluation**: text→image retrieval R@1/R@5 on a freshly generated tree
  (``eval_images`` scenes, ``eval_seed``) that training never saw, against the chance level.

What lands in ``output_dir`` (a non-empty one is refused unless the run resumes there or
``--overwrite_output_dir`` is given): ``final/``, the model folder (``save_pretrained``:
safetensors, config, tokenizer, image processor; a model card ``README.md``,
``all_results.json`` and ``train_config.yaml``), and beside it ``train_config.yaml`` and
``checkpoints/step_<N>/`` for ``--resume_from_checkpoint``.

With several processes each one computes the loss over its share of the batch (no
cross-process negatives); the shipped model was trained in one process.

    >>> ClipTrainingArguments(image_size=64, patch_size=8).eval_seed
    2000
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from tqdm.auto import tqdm
from transformers import CLIPConfig, CLIPModel, CLIPProcessor, get_scheduler
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

from nemo_hf.data.load import load_refcoco
from nemo_hf.mining.retrieval import text_to_image_retrieval
from nemo_hf.synthetic.expressions import NUMBER_WORDS
from nemo_hf.synthetic.scenes import CATEGORIES
from nemo_hf.synthetic.tokenizer import word_tokenizer
from nemo_hf.synthetic.tree import FAIR_WORLD, make_refer_dataset
from nemo_hf.synthetic.twins import TWIN_WORDS, category_twins
from nemo_hf.trainer.args import parse_arguments, save_config
from nemo_hf.trainer.checkpoints import find_checkpoint, save_checkpoint, starting_state
from nemo_hf.trainer.output_dir import TRAIN_ENTRIES, TRAIN_LEFTOVERS, claim_output_dir, writing_final

__all__ = ["ClipTrainingArguments", "main", "train_clip"]

TRAIN_CONFIGS = ("refcoco_unc", "refcocoplus_unc", "refcocog_umd")
WORLDS = {"default": {}, "fair": {"image_size": (160, 120), "object_scale": 1.5, **FAIR_WORLD}}
"""``make_refer_dataset`` keywords of each ``world``: ``fair`` is the world of ``benchmarks/nemo_effect.py``."""
EVAL_CONFIGS = ("refcoco_unc", "refcocog_umd")
_PLURALS = {c.name: c.plural for c in CATEGORIES}


@dataclass
class ClipTrainingArguments:
    """Everything ``train_clip.py`` takes; ``--config`` reads the same keys from YAML."""

    output_dir: str = field(default="outputs/synthetic-clip", metadata={"help": "The run's folder: the model in final/."})
    overwrite_output_dir: bool = field(default=False, metadata={"help": "Replace the run already in output_dir."})
    cache_dir: str | None = field(default=None, metadata={"help": "Synthetic trees and dataset caches (default: the datasets cache)."})
    world: str = field(default="default", metadata={
        "help": "The synthetic world of both trees: 'default', or 'fair' (the fair test of NeMo's world: 160x120 "
                "scenes, shapes 1.5x the radius, synthetic.FAIR_WORLD), where category and colour rarely suffice."})
    num_images: int = field(default=3000, metadata={"help": "Scenes in the training tree."})
    data_seed: int = field(default=1000, metadata={"help": "Seed of the training tree."})
    eval_images: int = field(default=300, metadata={"help": "Scenes in the held-out evaluation tree."})
    eval_seed: int = field(default=2000, metadata={"help": "Seed of the evaluation tree (differs from data_seed)."})
    image_size: int = field(default=64, metadata={"help": "Input side; images are stretched to a square, as NeMo's cells are."})
    patch_size: int = field(default=8)
    hidden_size: int = field(default=64, metadata={"help": "Width of both towers."})
    vision_layers: int = field(default=4)
    text_layers: int = field(default=3)
    attention_heads: int = field(default=4)
    projection_dim: int = field(default=64)
    max_text_length: int = field(default=32, metadata={"help": "Text positions; the longest synthetic expression is ~20 tokens."})
    seed: int = field(default=0, metadata={"help": "Weights' initialisation and the batches."})
    train_batch_size: int = field(default=128, metadata={"help": "Images per step, over all processes."})
    max_steps: int = field(default=1500)
    learning_rate: float = field(default=1e-3)
    weight_decay: float = field(default=0.05)
    num_warmup_steps: int = field(default=50)
    same_colour_batches: float = field(default=0.0, metadata={
        "help": "Share of steps whose batch is all one target colour (see the module docstring), in [0, 1]."})
    scene_captions: float = field(default=0.0, metadata={
        "help": "Share of expressions replaced by their image's scene caption (see the module docstring), in [0, 1]."})
    twin_batches: float = field(default=0.0, metadata={
        "help": "Share of steps whose batch is counterfactual twin pairs (see the module docstring), in [0, 1]."})
    twin_scenes: int = field(default=10000, metadata={"help": "Twin pairs generated for twin batches."})
    lr_scheduler_type: str = field(default="cosine")
    mixed_precision: str = field(default="no", metadata={"help": "no | bf16 | fp16 (accelerate's choices)."})
    logging_steps: int = field(default=50)
    checkpointing_steps: int = field(default=250)
    checkpoints_total_limit: int | None = field(default=2)
    resume_from_checkpoint: str | None = field(default=None, metadata={"help": "A checkpoint folder, or 'latest'."})

    def __post_init__(self) -> None:
        if self.eval_seed == self.data_seed:
            raise ValueError(f"eval_seed must differ from data_seed ({self.data_seed}): evaluation needs unseen scenes")
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")
        if self.world not in WORLDS:
            raise ValueError(f"world must be one of {sorted(WORLDS)}, got {self.world!r}")
        for name in ("same_colour_batches", "scene_captions", "twin_batches"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        for name in ("num_images", "eval_images", "train_batch_size", "max_steps", "twin_scenes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")


@dataclass
class ImageTexts:
    """Unique images of some refer splits, every expression of each and the colour of its target.

    ``colours[i][j]`` is the colour of the object ``sentences[i][j]`` refers to (None where
    the tree does not record it: only synthetic trees do).
    """

    images: datasets.Dataset  # columns image, image_id
    sentences: list[list[str]]
    colours: list[list[str | None]]
    captions: list[str | None]  # each image's scene caption (None where the tree has no scene_objects)

    def by_colour(self) -> dict[str, dict[int, list[int]]]:
        """colour -> image index -> the indices of its expressions about an object of that colour."""
        found: dict[str, dict[int, list[int]]] = {}
        for image, colours in enumerate(self.colours):
            for j, colour in enumerate(colours):
                if colour is not None:
                    found.setdefault(colour, {}).setdefault(image, []).append(j)
        return found


def tree_images(root: Path, configs: Sequence[str], splits: Sequence[str] | None, cache_dir: Path) -> ImageTexts:
    """The images of ``configs`` (``splits`` of each, or all) with their expressions, sorted by image id."""
    texts: dict[int, list[tuple[str, str | None]]] = {}
    captions: dict[int, str | None] = {}
    first_row: dict[int, tuple[str, str, int]] = {}
    built = {}
    for config in configs:
        built[config] = load_refcoco(config, root, root / "images" / "train2014", cache_dir=cache_dir)
        for split in splits or list(built[config]):
            rows = built[config][split]
            targets = rows["target_attributes"] if "target_attributes" in rows.column_names else [None] * len(rows)
            scenes = rows["scene_objects"] if "scene_objects" in rows.column_names else [None] * len(rows)
            for row, (image_id, sentences, target, scene) in enumerate(
                    zip(rows["image_id"], rows["sentences"], targets, scenes)):
                colour = (target or {}).get("colour")
                captions.setdefault(image_id, scene_caption(scene) if scene else None)
                texts.setdefault(image_id, []).extend((sentence, colour) for sentence in sentences)
                first_row.setdefault(image_id, (config, split, row))
    ids = sorted(texts)
    # one select per split: one per image had not finished in 10 minutes at 80,000 scenes (24 s now)
    rows_of: dict[tuple[str, str], list[int]] = {}
    for config, split, row in (first_row[i] for i in ids):
        rows_of.setdefault((config, split), []).append(row)
    picked = [built[c][s].select(rows).select_columns(["image", "image_id"]) for (c, s), rows in rows_of.items()]
    images = datasets.concatenate_datasets(picked) if picked else datasets.Dataset.from_dict({"image": [], "image_id": []})
    images = images.select(np.argsort(np.asarray(images["image_id"]), kind="stable"))  # in the order of ids
    sentences, colours = [], []
    for i in ids:
        colour_of: dict[str, set[str | None]] = {}
        for text, colour in texts[i]:
            colour_of.setdefault(text, set()).add(colour)
        sentences.append(sorted(colour_of))
        # one expression written for objects of two colours (e.g. by two datasets) is about neither
        colours.append([next(iter(colour_of[t])) if len(colour_of[t]) == 1 else None for t in sentences[-1]])
    return ImageTexts(images, sentences, colours, [captions[i] for i in ids])


def scene_caption(scene: Mapping[str, Sequence]) -> str:
    """Every object of a synthetic scene (its ``scene_objects``), alike ones counted.

    >>> scene_caption({"category": ["ring", "ring", "star"], "colour": ["red", "red", "white"],
    ...                "size": ["small", "small", "large"]})
    'two small red rings and a large white star'
    """
    counts = Counter(zip(scene["size"], scene["colour"], scene["category"], strict=True))
    parts = [f"a {size} {colour} {category}" if n == 1 else
             f"{NUMBER_WORDS.get(n, 'many')} {size} {colour} {_PLURALS[category]}"
             for (size, colour, category), n in sorted(counts.items(), key=lambda item: (-item[1], item[0]))]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def synthetic_tree(args: ClipTrainingArguments, num_images: int, seed: int) -> Path:
    """A synthetic tree of RefCOCO, RefCOCO+ and RefCOCOg, generated once into the cache."""
    base = Path(args.cache_dir) if args.cache_dir else Path(datasets.config.HF_DATASETS_CACHE) / "nemo_hf"
    world = "" if args.world == "default" else f"-{args.world}"
    root = base / f"synthetic-clip{world}-{num_images}-seed{seed}"
    if not root.exists():
        make_refer_dataset(root, num_images=num_images, seed=seed, datasets=("refcoco", "refcoco+", "refcocog"),
                           **WORLDS[args.world])
    return root


def build_model(args: ClipTrainingArguments, vocabulary: Sequence[str]) -> tuple[CLIPModel, CLIPProcessor]:
    """A freshly initialised ``CLIPModel`` of the configured size and its processor."""
    tokenizer = word_tokenizer(vocabulary, model_max_length=args.max_text_length)
    tower = {
        "hidden_size": args.hidden_size,
        "intermediate_size": 4 * args.hidden_size,
        "num_attention_heads": args.attention_heads,
    }
    config = CLIPConfig(
        text_config={
            **tower,
            "num_hidden_layers": args.text_layers,
            "vocab_size": len(tokenizer),
            "max_position_embeddings": args.max_text_length,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config={
            **tower,
            "num_hidden_layers": args.vision_layers,
            "image_size": args.image_size,
            "patch_size": args.patch_size,
        },
        projection_dim=args.projection_dim,
    )
    model = CLIPModel(config)
    # stretched, not centre-cropped: a crop would cut off the shapes near the left and right edges
    image_processor = CLIPImageProcessorPil(
        size={"height": args.image_size, "width": args.image_size}, do_center_crop=False
    )
    return model, CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer)


def write_pixel_values(
    processor: CLIPProcessor, images: datasets.Dataset, out: torch.Tensor, batch_size: int = 256
) -> None:
    """Every image preprocessed once into ``out`` (``(N, 3, S, S)``, allocated once), as at mining time."""
    for start in tqdm(range(0, len(images), batch_size), desc="preprocessing images"):
        batch = images[start : start + batch_size]["image"]
        out[start : start + len(batch)] = processor.image_processor(
            [im.convert("RGB") for im in batch], return_tensors="pt")["pixel_values"]


def write_twin_pixel_values(
    args: ClipTrainingArguments, processor: CLIPProcessor, out: torch.Tensor, chunk: int = 500
) -> list[tuple[str, str]]:
    """``args.twin_scenes`` twin pairs of the run's world into ``out`` (pair j's images at 2j, 2j + 1); their texts.

    Made and preprocessed a chunk at a time: 40,000 pairs held as images at once took 19 GB.
    """
    texts: list[tuple[str, str]] = []
    for start in tqdm(range(0, args.twin_scenes, chunk), desc="twin pairs", unit_scale=chunk):
        pairs = category_twins(min(chunk, args.twin_scenes - start), args.data_seed, start=start, **WORLDS[args.world])
        images = [image for pair in pairs for image in (pair.image, pair.twin)]
        out[2 * start : 2 * start + len(images)] = processor.image_processor(images, return_tensors="pt")["pixel_values"]
        texts += [(pair.text, pair.twin_text) for pair in pairs]
    return texts


def vocabulary_of(sentences: Sequence[Sequence[str]]) -> list[str]:
    """The lowercase words of the training expressions, sorted."""
    return sorted({word for texts in sentences for text in texts for word in re.findall(r"[a-z]+", text.lower())})


def batch_plan(
    seed: int, step: int, num_images: int, batch_size: int, sentences: Sequence[Sequence[str]],
    same_colour: float = 0.0, by_colour: Mapping[str, Mapping[int, Sequence[int]]] | None = None,
    captions: Sequence[str | None] | None = None, caption_share: float = 0.0,
    twin_texts: Sequence[tuple[str, str]] = (), twin_share: float = 0.0,
) -> tuple[np.ndarray, list[str]]:
    """The images and expressions of one step: a pure function of (seed, step).

    With probability ``twin_share`` the batch is a twin batch: pairs of ``twin_texts``, pair
    ``j``'s images numbered ``num_images + 2j`` and ``num_images + 2j + 1`` (after the
    tree's), each with its own expression.

    With probability ``same_colour`` the batch is a same-colour one: a colour drawn in
    proportion to its images in ``by_colour`` (:meth:`ImageTexts.by_colour`), then images
    holding a referred object of that colour, each with one expression about such an object.
    Then each expression is replaced, with probability ``caption_share``, by its image's
    caption in ``captions`` (where it has one); the images drawn stay the same.

    >>> by_colour = {"red": {0: [0], 2: [1]}, "blue": {1: [0], 2: [0]}}
    >>> sentences = [["the red ring"], ["the blue star"], ["the blue ring", "the red star"]]
    >>> picked, texts = batch_plan(0, 0, 3, 2, sentences, same_colour=1.0, by_colour=by_colour)
    >>> sorted(texts) in (["the red ring", "the red star"], ["the blue ring", "the blue star"])
    True
    """
    rng = np.random.default_rng([seed, step])
    if twin_share and twin_texts and rng.random() < twin_share:
        pairs = rng.choice(len(twin_texts), size=min(batch_size // 2, len(twin_texts)), replace=False)
        picked = np.stack([num_images + 2 * pairs, num_images + 2 * pairs + 1], axis=1).ravel()
        return picked, [text for j in pairs for text in twin_texts[j]]
    if same_colour and by_colour and rng.random() < same_colour:
        colours = sorted(by_colour)
        counts = np.array([len(by_colour[c]) for c in colours], dtype=float)
        holding = by_colour[colours[int(rng.choice(len(colours), p=counts / counts.sum()))]]
        images = np.array(sorted(holding))
        picked = rng.choice(images, size=min(batch_size, len(images)), replace=False)
        texts = [sentences[i][holding[i][int(rng.integers(len(holding[i])))]] for i in picked]
    else:
        picked = rng.choice(num_images, size=min(batch_size, num_images), replace=False)
        texts = [sentences[i][int(rng.integers(len(sentences[i])))] for i in picked]
    if caption_share and captions is not None:
        swap = rng.random(len(picked)) < caption_share
        texts = [captions[i] if s and captions[i] else t for i, t, s in zip(picked, texts, swap, strict=True)]
    return picked, texts


def _batch_recipe(args: ClipTrainingArguments) -> str:
    """What the model card says of same-colour batches and scene captions, where a run used them."""
    said = []
    if args.same_colour_batches:
        said.append(f"{args.same_colour_batches:.0%} of the steps drawing all images and expressions about one colour")
    if args.scene_captions:
        said.append(f"{args.scene_captions:.0%} of the expressions replaced by the scene's caption of every object")
    if args.twin_batches:
        said.append(f"{args.twin_batches:.0%} of the steps drawing counterfactual twin pairs "
                    f"({args.twin_scenes} pairs)")
    return f" ({', '.join(said)})" if said else ""


def model_card(args: ClipTrainingArguments, results: dict[str, float], num_parameters: int, command: str) -> str:
    """The README.md of the trained model."""
    return f"""---
library_name: transformers
license: mit
tags: [clip, synthetic, nemo_hf, referring-image-segmentation]
---
# nemo-hf/synthetic-clip

A small `CLIPModel` ({num_parameters / 1e6:.2f} M parameters: ViT image tower of {args.vision_layers} layers at
{args.image_size}×{args.image_size} in {args.patch_size}-pixel patches, text tower of {args.text_layers} layers, width
{args.hidden_size}, projection {args.projection_dim}) trained contrastively on nemo_hf's **synthetic referring world**
(scenes of coloured shapes with RefCOCO-, RefCOCO+- and RefCOCOg-style expressions). It exists so that NeMo's
negative mining, the offline demo and the tests have a CLIP whose similarities mean something where no real CLIP
can be downloaded. It knows nothing of real photographs: for real data use a real CLIP such as
`openai/clip-vit-base-patch16`.

Load it by its offline name (no download; the files ship inside the `nemo_hf` package):

```python
from nemo_hf import NeMo
nemo = NeMo(pool=train, clip="nemo-hf/synthetic-clip")
```

## Text→image retrieval on {args.eval_images} unseen synthetic scenes (seed {args.eval_seed})

| R@1 | R@5 | chance R@1 |
|---|---|---|
| {results["R@1"]:.3f} | {results["R@5"]:.3f} | {results["chance@1"]:.4f} |

Each expression of each referred object ranks every scene; many expressions ("the blue ring") fit several
scenes, so R@1 is bounded well below 1 even for a perfect model.

## How it was made

```bash
{command}
```

{args.num_images} training scenes of the `{args.world}` world (seed {args.data_seed}), the train splits of refcoco_unc, refcocoplus_unc and
refcocog_umd; {args.max_steps} steps of {args.train_batch_size} images with one expression each{_batch_recipe(args)}, AdamW (lr
{args.learning_rate}, weight decay {args.weight_decay}, {args.lr_scheduler_type} schedule, {args.num_warmup_steps}
warm-up steps), CLIP's symmetric contrastive loss, seed {args.seed}, one CPU process, float32, run with
`OMP_NUM_THREADS=1`. On one CPU process the run is deterministic: the same command, torch build and thread count
give the same weights (other thread counts differ by floating-point rounding). Images are stretched to a square
(no centre crop), as NeMo stretches its mosaic cells; the tokenizer has one token per vocabulary word and
byte-level pieces for anything else.
"""


def main(argv: Sequence[str] | None = None, description: str | None = None) -> dict[str, float]:
    """``training/train_clip.py``: parse the command line (and ``--config``), train; the retrieval results."""
    (args,) = parse_arguments(argv, (ClipTrainingArguments,), description=description or __doc__)
    return train_clip(args)


def train_clip(args: ClipTrainingArguments) -> dict[str, float]:
    """Train the CLIP (see the module docstring); its text→image retrieval on the held-out tree."""
    accelerator = Accelerator(mixed_precision=args.mixed_precision)
    output_dir = Path(args.output_dir)
    checkpoint = find_checkpoint(args.resume_from_checkpoint, output_dir) if args.resume_from_checkpoint else None
    claim_output_dir(output_dir, TRAIN_ENTRIES, overwrite=args.overwrite_output_dir, resume_from=checkpoint,
                     leftovers=TRAIN_LEFTOVERS)
    cache_dir = Path(args.cache_dir) if args.cache_dir else Path(datasets.config.HF_DATASETS_CACHE) / "nemo_hf"
    with accelerator.main_process_first():
        train = tree_images(synthetic_tree(args, args.num_images, args.data_seed), TRAIN_CONFIGS, ["train"], cache_dir)
        held_out = tree_images(synthetic_tree(args, args.eval_images, args.eval_seed), EVAL_CONFIGS, None, cache_dir)
    set_seed(args.seed)
    captions = [[c] for c in train.captions if c] if args.scene_captions else []
    twin_words = [[" ".join(TWIN_WORDS)]] if args.twin_batches else []
    model, processor = build_model(args, vocabulary_of([*train.sentences, *captions, *twin_words]))
    num_twin_images = 2 * args.twin_scenes if args.twin_batches else 0
    pixels = torch.empty((len(train.images) + num_twin_images, 3, args.image_size, args.image_size))
    write_pixel_values(processor, train.images, pixels[: len(train.images)])
    # twin pairs after the tree's images, as batch_plan numbers them
    twin_texts = write_twin_pixel_values(args, processor, pixels[len(train.images) :]) if args.twin_batches else []
    by_colour = train.by_colour() if args.same_colour_batches else None
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate, weight_decay=args.weight_decay)
    scheduler = get_scheduler(
        args.lr_scheduler_type, optimizer, num_warmup_steps=args.num_warmup_steps, num_training_steps=args.max_steps
    )
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    accelerator.register_for_checkpointing(scheduler)

    state = starting_state(checkpoint)
    start_step = int(state["completed_steps"])
    if checkpoint is not None:
        accelerator.load_state(str(checkpoint))
        accelerator.print(f"resumed from {checkpoint} at step {start_step}: {args.max_steps - start_step} steps left")
    if accelerator.is_main_process:
        save_config(output_dir / "train_config.yaml", args)

    rank, world = accelerator.process_index, accelerator.num_processes
    started = time.perf_counter()
    model.train()
    progress = tqdm(range(start_step, args.max_steps), desc="CLIP steps", disable=not accelerator.is_local_main_process)
    for step in progress:
        picked, texts = batch_plan(args.seed, step, len(train.sentences), args.train_batch_size, train.sentences,
                                   args.same_colour_batches, by_colour, train.captions, args.scene_captions,
                                   twin_texts, args.twin_batches)
        mine = slice(rank, None, world)
        tokens = processor.tokenizer(texts[mine], padding=True, truncation=True, return_tensors="pt").to(accelerator.device)
        loss = model(pixel_values=pixels[picked[mine]].to(accelerator.device), return_loss=True, **tokens).loss
        accelerator.backward(loss)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        if (step + 1) % args.logging_steps == 0:
            progress.set_postfix(loss=f"{loss.item():.3f}")
        if args.checkpointing_steps and (step + 1) % args.checkpointing_steps == 0 and step + 1 < args.max_steps:
            save_checkpoint(accelerator, output_dir, {**state, "completed_steps": step + 1}, args.checkpoints_total_limit)

    trained = accelerator.unwrap_model(model)
    results = text_to_image_retrieval(trained, processor, held_out.images, held_out.sentences)
    results.update(steps=args.max_steps, resumed_from_step=start_step, train_seconds=round(time.perf_counter() - started, 1))
    if accelerator.is_main_process:
        with writing_final(output_dir) as final:
            trained.save_pretrained(final)
            processor.save_pretrained(final)
            (final / "all_results.json").write_text(json.dumps(results, indent=2))
            # the settings of this run, whatever config it came from: train_config.yaml is copied beside the weights
            command = ("OMP_NUM_THREADS=1 python training/train_clip.py --config train_config.yaml "
                       "--output_dir <a new folder>   # train_config.yaml: the copy in this folder")
            num_parameters = sum(p.numel() for p in trained.parameters())
            (final / "README.md").write_text(model_card(args, results, num_parameters, command))
            shutil.copy2(output_dir / "train_config.yaml", final / "train_config.yaml")
        accelerator.print(
            f"text→image retrieval on unseen scenes: R@1 {results['R@1']:.3f}, R@5 {results['R@5']:.3f} "
            f"(chance {results['chance@1']:.4f})\nsaved the model, processor, model card, all_results.json and "
            f"train_config.yaml to {output_dir / 'final'} (the model folder; training state: {output_dir / 'checkpoints'})"
        )
    accelerator.end_training()
    return results
