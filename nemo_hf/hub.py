"""Publishing to the Hub (or a local folder laid out like one): Parquet shards and cards.

A local build references COCO files by path; everything that leaves the machine embeds
the bytes first, so the copy is self-contained. Writes go to a temporary folder that is
renamed into place only when complete.

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
from pathlib import Path
from typing import Any, Mapping

import datasets
from datasets.table import embed_table_storage
from huggingface_hub import DatasetCard, ModelCardData, hf_hub_download
from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError
from jinja2 import Environment, PackageLoader, StrictUndefined

from . import __version__

_TEMPLATES = Environment(
    loader=PackageLoader("nemo_hf", "model_cards"), undefined=StrictUndefined,
    keep_trailing_newline=True,
)
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
    template = _TEMPLATES.get_template("dataset_card.md")
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
_AUGMENTATION_NOTE = {
    "none": "no mosaics (the baseline)",
    "random": "mosaics with random negatives (no CLIP)",
    "nemo": "NeMo mosaics with CLIP-mined negatives",
}


def render_model_card(results: Mapping[str, Any], *, repo_id: str, dataset: str) -> str:
    """A model card (YAML metadata + prose) from a training run's ``all_results.json``.

    It states what was trained (``architecture``: the model class, CLIPSeg when absent), on
    what, with which augmentation, and the metrics per split.

    >>> results = {"model": "nemo-hf/synthetic-clip", "trainable": "decoder", "trained_parameters": 10,
    ...            "total_parameters": 100, "augmentation": "nemo", "train_samples": 8, "train_epochs": 1.0,
    ...            "train_steps": 2, "num_processes": 1, "mixed_precision": "no", "eval": {"val": {
    ...            "count": 4, "overall_iou": 0.5, "mean_iou": 0.4, "precision@0.5": 0.5,
    ...            "precision@0.7": 0.25, "precision@0.9": 0.0}}}
    >>> card = render_model_card(results, repo_id="me/model", dataset="refcoco_unc")
    >>> "**Trained: the CLIPSeg decoder only**" in card, "| val | 4 | 0.5000 |" in card
    (True, True)
    """
    architecture = results.get("architecture", "CLIPSegForImageSegmentation")  # runs before CRIS named theirs
    new_layers, tag = _ARCHITECTURES[architecture]
    template = _TEMPLATES.get_template("model_card.md")
    text = template.render(
        title=repo_id.split("/")[-1], version=__version__, repo_id=repo_id, base_model=results["model"],
        architecture=architecture, trainable=results["trainable"],
        trainable_text=_TRAINABLE_TEXT[results["trainable"]].format(new=new_layers),
        trained_parameters=f"{results['trained_parameters']:,}", total_parameters=f"{results['total_parameters']:,}",
        dataset=dataset, train_samples=results["train_samples"], augmentation=results["augmentation"],
        augmentation_note=_AUGMENTATION_NOTE.get(results["augmentation"]), epochs=f"{results['train_epochs']:g}",
        steps=results["train_steps"], num_processes=results["num_processes"],
        mixed_precision=results["mixed_precision"], eval=results["eval"],
    )
    metadata = ModelCardData(
        library_name="transformers", pipeline_tag="image-segmentation",
        tags=["referring-image-segmentation", "nemo-augmentation", tag],
        base_model=results["model"] if "/" in str(results["model"]) else None,
    )
    return f"---\n{metadata.to_yaml()}\n---\n{text}"


def _stats_sections(card: str) -> dict[str, str]:
    pattern = re.compile(r"<!-- stats:(\S+) -->\n## \1: this build\n\n(.*?)\n<!-- /stats:\1 -->", re.S)
    return {m.group(1): m.group(2).strip() for m in pattern.finditer(card)}


def push_dataset(
    ds: datasets.DatasetDict, repo_id: str, config_name: str, card_fields: Mapping[str, Any],
    stats: Mapping[str, str], private: bool | None = None,
) -> None:
    """Push every split of ``ds`` as config ``config_name`` and update the card's body.

    ``push_to_hub`` writes the YAML ``configs:`` block (merging configs pushed earlier);
    the card keeps that metadata and replaces only the prose, keeping the stats sections of
    the other configs.
    """
    for split, part in ds.items():
        part.push_to_hub(repo_id, config_name=config_name, split=split, private=private,
                         commit_message=f"Add {config_name}/{split} (nemo_hf {__version__})")
    readme = _download_readme(repo_id)
    card = DatasetCard(readme or "---\n{}\n---\n")
    body = render_dataset_card(repo_id=repo_id, config_name=config_name, stats=stats,
                               previous=card.text, **card_fields)
    card.text = body
    card.push_to_hub(repo_id, repo_type="dataset",
                     commit_message=f"Update dataset card for {config_name}")


def _download_readme(repo_id: str) -> str | None:
    try:
        return Path(hf_hub_download(repo_id, "README.md", repo_type="dataset")).read_text()
    except (EntryNotFoundError, RepositoryNotFoundError):
        return None
