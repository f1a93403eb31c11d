"""Publishing to the Hub (or a local folder laid out like one): Parquet shards and cards.

- datasets: :func:`write_parquet`, :func:`push_dataset` (a RefCOCO-family config),
  :func:`push_mined_dataset` (rows with NeMo's negatives, :func:`mining_summary` on the
  card), :func:`push_mosaics` (mosaics drawn for N epochs);
- models: :func:`render_model_card` (``model-index`` results, provenance with
  :func:`model_source`); the pushes themselves are :mod:`nemo_hf.training.hub_push`'s.

Cards are rendered from the Jinja templates of the repository's ``model_cards/`` (inside an
installed wheel: ``nemo_hf/model_cards/``). A local build references COCO files by path;
everything that leaves the machine embeds the bytes first, so the copy is self-contained.
Writes go to a temporary folder that is renamed into place only when complete.

>>> import datasets, tempfile
>>> ds = datasets.Dataset.from_dict({"x": [1, 2]})
>>> out = write_parquet(datasets.DatasetDict({"train": ds}), tempfile.mkdtemp(), "demo")
>>> sorted(p.name for p in (out / "demo").iterdir())
['train-00000-of-00001.parquet']
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import datasets
import transformers
from datasets.table import embed_table_storage
from huggingface_hub import CommitOperationAdd, DatasetCard, EvalResult, HfApi, ModelCardData, hf_hub_download
from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, RepositoryNotFoundError
from jinja2 import Environment, FileSystemLoader, StrictUndefined, Template

from . import __version__
from .data.configs import VARIANTS, card_fields, get_variant
from .data.load import stats_table
from .metrics import DEFAULT_THRESHOLDS
from .metrics.ris import precision_key
from .pretrained import resolve_pretrained

_PACKAGE = Path(__file__).resolve().parent
# an installed wheel carries the templates inside the package; a source checkout at its top level
_TEMPLATE_DIRS = [folder for folder in (_PACKAGE / "model_cards", _PACKAGE.parent / "model_cards") if folder.is_dir()]
_TEMPLATES = Environment(loader=FileSystemLoader(_TEMPLATE_DIRS), undefined=StrictUndefined, keep_trailing_newline=True)


def _template(name: str) -> Template:
    if not _TEMPLATE_DIRS:
        raise FileNotFoundError(
            f"no card templates: neither {_PACKAGE / 'model_cards'} (an installed wheel) nor "
            f"{_PACKAGE.parent / 'model_cards'} (a source checkout) exists; reinstall nemo_hf"
        )
    return _TEMPLATES.get_template(name)
ROWS_PER_SHARD = 5000


def embed_external_files(ds: datasets.Dataset) -> datasets.Dataset:
    """Replace image paths by the files' bytes (as ``push_to_hub`` does before upload)."""
    return ds.with_format("arrow").map(embed_table_storage, batched=True, desc="embedding images").with_format(None)


def write_parquet(
    ds: datasets.DatasetDict, out_dir: str | Path, config_name: str,
    card: str | None = None, rows_per_shard: int = ROWS_PER_SHARD,
) -> Path:
    """Write ``{out_dir}/{config}/{split}-0000i-of-0000n.parquet`` (+ ``README.md``) atomically.

    The layout is the Hub's, so ``load_dataset("parquet", data_files=…)`` and a later upload
    of the folder both work. An existing ``{out_dir}/{config}`` is replaced only after the
    new one is complete.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{config_name}-", dir=out_dir))
    try:
        for split, part in ds.items():
            embedded = embed_external_files(part)
            num_shards = max(1, -(-len(embedded) // rows_per_shard))
            for index in range(num_shards):
                shard = embedded.shard(num_shards, index, contiguous=True)
                shard.to_parquet(str(staging / f"{split}-{index:05d}-of-{num_shards:05d}.parquet"))
        target = out_dir / config_name
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _write_local_card(out_dir, config_name, list(ds), card)
    return out_dir


def _write_local_card(out_dir: Path, config_name: str, splits: list[str], body: str | None) -> None:
    """README with a Hub-style ``configs:`` block so ``load_dataset(out_dir, config)`` works."""
    readme = out_dir / "README.md"
    card = DatasetCard(readme.read_text() if readme.exists() else "---\n{}\n---\n")
    configs = [c for c in (card.data.get("configs") or []) if c.get("config_name") != config_name]
    configs.append({
        "config_name": config_name,
        "data_files": [{"split": s, "path": f"{config_name}/{s}-*.parquet"} for s in splits],
    })
    card.data["configs"] = sorted(configs, key=lambda c: c["config_name"])
    if body is not None:
        card.text = body
    readme.write_text(str(card))


def render_dataset_card(
    *, repo_id: str, config_name: str, stats: Mapping[str, str], previous: str | None = None,
    **fields: Any,
) -> str:
    """Render the dataset card body; keep other configs' stats sections from ``previous``.

    ``fields``: ``pretty_name``, ``summary``, ``published``, ``license``, ``citation``,
    ``generalized``.
    """
    merged = dict(_stats_sections(previous or ""))
    merged.update(stats)
    template = _template("dataset_card.md")
    return template.render(repo_id=repo_id, config_name=config_name, stats=dict(sorted(merged.items())),
                           version=__version__, **fields)


# a model class -> what its new layers are called and its Hub tag
_ARCHITECTURES = {
    "CLIPSegForImageSegmentation": ("the CLIPSeg decoder", "clipseg"),
    "CRISForReferringSegmentation": ("CRIS's neck, decoder and projector", "cris"),
}
_TRAINABLE_TEXT = {
    "decoder": "{new} only",
    "decoder+text": "{new} and CLIP's text encoder",
    "all": "the whole model: {new} and both CLIP encoders",
}
_TRAINABLE_NOTE = {  # CLIPSeg's: transformers runs its CLIP under no_grad
    "decoder": "`transformers` runs CLIPSeg's CLIP backbone without gradients, so the vision and text encoders "
               "stay as they were.",
    "decoder+text": "`transformers` runs CLIPSeg's vision encoder without gradients, so it stays as it was.",
}
_AUGMENTATION_NOTE = {
    "none": "no mosaics (the baseline)",
    "random": "mosaics of the image and random negatives (no CLIP)",
    "nemo": "NeMo mosaics: the image tiled with negatives a CLIP ranked close to the expression",
}
_MOSAIC_KEYS = ("mosaic_prob", "grid", "position_aware", "cross_point_jitter", "blur_negatives", "mosaic_size")
_MINING_KEYS = ("tau_image", "tau_text", "tau_own", "top_k", "random_share", "warmup_epochs")
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


def render_model_card(
    results: Mapping[str, Any], config: Mapping[str, Any], *, model_id: str,
    architecture: str = "CLIPSegForImageSegmentation", datasets: Sequence[str] = (),
) -> str:
    """A model card (YAML metadata with ``model-index`` + prose) from a training run's results and config.

    ``results`` is what ``all_results.json`` holds, ``config`` the run's resolved arguments
    (``train_config.yaml``), ``model_id`` the repository id (or folder) the usage snippets
    load. ``architecture`` is the saved model's class (``config.json``); when ``transformers``
    has it, the card shows how to load the model without nemo_hf. ``datasets`` are Hub datasets besides ``hub_dataset`` to
    list (the mined training set a run pushed). The card states what was trained, on
    what data and augmentation (with NeMo's settings and the mining CLIP's commit), how it
    was evaluated and scored per split, how to reproduce it, and its limits.

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
    nemo_settings: dict[str, Any] = {}
    if augmentation != "none":
        keys = _MOSAIC_KEYS + (_MINING_KEYS if augmentation == "nemo" else ())
        nemo_settings = {key: "off" if config[key] is None else config[key] for key in keys if key in config}
    mining = None
    if augmentation == "nemo":
        clip = results.get("mining_clip")
        mining = (f"Negatives mined with CLIP `{clip['name']}`: {_source_text(clip)}." if clip else
                  "The training rows came with their negatives mined (the dataset's card names the CLIP); "
                  "`tau_*` and `top_k` above were not applied.")
    base = results.get("model_source") or model_source(results["model"])
    in_folder = Path(model_id).expanduser().exists()
    config_path = f"{model_id}/train_config.yaml" if in_folder else "reproduce/train_config.yaml"
    reproduce = [] if in_folder else [f"hf download {model_id} train_config.yaml --local-dir reproduce"]
    reproduce.append(f"accelerate launch training/train.py --config {config_path} --output_dir reproduce/run "
                     "--push_to_hub false")
    limitations = [
        f"It knows what `{dataset_name}` shows: one object per expression, English expressions in the style of "
        "that dataset; other domains, languages and multi-object expressions are untested.",
        "The metrics above are this run's, on the splits named; they are not comparable with the paper's tables "
        "unless the model, data and budget match (the paper reports NeMo with LAVT, CRIS, ReLA, CGFormer and VPD).",
    ]
    if dataset_type == "nemo_hf-synthetic":
        limitations.insert(0, "Trained on synthetic scenes of coloured shapes: a pipeline and method check, not a "
                              "model for photographs.")
    if results["trainable"] in ("decoder", "decoder+text"):
        limitations.append("The CLIP backbone (vision encoder at least) was frozen: the model inherits CLIP's "
                           "blind spots and biases.")
    new_layers, tag = _ARCHITECTURES.get(architecture, ("its new layers", "custom"))
    template = _template("model_card.md")
    text = template.render(
        title=model_id.rstrip("/").split("/")[-1], version=__version__, model_id=model_id,
        plain_class=architecture if hasattr(transformers, architecture) else None,
        cite_clipseg=architecture.startswith("CLIPSeg"), cite_cris=architecture.startswith("CRIS"),
        base_model=base["name"], base_revision=base.get("revision"), base_source=_source_text(base),
        trainable_text=_TRAINABLE_TEXT.get(results["trainable"], results["trainable"]).format(new=new_layers),
        trainable_note=_TRAINABLE_NOTE.get(results["trainable"]) if tag == "clipseg" else None,
        trained_parameters=f"{results['trained_parameters']:,}", total_parameters=f"{results['total_parameters']:,}",
        dataset_text=dataset_text, train_samples=results["train_samples"], augmentation=augmentation,
        augmentation_note=_AUGMENTATION_NOTE.get(augmentation, augmentation), nemo_settings=nemo_settings,
        mining=mining, epochs=f"{results['train_epochs']:g}", steps=results["train_steps"],
        batch=config.get("train_batch_size"), num_processes=results["num_processes"],
        learning_rate=config.get("learning_rate"), scheduler=config.get("lr_scheduler_type"),
        warmup=config.get("num_warmup_steps", 0), weight_decay=config.get("weight_decay"), loss=config.get("loss"),
        seed=config.get("seed"), mixed_precision=results["mixed_precision"], eval=results["eval"],
        thresholds=[f"{x:g}" for x in DEFAULT_THRESHOLDS], reproduce="\n".join(reproduce), data_note=data_note,
        limitations=limitations,
    )
    hub_datasets = [d for d in (config.get("hub_dataset"), *datasets) if d and not Path(d).expanduser().exists()]
    metadata = ModelCardData(
        library_name="transformers", pipeline_tag="image-segmentation",
        tags=["referring-image-segmentation", "nemo-augmentation", "nemo_hf", tag],
        base_model=base["name"] if base["source"] == "hub" else None,
        datasets=hub_datasets or None,
        model_name=model_id,
        eval_results=_eval_results(results["eval"], dataset_type, dataset_name, config["dataset_name"]) or None,
    )
    return f"---\n{metadata.to_yaml()}\n---\n{text}"


def _stats_sections(card: str) -> dict[str, str]:
    pattern = re.compile(r"<!-- stats:(\S+) -->\n## \1: this build\n\n(.*?)\n<!-- /stats:\1 -->", re.S)
    return {m.group(1): m.group(2).strip() for m in pattern.finditer(card)}


def push_dataset(
    ds: datasets.DatasetDict, repo_id: str, config_name: str, card_fields: Mapping[str, Any],
    stats: Mapping[str, str], private: bool | None = None, token: str | None = None,
    files: Mapping[str, Path] | None = None,
) -> None:
    """Push every split of ``ds`` as config ``config_name`` and update the card's body.

    ``push_to_hub`` writes the YAML ``configs:`` block (merging configs pushed earlier);
    the card keeps that metadata and replaces only the prose, keeping the stats sections of
    the other configs. ``files`` (repository path → local file, e.g. a picture the card
    shows) are committed before the card.
    """
    def body(previous: str) -> str:
        return render_dataset_card(repo_id=repo_id, config_name=config_name, stats=stats, previous=previous,
                                   **card_fields)

    _push_config(ds, repo_id, config_name, body, private=private, token=token, files=files)


def _push_config(
    ds: datasets.DatasetDict, repo_id: str, config_name: str, body: Callable[[str], str], *,
    private: bool | None, token: str | None, files: Mapping[str, Path] | None,
) -> None:
    """The splits as ``config_name``, then ``files``, then the card: its YAML kept, its prose ``body(previous)``."""
    for split, part in ds.items():
        part.push_to_hub(repo_id, config_name=config_name, split=split, private=private, token=token,
                         commit_message=f"Add {config_name}/{split} (nemo_hf {__version__})")
    if files:
        operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(path)) for name, path in files.items()]
        HfApi(token=token).create_commit(repo_id, operations, repo_type="dataset",
                                         commit_message=f"Add {', '.join(files)}")
    readme = _download_readme(repo_id, token)
    card = DatasetCard(readme or "---\n{}\n---\n")
    card.text = body(card.text)
    card.push_to_hub(repo_id, repo_type="dataset", token=token,
                     commit_message=f"Update dataset card for {config_name}")


def push_mosaics(
    ds: datasets.Dataset, repo_id: str, config_name: str, *, source: str, source_config: str | None, split: str,
    objects: int, sentences: int, settings: Mapping[str, Any], mining: str, picture: Path,
    private: bool | None = None, token: str | None = None,
) -> None:
    """Push drawn mosaics (one row per expression per epoch, with ``epoch``) as ``config_name``'s ``train``.

    The card (``model_cards/mosaics_card.md``) says where they came from, with which NeMo
    settings (``settings``) and negatives (``mining``: :func:`mining_summary`), counts per
    epoch and kind, and shows ``picture``, committed as ``<config_name>/samples.png``.
    """
    counts: dict[int, Counter[str]] = {}
    for epoch, kind in zip(ds["epoch"], ds["mosaic_kind"]):
        counts.setdefault(int(epoch), Counter())[kind] += 1
    shown = f"{config_name}/samples.png"

    def body(previous: str) -> str:
        return _template("mosaics_card.md").render(
            config_name=config_name, repo_id=repo_id, version=__version__, epochs=len(counts),
            size=settings.get("size"), source=source, source_config=source_config, split=split, objects=objects,
            sentences=sentences, settings=settings, mining=mining, counts=dict(sorted(counts.items())),
            picture=shown,
        )

    _push_config(datasets.DatasetDict({"train": ds}), repo_id, config_name, body, private=private, token=token,
                 files={shown: picture})


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


def push_mined_dataset(
    ds: datasets.DatasetDict, repo_id: str, config_name: str, *, source_config: str, mining: str,
    picture: Path | None = None, private: bool | None = None, token: str | None = None,
) -> None:
    """Push a NeMo-mined training set as ``config_name``: images embedded, the card saying how it was mined.

    ``ds`` holds the mined ``train`` split (and evaluation splits, whose negative columns
    are empty); ``source_config`` is the RefCOCO-family config it was built from (for the
    card's summary, sizes, license and citations); ``mining`` is :func:`mining_summary`'s
    text, whose picture reference is ``<config_name>/samples.png`` when ``picture`` is given.
    ``load_dataset(repo_id, config_name)`` then trains with NeMo with no CLIP at all.
    """
    fields = dict(card_fields(source_config)) if source_config in VARIANTS else {
        "pretty_name": config_name, "summary": "", "published": "Not a RefCOCO-family config.",
        "license": "See the source dataset.", "citation": "", "generalized": False}
    fields["summary"] = (f"{fields['summary']} Config `{config_name}` adds the negatives NeMo mined for each "
                         "expression, so training with NeMo needs no CLIP.").strip()
    files = {f"{config_name}/samples.png": picture} if picture is not None else None
    push_dataset(ds, repo_id, config_name, fields, {config_name: f"{stats_table(ds)}\n\n{mining}"},
                 private=private, token=token, files=files)


def _download_readme(repo_id: str, token: str | None = None) -> str | None:
    try:
        return Path(hf_hub_download(repo_id, "README.md", repo_type="dataset", token=token)).read_text()
    except (EntryNotFoundError, RepositoryNotFoundError):
        return None
