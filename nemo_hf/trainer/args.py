"""The settings of ``training/train.py`` and ``training/eval_ris.py``: dataclasses parsed by ``HfArgumentParser``.

A training run's settings are a :class:`TrainingConfig`: the model (:class:`ModelArguments`),
the data (:class:`DataArguments`), which augmentation and mining CLIP
(:class:`AugmentationArguments`), NeMo's own settings (:class:`~nemo_hf.nemo.settings.NeMoSettings`,
parsed as they are declared there: every NeMo knob is a flag, with its help text) and the
optimisation (:class:`TrainArguments`).

Every field is a command-line flag (``--learning_rate 3e-4``) and a key of a YAML config
(``--config file.yaml``); flags given on the command line override the file. A config is
flat: one mapping of field names from all the dataclasses. YAML values go through the
same type conversion as flags, so ``learning_rate: 1e-4`` (a string to YAML) is a float.
An unknown key is an error that names the file and the key. A setting that may be off
(``tau_image``, ``max_train_samples``, …) is turned off with ``none`` on the command line
and ``null`` in YAML. Two names are one setting shared by two dataclasses
(:data:`SHARED_SETTINGS`): ``seed`` (the run's and NeMo's) and ``cache_dir`` (the datasets'
and NeMo's mining cache).

:meth:`TrainingConfig.save` writes the resolved values of a run in the same format, so
``--config <output_dir>/train_config.yaml`` reproduces it.

    >>> config = TrainingConfig.parse(["--synthetic_images", "24"])
    >>> config.data.synthetic_images, config.run.learning_rate, config.augmentation.augmentation
    (24, 0.0001, 'nemo')
    >>> TrainingConfig.parse(["--synthetic_images", "24", "--tau_image", "none", "--top_k", "5"]).nemo.tau_image is None
    True
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import yaml
from transformers import HfArgumentParser

from nemo_hf.command_line import HelpFormatter
from nemo_hf.metrics.protocols import PROTOCOL_NAMES
from nemo_hf.modeling.loading import DEFAULT_CHECKPOINT
from nemo_hf.modeling.losses import SEGMENTATION_LOSSES, SegmentationLoss
from nemo_hf.modeling.parts import TRAINABLE_CHOICES, Trainable
from nemo_hf.modeling.registry import TRAINABLE_SEGMENTER_TYPES
from nemo_hf.nemo.settings import NeMoSettings
from nemo_hf.pretrained import check_local_path
from nemo_hf.trainer.schedule import MULTISTEP

__all__ = [
    "EVALUATE_DATACLASSES",
    "SHARED_SETTINGS",
    "TRAIN_DATACLASSES",
    "AugmentationArguments",
    "DataArguments",
    "EvaluateArguments",
    "EvaluationConfig",
    "ModelArguments",
    "TrainArguments",
    "TrainingConfig",
    "add_dataclass_flags",
    "config_values",
    "parse_arguments",
    "resolve_mixed_precision",
    "save_config",
]


def _check_choice(name: str, value: object, choices: Sequence[object]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")


@dataclass
class ModelArguments:
    """Which model to start from and which of its parts to train."""

    model_name_or_path: str = field(
        default=DEFAULT_CHECKPOINT,
        metadata={"help": "CLIPSeg or CRIS checkpoint, or a CLIP to build one on (Hub id, folder or shipped name "
                          "such as 'nemo-hf/synthetic-clip'; a ResNet CLIP in open_clip's format, such as "
                          "'timm/resnet50_clip.openai', for CRIS); eval_ris.py also takes a Florence-2 checkpoint."},
    )
    model_type: str | None = field(
        default=None,
        metadata={"help": "Segmenter to build on a CLIP checkpoint (default 'clipseg'; 'cris' on a ResNet CLIP); a "
                          "segmenter checkpoint is what it is.", "choices": list(TRAINABLE_SEGMENTER_TYPES)},
    )
    model_revision: str | None = field(default=None, metadata={"help": "Hub revision of the checkpoint."})
    trainable: Trainable | None = field(
        default=None,
        metadata={"help": "'decoder' (the new layers; CLIP frozen), 'decoder+text' (also the text encoder) or "
                          "'all' (the vision encoder too); default: the model's recipe, 'decoder' for CLIPSeg "
                          "(transformers runs its CLIP without gradients), 'all' for CRIS."},
    )
    image_size: int | None = field(
        default=None,
        metadata={"help": "Input side of a segmenter built on a CLIP checkpoint (default: the CLIP's; CRIS "
                          "trains at 416); ignored for segmenter checkpoints."},
    )
    text_length: int | None = field(
        default=None,
        metadata={"help": "Tokens kept per expression (default: the tokenizer's, 77 for CLIP; CRIS keeps 17 for "
                          "RefCOCO/+, 22 for G-Ref)."},
    )
    loss: SegmentationLoss | None = field(
        default=None,
        metadata={"help": "The training loss, saved in the model's config: 'bce' (per-pixel binary cross-entropy, "
                          "CLIPSeg's and CRIS's loss) or 'bce+dice' (plus a soft Dice term per sample, for small "
                          "objects); default: the checkpoint's, 'bce' for a new segmenter. Evaluation reports BCE."},
    )

    def __post_init__(self) -> None:
        if self.loss is not None:
            _check_choice("loss", self.loss, SEGMENTATION_LOSSES)
        if self.trainable is not None:
            _check_choice("trainable", self.trainable, TRAINABLE_CHOICES)
        if self.model_type is not None:
            _check_choice("model_type", self.model_type, TRAINABLE_SEGMENTER_TYPES)
        check_local_path(self.model_name_or_path)  # now, not after the data is built


@dataclass
class DataArguments:
    """Where the data comes from: refer files, a Hub (or local Parquet) dataset, or a synthetic tree.

    Exactly one source: ``data_dir`` + ``image_dir`` (``nemo_hf.load_refcoco``),
    ``hub_dataset`` (``datasets.load_dataset(hub_dataset, dataset_name)``), or
    ``synthetic_images`` > 0 (a synthetic refer tree of that many images, generated once
    into ``cache_dir``). Rows are used one per expression (``nemo_hf.per_sentence``).
    """

    dataset_name: str = field(
        default="refcoco_unc", metadata={"help": "Variant config (refcoco_unc, refcocog_umd, ...); the Hub config name."}
    )
    data_dir: str | None = field(default=None, metadata={"help": "Refer root (refcoco/, refcoco+/, refcocog/)."})
    image_dir: str | None = field(default=None, metadata={"help": "COCO train2014 images."})
    hub_dataset: str | None = field(default=None, metadata={"help": "Hub repo id or local folder of a pushed copy."})
    synthetic_images: int = field(default=0, metadata={"help": "Generate a synthetic tree of this many images."})
    synthetic_seed: int = field(default=0, metadata={"help": "Seed of the synthetic tree."})
    synthetic_image_size: list[int] = field(
        default_factory=lambda: [320, 240], metadata={"help": "Nominal width and height of the synthetic scenes."}
    )
    synthetic_object_scale: float = field(default=1.0, metadata={"help": "Multiplier of the synthetic shapes' radii."})
    synthetic_distractor_levels: list[float] = field(
        default_factory=lambda: [1.0, 1.0, 1.0, 1.0],
        metadata={"help": "Relative shares of synthetic images with 0, 1, 2 and 3+ distractors."},
    )
    synthetic_objects_per_image: list[int] = field(
        default_factory=lambda: [2, 6], metadata={"help": "Fewest and most shapes per synthetic image."})
    synthetic_same_colour_prob: float | None = field(
        default=None, metadata={"help": "Chance that same-category copies share a colour (none: the default world's "
                                        "mostly distinct colours); FAIR_WORLD uses 0.9."})
    synthetic_separated_sizes: bool = field(
        default=False, metadata={"help": "Size classes far apart and drawn equally often (FAIR_WORLD's)."})
    cache_dir: str | None = field(default=None, metadata={"help": "Cache of built datasets and synthetic trees."})
    train_split: str = "train"
    eval_splits: list[str] = field(
        default_factory=lambda: ["val"], metadata={"help": "Splits to evaluate (by train.py: after every epoch)."}
    )
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Keep the first N rows of the training split (referred objects, as stored)."}
    )
    max_eval_samples: int | None = field(default=None, metadata={"help": "Keep the first N sentences per eval split."})
    dataloader_num_workers: int = field(default=0, metadata={"help": "DataLoader worker processes (per process)."})
    verify_images: bool = field(default=True, metadata={"help": "Check every image file while building."})

    def __post_init__(self) -> None:
        # list values from a YAML config reach argparse as strings, which it leaves unconverted
        self.synthetic_image_size = [int(v) for v in self.synthetic_image_size]
        self.synthetic_distractor_levels = [float(v) for v in self.synthetic_distractor_levels]
        self.synthetic_objects_per_image = [int(v) for v in self.synthetic_objects_per_image]
        if (len(self.synthetic_image_size) != 2 or len(self.synthetic_distractor_levels) != 4
                or len(self.synthetic_objects_per_image) != 2):
            raise ValueError("synthetic_image_size takes width and height, synthetic_distractor_levels four weights, "
                             "synthetic_objects_per_image the fewest and most shapes")
        sources = {
            "data_dir/image_dir": self.data_dir is not None or self.image_dir is not None,
            "hub_dataset": self.hub_dataset is not None,
            "synthetic_images": self.synthetic_images > 0,
        }
        chosen = [name for name, given in sources.items() if given]
        if len(chosen) != 1:
            hint = ""
            if "synthetic_images" in chosen and len(chosen) > 1:  # a config's synthetic source stays on under flags
                hint = (f"; synthetic_images={self.synthetic_images} (e.g. from a config such as "
                        "tiny_synthetic.yaml) is a source too: add --synthetic_images 0 to use the other one")
            raise ValueError(
                "give exactly one data source: --data_dir and --image_dir (refer files + COCO images), "
                f"--hub_dataset, or --synthetic_images N; got {chosen or 'none'}{hint}"
            )
        if chosen == ["data_dir/image_dir"] and (self.data_dir is None or self.image_dir is None):
            raise ValueError("--data_dir (the refer root) and --image_dir (COCO train2014) go together")
        if self.synthetic_images < 0 or self.dataloader_num_workers < 0:
            raise ValueError("synthetic_images and dataloader_num_workers must be >= 0")


@dataclass
class AugmentationArguments:
    """Which augmentation trains the model, and the CLIP that mines NeMo's negatives.

    Every other knob of NeMo is a :class:`~nemo_hf.nemo.settings.NeMoSettings` field (its own
    flag). Evaluation never augments.
    """

    augmentation: Literal["none", "random", "nemo"] = field(
        default="nemo",
        metadata={"help": "'none' (the ablation baseline: NeMo with mosaic_prob 0), 'random' mosaics (random_share "
                          "1, no CLIP) or 'nemo' (negatives mined with clip_model, or carried by the rows)."},
    )
    clip_model: str = field(
        default="openai/clip-vit-base-patch16",
        metadata={"help": "NeMo only: CLIP for mining (Hub id, folder or shipped name such as 'nemo-hf/synthetic-clip')."},
    )

    def __post_init__(self) -> None:
        _check_choice("augmentation", self.augmentation, ("none", "random", "nemo"))
        if self.augmentation == "nemo":
            check_local_path(self.clip_model)


@dataclass
class TrainArguments:
    """The optimisation, checkpointing and logging of a run."""

    output_dir: str = field(
        default="outputs/clipseg-refcoco",
        metadata={"help": "The run's folder: the model in final/, the training state in checkpoints/ and logs/."},
    )
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Replace the run already in output_dir (its final/, checkpoints/, logs/)."}
    )
    seed: int = 42
    num_train_epochs: int = 10
    max_train_steps: int | None = field(default=None, metadata={"help": "Stop after N optimizer steps (overrides epochs)."})
    train_batch_size: int = field(
        default=32,
        metadata={"help": "Samples per micro-batch over ALL processes (split between them): a run gives the "
                          "same model on 1 or N processes."},
    )
    eval_batch_size: int = field(default=32, metadata={"help": "Samples per eval batch over all processes."})
    gradient_accumulation_steps: int = 1
    learning_rate: float = field(default=1e-4, metadata={"help": "Peak learning rate of the decoder."})
    text_encoder_learning_rate: float | None = field(
        default=None, metadata={"help": "Peak learning rate of the text encoder (trainable=decoder+text or all); "
                                        "default: learning_rate."}
    )
    vision_encoder_learning_rate: float | None = field(
        default=None, metadata={"help": "Peak learning rate of the vision encoder (trainable=all); "
                                        "default: text_encoder_learning_rate."}
    )
    weight_decay: float = 1e-4
    lr_scheduler_type: str = field(
        default="cosine",
        metadata={"help": f"transformers.get_scheduler name, or '{MULTISTEP}' (the rate times lr_decay after each "
                          "epoch of lr_milestones: CRIS's schedule)."},
    )
    lr_milestones: list[int] = field(
        default_factory=list, metadata={"help": f"'{MULTISTEP}': epochs after which the rate is decayed."}
    )
    lr_decay: float = field(default=0.1, metadata={"help": f"'{MULTISTEP}': factor applied at each milestone."})
    num_warmup_steps: int = 0
    max_grad_norm: float = 1.0
    mixed_precision: Literal["auto", "no", "fp16", "bf16"] = field(
        default="auto", metadata={"help": "'auto': bf16 on GPUs that support it, else fp16 on GPU, 'no' on CPU."}
    )
    checkpointing_steps: str = field(
        default="epoch", metadata={"help": "Save state every N optimizer steps, every 'epoch', or 'none'."}
    )
    checkpoints_total_limit: int | None = field(
        default=2, metadata={"help": "Keep only this run's N checkpoints of highest step."}
    )
    resume_from_checkpoint: str | None = field(
        default=None,
        metadata={"help": "A checkpoint folder, 'latest' (the newest run's last one in output_dir/checkpoints), or "
                          "'hub' (the last-checkpoint/ that hub_strategy 'checkpoint' pushed to hub_model_id)."},
    )
    push_to_hub: bool = field(
        default=False, metadata={"help": "Push the model (and, per hub_strategy, the training state) to hub_model_id."}
    )
    hub_model_id: str | None = field(
        default=None,
        metadata={"help": "The model repository, 'namespace/name' (a bare name goes to the token owner's namespace; "
                          "default: the output_dir's name there)."},
    )
    hub_private_repo: bool = field(default=False, metadata={"help": "Create the repository private."})
    hub_token: str | None = field(
        default=None,
        metadata={"help": "Token for the pushes (default: HF_TOKEN or the `hf auth login` cache); never saved."},
    )
    push_dataset_to_hub: str | None = field(
        default=None,
        metadata={"help": "Push the NeMo-mined training set (images embedded, negatives per sentence) and the "
                          "evaluation splits to this dataset repository, as config '<dataset_name>-nemo', when "
                          "training ends; load_dataset then trains with NeMo and no CLIP."},
    )
    hub_strategy: Literal["end", "every_save", "checkpoint"] = field(
        default="every_save",
        metadata={"help": "'end' (the final model only), 'every_save' (also the model at every checkpoint) or "
                          "'checkpoint' (also the training state under last-checkpoint/, for --resume_from_checkpoint hub)."},
    )
    report_to: str = field(
        default="tensorboard",
        metadata={"help": "Comma-separated Accelerate trackers besides the JSON lines log (always on); 'none'."},
    )
    logging_steps: int = 10
    eval_strategy: Literal["epoch", "steps"] = field(
        default="epoch",
        metadata={"help": "'epoch': evaluate at every epoch's end (and every eval_steps, if given); 'steps': every "
                          "eval_steps only, and once at the end of training."},
    )
    eval_steps: int | None = field(
        default=None,
        metadata={"help": "Also evaluate every N optimizer steps: the learning curve in all_results.json and logs/."},
    )

    def __post_init__(self) -> None:
        if self.eval_steps is not None and self.eval_steps < 1:
            raise ValueError(f"eval_steps must be >= 1 or none, got {self.eval_steps}")
        _check_choice("eval_strategy", self.eval_strategy, ("epoch", "steps"))
        if self.eval_strategy == "steps" and self.eval_steps is None:
            raise ValueError("eval_strategy 'steps' evaluates every eval_steps: give --eval_steps N")
        _check_choice("mixed_precision", self.mixed_precision, ("auto", "no", "fp16", "bf16"))
        _check_choice("hub_strategy", self.hub_strategy, ("end", "every_save", "checkpoint"))
        if self.push_to_hub and self.hub_strategy == "checkpoint" and self.checkpointing_steps == "none":
            raise ValueError("hub_strategy 'checkpoint' pushes the training state at every checkpoint, but "
                             "checkpointing_steps is 'none': set checkpointing_steps to N or 'epoch'")
        if self.resume_from_checkpoint == "hub" and not self.hub_model_id:
            raise ValueError("--resume_from_checkpoint hub resumes from the last-checkpoint/ of --hub_model_id: give it")
        self.lr_milestones = [int(epoch) for epoch in self.lr_milestones]  # from YAML, argparse leaves strings
        if self.lr_milestones and self.lr_scheduler_type != MULTISTEP:
            raise ValueError(f"lr_milestones {self.lr_milestones} apply to lr_scheduler_type '{MULTISTEP}' only, "
                             f"not {self.lr_scheduler_type!r}")
        if any(epoch < 1 for epoch in self.lr_milestones) or not 0.0 < self.lr_decay <= 1.0:
            raise ValueError(f"lr_milestones must be epochs >= 1 and lr_decay in (0, 1], got {self.lr_milestones} "
                             f"and {self.lr_decay}")
        if self.checkpointing_steps not in ("epoch", "none") and not (
            self.checkpointing_steps.isdigit() and int(self.checkpointing_steps) > 0
        ):
            raise ValueError(f"checkpointing_steps must be a positive integer, 'epoch' or 'none', "
                             f"got {self.checkpointing_steps!r}")
        for name in ("train_batch_size", "eval_batch_size", "gradient_accumulation_steps", "logging_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


@dataclass
class EvaluateArguments:
    """``training/eval_ris.py``: where results go and how many sample predictions to draw."""

    output_dir: str = field(default="eval_outputs", metadata={"help": "eval_results.json and predictions_*.png."})
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Replace the evaluation already in output_dir."}
    )
    eval_batch_size: int = 32
    mixed_precision: Literal["auto", "no", "fp16", "bf16"] = "auto"
    num_sample_predictions: int = field(default=8, metadata={"help": "Rows in each split's predictions PNG."})
    protocol: str = field(
        default="nemo_hf",
        metadata={"help": "How predictions are scored: 'nemo_hf' (logits bilinear to the original size, > 0.5; "
                          "empty union IoU 1; Prec@X: IoU >= X), 'cris' (CRIS.pytorch's: bicubic, > 0.35, its 'IoU' "
                          "is mIoU) or 'lavt' (LAVT-RIS's: scored at 480x480 against a nearest-resized ground "
                          "truth); see nemo_hf.metrics.protocols.", "choices": list(PROTOCOL_NAMES)},
    )

    def __post_init__(self) -> None:
        _check_choice("mixed_precision", self.mixed_precision, ("auto", "no", "fp16", "bf16"))
        _check_choice("protocol", self.protocol, PROTOCOL_NAMES)


# never written to a saved config, a log or a push: the value stays on the command line that gave it
_SECRET_FIELDS = ("hub_token",)

TRAIN_DATACLASSES = (ModelArguments, DataArguments, AugmentationArguments, NeMoSettings, TrainArguments)
EVALUATE_DATACLASSES = (ModelArguments, DataArguments, EvaluateArguments)

# names two dataclasses of one run declare for one setting: one flag fills both
SHARED_SETTINGS = {
    "seed": "Seed of the run: the new layers' initial weights, the data order and NeMo's per-sample draws.",
    "cache_dir": "Cache of built datasets, synthetic trees and NeMo's mining (embeddings, selections).",
}


def resolve_mixed_precision(choice: str) -> str:
    """``auto`` → bf16 on GPUs that have it, fp16 on other GPUs, ``no`` on CPU (where fp16 is ignored).

    >>> resolve_mixed_precision("bf16")
    'bf16'
    """
    if choice != "auto":
        return choice
    import torch

    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "no"


_ARGPARSE_KEYS = {"help", "choices", "metavar", "nargs", "required", "aliases"}


class _Parser(HfArgumentParser):
    """``HfArgumentParser`` that reads only argparse's keys of a field's metadata.

    HfArgumentParser hands all of a field's metadata to ``add_argument``; NeMoSettings'
    fields also carry their ``group``, which is the project's, not argparse's. Help texts
    are prose (cards quote them), so their ``%`` is escaped from argparse's formatting here.
    """

    @staticmethod
    def _parse_dataclass_field(parser: argparse.ArgumentParser, field: dataclasses.Field) -> None:
        metadata = {k: v for k, v in field.metadata.items() if k in _ARGPARSE_KEYS}
        if "help" in metadata:
            metadata["help"] = metadata["help"].replace("%", "%%")
        field = copy.copy(field)
        field.metadata = types.MappingProxyType(metadata)
        HfArgumentParser._parse_dataclass_field(parser, field)


def _as_flag_default(value: Any) -> Any:
    """YAML value → what argparse converts like a command-line string (lists element-wise)."""
    if value is None:
        return None
    if isinstance(value, list):
        return [str(v) for v in value]
    return str(value)


_OFF_WORDS = ("none", "null", "off")


def _or_none(convert: Callable[[str], Any]) -> Callable[[str], Any]:
    """``convert``, except that ``none``/``null``/``off`` give ``None``."""

    def parse(text: str) -> Any:
        return None if text.strip().lower() in _OFF_WORDS else convert(text)

    parse.__name__ = getattr(convert, "__name__", "value")  # argparse names it in "invalid float value"
    return parse


def _accept_off(parser: argparse.ArgumentParser, dataclass_types: Sequence[type]) -> None:
    """Let every ``X | None`` number flag take ``none``: HfArgumentParser parses them as plain ``X``.

    Without this a setting that defaults to on (``tau_image`` 0.9) cannot be turned off
    from the command line at all.
    """
    optional = set()
    for cls in dataclass_types:
        for name, hint in typing.get_type_hints(cls).items():
            args = typing.get_args(hint)
            if isinstance(hint, types.UnionType) and type(None) in args and ({int, float} & set(args)):
                optional.add(name)
    for action in parser._actions:
        if action.dest in optional and action.type is not None:
            action.type = _or_none(action.type)


def add_dataclass_flags(parser: argparse.ArgumentParser, cls: type, names: Sequence[str] | None = None) -> list[str]:
    """Add one flag per field of ``cls`` (``names`` of them, default all) to any argparse ``parser``; the names.

    The flags are typed, documented and defaulted from the fields, as ``train.py``'s are
    (``--top_k`` and ``--top-k``; ``none`` turns off an optional number). Scripts with
    their own positional arguments (``nemo_hf.dataset_tools``) take NeMo's settings this way,
    then build them with ``cls(**{name: getattr(namespace, name) for name in names})``.

    >>> import argparse
    >>> from nemo_hf.nemo.settings import NeMoSettings
    >>> parser = argparse.ArgumentParser()
    >>> added = add_dataclass_flags(parser, NeMoSettings, ["tau_text", "top_k"])
    >>> vars(parser.parse_args(["--tau-text", "0.3", "--top-k", "5"]))
    {'tau_text': 0.3, 'top_k': 5}
    """
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    chosen = list(fields) if names is None else list(names)
    hints = typing.get_type_hints(cls)
    for name in chosen:
        field = copy.copy(fields[name])
        field.type = hints[name]  # the string annotation, resolved as HfArgumentParser expects
        _Parser._parse_dataclass_field(parser, field)
    _accept_off(parser, [cls])
    return chosen


def _field_names(dataclass_types: Sequence[type]) -> list[str]:
    return [f.name for cls in dataclass_types for f in dataclasses.fields(cls) if f.init]


def _check_shared(dataclass_types: Sequence[type]) -> None:
    """Only the names of :data:`SHARED_SETTINGS` may be declared twice: any other would silently fill two fields."""
    names = _field_names(dataclass_types)
    twice = sorted({name for name in names if names.count(name) > 1} - set(SHARED_SETTINGS))
    if twice:
        raise TypeError(f"fields {twice} are declared by several of {[c.__name__ for c in dataclass_types]}; "
                        f"only {sorted(SHARED_SETTINGS)} are shared settings")


def parse_arguments(
    argv: Sequence[str] | None,
    dataclass_types: Sequence[type],
    ignored_config_keys: Sequence[str] = (),
    description: str | None = None,
) -> tuple[Any, ...]:
    """Parse ``argv`` (and the YAML file of ``--config``, if given) into ``dataclass_types``, in their order.

    A name declared by two of them (:data:`SHARED_SETTINGS`) is one flag whose value fills
    both. ``ignored_config_keys`` are YAML keys accepted and dropped, even those that name a
    field — ``eval_ris.py`` reads a training config and ignores its optimisation keys and
    its ``output_dir``. ``description`` (a script's docstring) heads ``--help`` as written,
    so its command examples keep their line breaks.
    """
    _check_shared(dataclass_types)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", type=Path)
    known, rest = pre.parse_known_args(argv)
    # transformers types dataclass_types as its own protocol; "resolve": a shared name's second
    # declaration replaces the first (same name, same type), and its help is set below
    parser = _Parser(cast(Any, dataclass_types), description=description, formatter_class=HelpFormatter,
                              conflict_handler="resolve")
    parser.add_argument("--config", type=Path, help="YAML file of arguments; command-line flags override it.")
    _accept_off(parser, dataclass_types)
    for action in parser._actions:
        if action.dest in SHARED_SETTINGS and f"--{action.dest}" in action.option_strings:
            action.help = SHARED_SETTINGS[action.dest]
    fields = set(_field_names(dataclass_types))
    if known.config is not None:
        if not known.config.is_file():
            raise FileNotFoundError(f"config file {known.config} does not exist")
        values = yaml.safe_load(known.config.read_text()) or {}
        if not isinstance(values, dict):
            raise ValueError(f"{known.config}: a config is a mapping of argument names to values")
        unknown = sorted(set(values) - fields - set(ignored_config_keys))
        if unknown:
            raise ValueError(f"{known.config}: unknown keys {unknown}; valid keys: {sorted(fields)}")
        used = {k: v for k, v in values.items() if k in fields and k not in ignored_config_keys}
        parser.set_defaults(**{k: _as_flag_default(v) for k, v in used.items()})
    namespace = vars(parser.parse_args(rest))
    return tuple(cls(**{f.name: namespace[f.name] for f in dataclasses.fields(cls) if f.init})
                 for cls in dataclass_types)


def config_values(*arguments: Any) -> dict[str, Any]:
    """All fields of the given dataclass instances as one flat mapping; secrets (``hub_token``) as None.

    What it returns is saved beside the model, logged and pushed, so a token given on the
    command line must not be in it.

    >>> config_values(TrainArguments(hub_token="hf_secret"))["hub_token"] is None
    True
    """
    values: dict[str, Any] = {}
    for instance in arguments:
        values.update(dataclasses.asdict(instance))
        values.update({name: None for name in _SECRET_FIELDS if name in values})
    return values


def save_config(path: str | Path, *arguments: Any) -> Path:
    """Write the resolved arguments as a YAML config that ``--config`` reads back."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config_values(*arguments), sort_keys=False))
    return path


@dataclass
class TrainingConfig:
    """Everything a training run is set by: one group per dataclass (see the module docstring).

    A shared setting (:data:`SHARED_SETTINGS`) must agree between its two groups, so that the
    flat YAML of :meth:`save` describes the run exactly.
    """

    model: ModelArguments
    data: DataArguments
    augmentation: AugmentationArguments
    nemo: NeMoSettings
    run: TrainArguments

    def __post_init__(self) -> None:
        pairs = {"seed": (self.nemo.seed, self.run.seed), "cache_dir": (self.nemo.cache_dir, self.data.cache_dir)}
        for name, (nemo_value, other) in pairs.items():
            if nemo_value != other:
                raise ValueError(f"{name} is one setting of the run and of NeMo (--{name}), but nemo.{name}="
                                 f"{nemo_value!r} and the run's is {other!r}: set both to one value")

    @classmethod
    def parse(cls, argv: Sequence[str] | None = None, description: str | None = None) -> TrainingConfig:
        """From command-line flags and an optional ``--config`` YAML file."""
        return cls(*parse_arguments(argv, TRAIN_DATACLASSES, description=description))

    def groups(self) -> tuple[Any, ...]:
        """The dataclass instances, in :data:`TRAIN_DATACLASSES` order."""
        return self.model, self.data, self.augmentation, self.nemo, self.run

    def to_dict(self) -> dict[str, Any]:
        """The flat mapping a saved config holds (secrets as None)."""
        return config_values(*self.groups())

    def save(self, path: str | Path) -> Path:
        """Write the YAML config that ``--config`` reads back."""
        return save_config(path, *self.groups())


@dataclass
class EvaluationConfig:
    """Everything an evaluation run is set by: the model, the data, and where results go."""

    model: ModelArguments
    data: DataArguments
    evaluation: EvaluateArguments

    @classmethod
    def parse(cls, argv: Sequence[str] | None = None, description: str | None = None) -> EvaluationConfig:
        """From flags and an optional ``--config`` (a training config works: its training-only keys are ignored)."""
        training_only = set(_field_names(TRAIN_DATACLASSES)) - set(_field_names(EVALUATE_DATACLASSES))
        ignored = sorted(training_only | {"output_dir", "overwrite_output_dir"})
        return cls(*parse_arguments(argv, EVALUATE_DATACLASSES, ignored_config_keys=ignored, description=description))
