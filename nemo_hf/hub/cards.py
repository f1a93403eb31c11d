"""Cards: the model card of a training run, dataset cards, and the text that says where a model came from.

Rendered from the Jinja templates of the repository's ``model_cards/`` (inside an installed
wheel: ``nemo_hf/model_cards/``). A model card is assembled from named parts (the
architecture's facts from :mod:`nemo_hf.modeling.registry`, NeMo's settings by their
:class:`~nemo_hf.nemo.settings.NeMoSettings` groups, the data, the reproduce command, the
limitations) so each part can be read and tested alone.

>>> model_source("nemo-hf/synthetic-clip")["source"]
'shipped'
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, HfApi, ModelCardData
from huggingface_hub.errors import HfHubHTTPError
from jinja2 import Environment, FileSystemLoader, StrictUndefined, Template

from nemo_hf.data.configs import get_variant
from nemo_hf.metrics.ris import DEFAULT_THRESHOLDS, precision_key
from nemo_hf.modeling.registry import architecture_of_class
from nemo_hf.nemo.settings import settings_in_group
from nemo_hf.pretrained import resolve_pretrained
from nemo_hf.version import __version__

__all__ = ["METRIC_NAMES", "mining_summary", "model_source", "render_dataset_card", "render_model_card", "template"]

_PACKAGE = Path(__file__).resolve().parents[1]
# an installed wheel carries the templates inside the package; a source checkout at its top level
_TEMPLATE_DIRS = [folder for folder in (_PACKAGE / "model_cards", _PACKAGE.parent / "model_cards") if folder.is_dir()]
_TEMPLATES = Environment(loader=FileSystemLoader(_TEMPLATE_DIRS), undefined=StrictUndefined, keep_trailing_newline=True)


def template(name: str) -> Template:
    """The card template ``name`` (``model_card.md``, ``dataset_card.md``, ``mosaics_card.md``)."""
    if not _TEMPLATE_DIRS:
        raise FileNotFoundError(
            f"no card templates: neither {_PACKAGE / 'model_cards'} (an installed wheel) nor "
            f"{_PACKAGE.parent / 'model_cards'} (a source checkout) exists; reinstall nemo_hf"
        )
    return _TEMPLATES.get_template(name)


def render_dataset_card(
    *, repo_id: str, config_name: str, stats: Mapping[str, str], previous: str | None = None,
    **fields: Any,
) -> str:
    """Render the dataset card body; keep other configs' stats sections from ``previous``.

    ``fields``: ``pretty_name``, ``summary``, ``published``, ``license``, ``citation``,
    ``generalized`` and ``synthetic`` (default False: a build of a real release;
    :func:`~nemo_hf.data.configs.card_fields` gives them all).
    """
    merged = dict(_stats_sections(previous or ""))
    merged.update(stats)
    return template("dataset_card.md").render(repo_id=repo_id, config_name=config_name, stats=dict(sorted(merged.items())),
                                              version=__version__, **{"synthetic": False, **fields})


_AUGMENTATION_NOTE = {
    "none": "no mosaics (the baseline)",
    "random": "mosaics of the image and random negatives (no CLIP)",
    "nemo": "NeMo mosaics: the image tiled with negatives a CLIP ranked close to the expression",
}
METRIC_NAMES = {
    "overall_iou": "oIoU (overall IoU: sum of intersections / sum of unions)",
    "mean_iou": "mIoU (mean of per-expression IoU)",
    **{precision_key(x): f"Prec@{x:g} (share of expressions with IoU >= {x:g})" for x in DEFAULT_THRESHOLDS},
}


def model_source(name: str, revision: str | None = None) -> dict[str, str | None]:
    """Where a model named in a config comes from, for cards: ``source`` and the ``commit`` a Hub revision is at.

    ``source`` is ``"shipped"`` (inside nemo_hf), ``"folder"`` (a local path) or ``"hub"``;
    a Hub revision resolves to its commit now, or stays unresolved (``commit`` None) offline.

    >>> model_source("nemo-hf/synthetic-clip")["source"]
    'shipped'
    """
    if resolve_pretrained(name) != name:
        return {"name": name, "source": "shipped", "revision": None, "commit": None}
    if Path(name).expanduser().exists():
        return {"name": name, "source": "folder", "revision": None, "commit": None}
    try:
        commit: str | None = HfApi().resolve_revision(name, revision=revision).resolved
    except (OSError, ValueError, HfHubHTTPError):  # offline, or the card is written where the Hub is out of reach
        commit = None
    return {"name": name, "source": "hub", "revision": revision, "commit": commit}


def _source_text(source: Mapping[str, Any]) -> str:
    if source["source"] == "shipped":
        return f"shipped inside nemo_hf {__version__} (`nemo_hf.pretrained`)"
    if source["source"] == "folder":
        return "a local folder, not on the Hub"
    commit = f"commit `{source['commit']}`" if source.get("commit") else "its commit unresolved (the Hub was out of reach)"
    return f"from the Hub, revision `{source.get('revision') or 'main'}`, {commit}"


def _dataset_facts(config: Mapping[str, Any]) -> tuple[str, str, str, str | None]:
    """``(model-index dataset type, its name, the card's sentence, a note for reproducing)``."""
    name = config["dataset_name"]
    if config.get("hub_dataset"):
        hub = config["hub_dataset"]
        return hub, f"{hub} ({name})", f"`{hub}`, config `{name}`", None
    if config.get("synthetic_images"):
        text = (f"the nemo_hf synthetic referring world as `{name}` ({config['synthetic_images']} images, seed "
                f"{config.get('synthetic_seed', 0)}; `nemo_hf.synthetic`)")
        return "nemo_hf-synthetic", f"synthetic {name}", text, None
    folder = get_variant(name).folder
    note = ("The configuration names the refer files and COCO images of the training machine (`data_dir`, "
            "`image_dir`): add `--data_dir` and `--image_dir` with your copies.")
    return folder, f"{folder} ({name})", f"`{name}` from the refer files and COCO train2014 images", note


def _eval_results(eval_results: Mapping[str, Mapping[str, Any]], dataset_type: str, dataset_name: str,
                  config_name: str) -> list[EvalResult]:
    return [
        EvalResult(task_type="image-segmentation", task_name="Referring image segmentation",
                   dataset_type=dataset_type, dataset_name=dataset_name, dataset_config=config_name,
                   dataset_split=split, metric_type=key, metric_name=METRIC_NAMES[key], metric_value=float(r[key]))
        for split, r in eval_results.items() for key in METRIC_NAMES if key in r
    ]


def _nemo_settings(config: Mapping[str, Any], augmentation: str) -> dict[str, Any]:
    """The NeMo settings a card lists: the mosaic group for any mosaics, the mining group for NeMo's."""
    if augmentation == "none":
        return {}
    groups = ["mosaic"] + (["mining"] if augmentation == "nemo" else [])
    names = [f.name for group in groups for f in settings_in_group(group)]
    return {name: "off" if config[name] is None else config[name] for name in names if name in config}


def _mining_text(results: Mapping[str, Any]) -> str:
    clip = results.get("mining_clip")
    if clip:
        return f"Negatives mined with CLIP `{clip['name']}`: {_source_text(clip)}."
    return ("The training rows came with their negatives mined (the dataset's card, or the code that mined them, "
            "says how); the mining settings above were not applied.")


def _reproduce(model_id: str) -> str:
    in_folder = Path(model_id).expanduser().exists()
    config_path = f"{model_id}/train_config.yaml" if in_folder else "reproduce/train_config.yaml"
    commands = [] if in_folder else [f"hf download {model_id} train_config.yaml --local-dir reproduce"]
    commands.append(f"accelerate launch training/train.py --config {config_path} --output_dir reproduce/run "
                    "--push_to_hub false")
    return "\n".join(commands)


def _limitations(dataset_type: str, dataset_name: str, trainable: str) -> list[str]:
    limitations = [
        f"It knows what `{dataset_name}` shows: one object per expression, English expressions in the style of "
        "that dataset; other domains, languages and multi-object expressions are untested.",
        "The metrics above are this run's, on the splits named; they are not comparable with the paper's tables "
        "unless the model, data and budget match (the paper reports NeMo with LAVT, CRIS, ReLA, CGFormer and VPD).",
    ]
    if dataset_type == "nemo_hf-synthetic":
        limitations.insert(0, "Trained on synthetic scenes of coloured shapes: a pipeline and method check, not a "
                              "model for photographs.")
    if trainable in ("decoder", "decoder+text"):
        limitations.append("The CLIP backbone (vision encoder at least) was frozen: the model inherits CLIP's "
                           "blind spots and biases.")
    return limitations


def _architecture_facts(architecture: str, model_id: str, trainable: str) -> dict[str, Any]:
    """What the card says of the architecture (:mod:`nemo_hf.modeling.registry`); generic words for an unknown one."""
    arch = architecture_of_class(architecture)
    if arch is None:
        return {"trainable_text": trainable, "trainable_note": None, "loading_snippet": None, "citation": None,
                "tag": "custom"}
    return {"trainable_text": arch.trainable_text(trainable), "trainable_note": arch.trainable_notes.get(trainable),
            "loading_snippet": arch.loading_snippet.format(model_id=model_id), "citation": arch.citation,
            "tag": arch.hub_tag}


def render_model_card(
    results: Mapping[str, Any], config: Mapping[str, Any], *, model_id: str,
    architecture: str = "CLIPSegForImageSegmentation", datasets: Sequence[str] = (),
) -> str:
    """A model card (YAML metadata with ``model-index`` + prose) from a training run's results and config.

    ``results`` is what ``all_results.json`` holds, ``config`` the run's resolved arguments
    (``train_config.yaml``), ``model_id`` the repository id (or folder) the usage snippets
    load. ``architecture`` is the saved model's class (``config.json``): its entry in the
    registry gives what was trained, how to load it and what to cite. ``datasets`` are Hub
    datasets besides ``hub_dataset`` to list (the mined training set a run pushed). The card
    states what was trained, on what data and augmentation (with NeMo's settings and the
    mining CLIP's commit), how it was evaluated and scored per split, how to reproduce it,
    and its limits.

    >>> results = {"model": "nemo-hf/synthetic-clip", "trainable": "decoder", "trained_parameters": 10,
    ...            "total_parameters": 100, "augmentation": "none", "train_samples": 8, "train_epochs": 1.0,
    ...            "train_steps": 2, "num_processes": 1, "mixed_precision": "no", "eval": {"val": {
    ...            "count": 4, "overall_iou": 0.5, "mean_iou": 0.4, "precision@0.5": 0.5}}}
    >>> config = {"dataset_name": "refcoco_unc", "synthetic_images": 40, "augmentation": "none", "seed": 0,
    ...           "learning_rate": 1e-3, "train_batch_size": 8, "lr_scheduler_type": "cosine", "loss": "bce"}
    >>> card = render_model_card(results, config, model_id="me/model")
    >>> 'model="me/model"' in card, "**Trained: the CLIPSeg decoder only**" in card
    (True, True)
    >>> "| val | 4 | 0.5000 | 0.4000 | 0.5000 | — |" in card
    True
    """
    dataset_type, dataset_name, dataset_text, data_note = _dataset_facts(config)
    augmentation = results["augmentation"]
    facts = _architecture_facts(architecture, model_id, results["trainable"])
    base = results.get("model_source") or model_source(results["model"])
    text = template("model_card.md").render(
        title=model_id.rstrip("/").split("/")[-1], version=__version__, model_id=model_id,
        loading_snippet=facts["loading_snippet"], architecture_citation=facts["citation"],
        base_model=base["name"], base_revision=base.get("revision"), base_source=_source_text(base),
        trainable_text=facts["trainable_text"], trainable_note=facts["trainable_note"],
        trained_parameters=f"{results['trained_parameters']:,}", total_parameters=f"{results['total_parameters']:,}",
        dataset_text=dataset_text, train_samples=results["train_samples"], augmentation=augmentation,
        augmentation_note=_AUGMENTATION_NOTE.get(augmentation, augmentation),
        nemo_settings=_nemo_settings(config, augmentation),
        mining=_mining_text(results) if augmentation == "nemo" else None,
        epochs=f"{results['train_epochs']:g}", steps=results["train_steps"],
        batch=config.get("train_batch_size"), num_processes=results["num_processes"],
        learning_rate=config.get("learning_rate"), scheduler=config.get("lr_scheduler_type"),
        warmup=config.get("num_warmup_steps", 0), weight_decay=config.get("weight_decay"),
        loss=results.get("loss", config.get("loss")), seed=config.get("seed"),
        mixed_precision=results["mixed_precision"], eval=results["eval"],
        thresholds=[f"{x:g}" for x in DEFAULT_THRESHOLDS], reproduce=_reproduce(model_id), data_note=data_note,
        limitations=_limitations(dataset_type, dataset_name, results["trainable"]),
    )
    hub_datasets = [d for d in (config.get("hub_dataset"), *datasets) if d and not Path(d).expanduser().exists()]
    metadata = ModelCardData(
        library_name="transformers", pipeline_tag="image-segmentation",
        tags=["referring-image-segmentation", "nemo-augmentation", "nemo_hf", facts["tag"]],
        base_model=base["name"] if base["source"] == "hub" else None,
        datasets=hub_datasets or None,
        model_name=model_id,
        eval_results=_eval_results(results["eval"], dataset_type, dataset_name, config["dataset_name"]) or None,
    )
    return f"---\n{metadata.to_yaml()}\n---\n{text}"


def _stats_sections(card: str) -> dict[str, str]:
    pattern = re.compile(r"<!-- stats:(\S+) -->\n## \1: this build\n\n(.*?)\n<!-- /stats:\1 -->", re.S)
    return {m.group(1): m.group(2).strip() for m in pattern.finditer(card)}


def mining_summary(
    *, settings: Mapping[str, Any], clip: Mapping[str, Any] | None, seed: int | None, report: Any = None,
    picture: str | None = None, mined_split: str = "train", pool_split: str = "train", columns: bool = True,
) -> str:
    """Markdown for a mined config's card: how its negatives were chosen, how hard they are, a picture.

    ``settings`` hold ``tau_image``, ``tau_text``, ``top_k``, ``grid`` (other keys are
    ignored); ``clip`` is :func:`model_source` of the mining CLIP, or None when the rows came
    mined (the source's card then tells how); ``report`` a
    :class:`~nemo_hf.mining.report.DifficultyReport`; ``picture`` a path in the repository;
    ``mined_split`` the split that carries negatives, chosen among the images of ``pool_split``;
    ``columns`` whether to describe the negative columns (rows that carry them).

    >>> text = mining_summary(settings={"tau_image": 0.9, "tau_text": None, "top_k": 20, "grid": 2},
    ...                       clip=model_source("nemo-hf/synthetic-clip"), seed=3)
    >>> "`nemo-hf/synthetic-clip`" in text, "`tau_image` 0.9" in text, "seed 3" in text
    (True, True, True)
    """
    tau = {name: "off" if settings.get(name) is None else f"{settings[name]:g}"
           for name in ("tau_image", "tau_text", "tau_own") if name in settings}
    lines = [] if not columns else [
        "**NeMo negatives**: `negative_image_ids`, `negative_scores` (CLIP text→image cosine) and "
        f"`negative_fallback` hold one entry per sentence of the `{mined_split}` split, best first; the ids are "
        f"`image_id`s of the `{pool_split}` split, the pool they were mined from. Only `{mined_split}` is mined "
        "(evaluation never uses mosaics).",
        "",
    ]
    if clip is None:
        lines.append("The negatives are those the source rows carried (mined before; the source dataset's card "
                     "names the CLIP and settings)" + (f"; seed {seed}." if seed is not None else "."))
    else:
        lines.append(f"Mined with CLIP `{clip['name']}` ({_source_text(clip)}): "
                     + "".join(f"`{name}` {value}, " for name, value in tau.items())
                     + f"`top_k` {settings.get('top_k')}, grid {settings.get('grid')}×{settings.get('grid')}"
                     + (f", seed {seed}" if seed is not None else "") + ".")
    if report is not None:
        chosen, candidates = report.chosen_text_quantiles.get("50%"), report.candidate_text_quantiles.get("50%")
        lines += ["", f"Difficulty: {report.n_sentences:,} sentences, {report.n_pool:,} pool images; "
                      f"{report.n_fallback:,} sentences fell back (fewer than {report.needed} candidates survived τ); "
                      f"median text→image cosine of the chosen negatives {chosen} against {candidates} for all "
                      "candidates."]
    if picture is not None:
        lines += ["", f"![NeMo samples drawn from this config]({picture})"]
    return "\n".join(lines)


