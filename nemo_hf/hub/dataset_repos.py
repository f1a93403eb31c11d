"""Datasets on the Hub (or a local folder laid out like one): Parquet shards and their cards.

- :func:`write_parquet` — a config's splits as Hub-layout Parquet shards, atomically
  (:func:`check_output_folder` first: what a tool's ``--out`` would replace needs ``--overwrite``);
- :func:`push_dataset` — a RefCOCO-family config and its card;
- :func:`push_mined_dataset` — rows with NeMo's negatives (:func:`~nemo_hf.hub.cards.mining_summary` on the card);
- :func:`push_mosaics` — mosaics drawn for N epochs.

A local build references COCO files by path; everything that leaves the machine embeds the
bytes first, so the copy is self-contained. Writes go to a temporary folder that is renamed
into place only when complete.

>>> import datasets, tempfile
>>> ds = datasets.Dataset.from_dict({"x": [1, 2]})
>>> out = write_parquet(datasets.DatasetDict({"train": ds}), tempfile.mkdtemp(), "demo")
>>> sorted(p.name for p in (out / "demo").iterdir())
['train-00000-of-00001.parquet']
"""

from __future__ import annotations

import shutil
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import datasets
import yaml
from datasets.table import embed_table_storage
from huggingface_hub import CommitOperationAdd, DatasetCard, HfApi, hf_hub_download
from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError

from nemo_hf.data.configs import VARIANTS, card_fields
from nemo_hf.data.load import stats_table
from nemo_hf.hub.cards import render_dataset_card, template
from nemo_hf.version import __version__

__all__ = ["ROWS_PER_SHARD", "check_output_folder", "embed_external_files", "push_dataset", "push_mined_dataset",
           "push_mosaics", "write_parquet"]

ROWS_PER_SHARD = 5000


def embed_external_files(ds: datasets.Dataset) -> datasets.Dataset:
    """Replace image paths by the files' bytes (as ``push_to_hub`` does before upload)."""
    return ds.with_format("arrow").map(embed_table_storage, batched=True, desc="embedding images").with_format(None)


def check_output_folder(out: str | Path, config_name: str | None, *, overwrite: bool) -> None:
    """Refuse an ``--out`` folder whose content a tool would replace, unless ``overwrite`` (``--overwrite``).

    The rule of every tool in ``dataset_scripts/``: ``config_name`` given, ``out`` is a
    folder of Parquet configs (:func:`write_parquet`), which may gain configs but not lose
    one, nor a ``README.md`` that is not its card; None, ``out`` is one dataset
    (``save_to_disk``), which must be new or empty. Checked before anything is built.

    >>> import tempfile
    >>> out = Path(tempfile.mkdtemp())
    >>> (out / "refcoco_unc").mkdir()
    >>> check_output_folder(out, "refcocog_umd", overwrite=False)  # another config: it joins the folder
    >>> check_output_folder(out, "refcoco_unc", overwrite=False)
    Traceback (most recent call last):
    ...
    FileExistsError: --out ... already holds config refcoco_unc: pass --overwrite to replace it ...
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out} is a file: give a folder (a new one is created)")
    if overwrite or not out.is_dir():
        return
    if config_name is None:
        if any(out.iterdir()):
            raise FileExistsError(f"--out {out} already exists and is not empty: pass --overwrite to replace it (the "
                                  "new one takes its place once complete), or another --out")
        return
    if (out / config_name).exists():
        raise FileExistsError(f"--out {out} already holds config {config_name}: pass --overwrite to replace it (once "
                              "the new one is complete; the folder's other configs stay), or another --out")
    readme = out / "README.md"
    if readme.is_file() and not _lists_configs(readme):
        raise FileExistsError(f"--out {out} holds a README.md that is not the card of a folder of Parquet configs, "
                              "and writing there would replace it: pass --overwrite to, or choose another --out")


def _lists_configs(readme: Path) -> bool:
    """Whether ``readme`` is a dataset card with a ``configs:`` block (what :func:`write_parquet` writes)."""
    try:
        return "configs" in DatasetCard(readme.read_text(errors="replace")).data.to_dict()
    except (ValueError, yaml.YAMLError):
        return False


def write_parquet(
    ds: datasets.DatasetDict, out_dir: str | Path, config_name: str,
    card: str | None = None, rows_per_shard: int = ROWS_PER_SHARD,
) -> Path:
    """Write ``{out_dir}/{config}/{split}-0000i-of-0000n.parquet`` (+ ``README.md``) atomically.

    The layout is the Hub's, so ``load_dataset("parquet", data_files=…)`` and a later upload
    of the folder both work. An existing ``{out_dir}/{config}`` is replaced only after the
    new one is complete (a tool asks for ``--overwrite`` first: :func:`check_output_folder`).
    Folders are created with the user's umask, as ``mkdir`` does.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # not tempfile.mkdtemp: its folder is private (0700), and it becomes the config's folder
    staging = out_dir / f".{config_name}-{uuid.uuid4().hex[:8]}.partial"
    staging.mkdir()
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
        return template("mosaics_card.md").render(
            config_name=config_name, repo_id=repo_id, version=__version__, epochs=len(counts),
            size=settings.get("size"), source=source, source_config=source_config, split=split, objects=objects,
            sentences=sentences, settings=settings, mining=mining, counts=dict(sorted(counts.items())),
            picture=shown,
        )

    _push_config(datasets.DatasetDict({"train": ds}), repo_id, config_name, body, private=private, token=token,
                 files={shown: picture})


def push_mined_dataset(
    ds: datasets.DatasetDict, repo_id: str, config_name: str, *, source_config: str, mining: str,
    picture: Path | None = None, private: bool | None = None, token: str | None = None, synthetic: str | None = None,
) -> None:
    """Push a NeMo-mined training set as ``config_name``: images embedded, the card saying how it was mined.

    ``ds`` holds the mined ``train`` split (and evaluation splits, whose negative columns
    are empty); ``source_config`` is the RefCOCO-family config it was built from (for the
    card's summary, sizes, license and citations; ``synthetic``, the description of a synthetic
    source tree, makes the card say so: :func:`~nemo_hf.data.configs.card_fields`); ``mining`` is
    :func:`mining_summary`'s
    text, whose picture reference is ``<config_name>/samples.png`` when ``picture`` is given.
    ``load_dataset(repo_id, config_name)`` then trains with NeMo with no CLIP at all.
    """
    fields = dict(card_fields(source_config, synthetic=synthetic)) if source_config in VARIANTS else {
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
