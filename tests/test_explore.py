"""The explorer's logic (nemo_hf.explore, no page): it shows what mining keeps and what training draws.

The browser drives the page in tests/test_explore_browser.py; here the answers it shows are
checked against the library they claim to show: the kept list against ``mine_negatives``,
the mosaics against the NeMo transform, the wrong labels against the audit, and the decodes
a row costs.
"""

from __future__ import annotations

import subprocess
import sys

import datasets
import PIL.Image
import pytest

from nemo_hf.data.load import load_refcoco
from nemo_hf.explore.session import ABOVE_IMAGE, ABOVE_TEXT, BEYOND_K, FALLBACK, KEPT, OWN, MiningExplorer
from nemo_hf.explore.sources import open_split
from nemo_hf.mining.clip import ClipSource
from nemo_hf.mining.mine import mine_negatives
from nemo_hf.nemo.audit import GroundTruth, audit_mosaics
from nemo_hf.nemo.settings import NeMoSettings
from nemo_hf.nemo.transform import NeMo
from tests.training_runs import REPO

CLIP = "nemo-hf/synthetic-clip"


@pytest.fixture(scope="module")
def train(refer_tree, tmp_path_factory) -> datasets.Dataset:
    return load_refcoco("refcoco_unc", refer_tree.root, refer_tree.image_dir, split="train",
                        cache_dir=tmp_path_factory.mktemp("explore_build"))


@pytest.fixture(scope="module")
def mining_cache(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("mining_cache"))


@pytest.fixture(scope="module")
def explorer(train, mining_cache) -> MiningExplorer:
    return MiningExplorer(train, clip=CLIP, cache_dir=mining_cache)


SETTINGS = [NeMoSettings(top_k=5), NeMoSettings(top_k=8, tau_image=None, tau_text=0.3),
            NeMoSettings(top_k=4, tau_own=0.0), NeMoSettings(top_k=3, tau_text=-1.0)]  # the last: all dropped


@pytest.mark.parametrize("settings", SETTINGS, ids=["k5", "tau_text", "tau_own", "fallback"])
def test_the_kept_list_is_what_mining_keeps(explorer, train, mining_cache, settings) -> None:
    mined = mine_negatives(train, train, CLIP, top_k=settings.top_k, needed=settings.negatives_needed,
                           tau_text=settings.tau_text, tau_image=settings.tau_image, tau_own=settings.tau_own,
                           cache_dir=mining_cache, verbose=False).dataset
    per_sentence = [ids for row in mined["negative_image_ids"] for ids in row]
    fallbacks = [flag for row in mined["negative_fallback"] for flag in row]
    for index in range(0, len(explorer.sentences), 7):
        ranking = explorer.ranking(index, settings)
        assert ranking.kept == per_sentence[index], index
        assert ranking.fallback == fallbacks[index]
        assert sum(ranking.counts.values()) == len(explorer.embeddings.pool_ids)
        assert ranking.counts.get(OWN) == 1  # the split is its own pool
        kept_status = {c.image_id: c.status for c in ranking.candidates if c.image_id in ranking.kept}
        assert set(kept_status) == set(ranking.kept)  # every kept one is listed
        assert set(kept_status.values()) <= ({FALLBACK, KEPT} if ranking.fallback else {KEPT})
    if settings.tau_text == -1.0:  # every text→image cosine is above -1: nothing survives, all is fallback
        assert ranking.fallback and ranking.counts[ABOVE_TEXT] == len(explorer.embeddings.pool_ids) - 1 - 3
        assert ranking.counts[FALLBACK] == 3


def test_statuses_follow_the_rule_over_the_ranking(explorer) -> None:
    settings = NeMoSettings(top_k=4, tau_image=0.5)
    ranking = explorer.ranking(3, settings, show=10_000)
    assert [c.rank for c in ranking.candidates] == list(range(1, len(ranking.candidates) + 1))
    scores = [c.text_score for c in ranking.candidates]
    assert scores == sorted(scores, reverse=True)
    for candidate in ranking.candidates:
        if candidate.status == ABOVE_IMAGE:
            assert candidate.image_score > 0.5
        elif candidate.status in (KEPT, BEYOND_K):
            assert candidate.image_score <= 0.5 or candidate.image_id == ranking.image_id
    survivors = [c for c in ranking.candidates if c.status in (KEPT, BEYOND_K)]
    assert [c.status for c in survivors[:4]] == [KEPT] * 4 and all(c.status == BEYOND_K for c in survivors[4:])
    assert ranking.k_cut == survivors[3].text_score


def test_mosaics_are_those_the_nemo_transform_draws(explorer, train, mining_cache) -> None:
    settings = NeMoSettings(top_k=5, tau_image=0.9, seed=3)
    nemo = NeMo(train, CLIP, top_k=5, tau_image=0.9, seed=3, mosaic_prob=1.0, size=96, cache_dir=mining_cache,
                thumbnail_cells=False)
    mined = nemo.mine(train, verbose=False)
    for epoch in (0, 1):
        nemo.set_epoch(epoch)
        drawn = mined.select(range(4)).map(nemo, batched=True, remove_columns=mined.column_names)
        for index, row in enumerate(drawn):
            [mosaic] = [m for m in explorer.mosaics(index, settings, count=epoch + 1, size=96) if m.epoch == epoch]
            assert mosaic.source_image_ids == row["source_image_ids"] and mosaic.target_cell == row["target_cell"]
            assert mosaic.image.size == (96, 96)


def test_wrong_labels_are_the_audits(explorer, train, mining_cache) -> None:
    """No τ and a short list: the closest candidates, some holding an object the expression fits."""
    settings = NeMoSettings(top_k=3, tau_image=None)
    nemo = NeMo(train, CLIP, top_k=3, tau_image=None, mosaic_prob=1.0, size=256, cache_dir=mining_cache,
                thumbnail_cells=False)
    drawn = nemo.mine(train, verbose=False).map(nemo, batched=True, remove_columns=train.column_names)
    audit = audit_mosaics(drawn, GroundTruth.from_datasets(train), size=256)
    wrong = [bool(explorer.mosaics(i, settings, count=1)[0].wrong_cells) for i in range(len(explorer.sentences))]
    assert sum(wrong) == audit.false_negative > 0


def test_a_second_explorer_reads_the_embeddings_from_minings_cache(train, mining_cache, monkeypatch) -> None:
    """Mined (or explored) once: opening again embeds nothing, loads no CLIP and decodes no picture."""
    mine_negatives(train, train, CLIP, top_k=5, needed=3, tau_text=None, tau_image=0.9, cache_dir=mining_cache,
                   verbose=False)
    opened = []
    real_open = PIL.Image.open
    monkeypatch.setattr(PIL.Image, "open", lambda *a, **k: opened.append(1) or real_open(*a, **k))
    monkeypatch.setattr(ClipSource, "load", lambda self: pytest.fail("the CLIP was loaded"))
    again = MiningExplorer(train, clip=CLIP, cache_dir=mining_cache)
    assert opened == [] and len(again.sentences) == sum(len(s) for s in train["sentences"])


def test_one_row_decodes_only_the_pictures_it_shows(explorer, monkeypatch) -> None:
    opened = []
    real_open = PIL.Image.open
    monkeypatch.setattr(PIL.Image, "open", lambda *a, **k: opened.append(1) or real_open(*a, **k))
    settings = NeMoSettings(top_k=4)
    ranking = explorer.ranking(5, settings, show=6)
    assert opened == []  # ranking reads embeddings and ground-truth columns only
    for candidate in ranking.candidates:
        explorer.thumbnail(candidate.image_id)
    shown = len({c.image_id for c in ranking.candidates})
    assert len(opened) == shown < len(explorer.embeddings.pool_ids)
    opened.clear()
    explorer.mosaics(5, settings, count=2)
    assert len(opened) <= 2 + 2 * 3  # the query image and mask, three negatives per mosaic
    opened.clear()
    for candidate in ranking.candidates:
        explorer.thumbnail(candidate.image_id)
    assert opened == []  # shown once, kept


def test_find_and_bad_indices(explorer) -> None:
    found = explorer.find(explorer.sentences[4].upper())
    assert 4 in found and all(explorer.sentences[4].lower() in explorer.sentences[i].lower() for i in found)
    with pytest.raises(IndexError, match=f"the split has {len(explorer.sentences)}"):
        explorer.ranking(len(explorer.sentences), NeMoSettings())


def test_real_data_has_no_ground_truth_to_mark(train, mining_cache) -> None:
    real = train.remove_columns(["meaning", "scene_objects"])
    explorer = MiningExplorer(real, clip=CLIP, cache_dir=mining_cache)
    ranking = explorer.ranking(0, NeMoSettings(top_k=4))
    assert not ranking.synthetic and all(c.fits is None for c in ranking.candidates)
    assert explorer.mosaics(0, NeMoSettings(top_k=4), count=1)[0].wrong_cells is None


def test_a_split_opens_from_parquet_save_to_disk_and_refuses_what_it_cannot_read(train, tmp_path) -> None:
    from nemo_hf.hub.dataset_repos import write_parquet

    small = train.select(range(3))
    write_parquet(datasets.DatasetDict({"train": small, "val": small}), tmp_path / "parquet", "refcoco_unc")
    assert open_split(tmp_path / "parquet", None, "val")["ref_id"] == small["ref_id"]  # the folder's only config
    datasets.DatasetDict({"train": small}).save_to_disk(tmp_path / "dict")
    assert len(open_split(tmp_path / "dict")) == 3
    with pytest.raises(ValueError, match="has no split 'test'; it has \\['train'\\]"):
        open_split(tmp_path / "dict", split="test")
    small.remove_columns(["sentences"]).save_to_disk(tmp_path / "flat")
    with pytest.raises(ValueError, match="no column\\(s\\) \\['sentences'\\]"):
        open_split(tmp_path / "flat")


def test_nemo_hf_explore_without_gradio_names_the_extra(monkeypatch, capsys) -> None:
    import importlib.util

    from nemo_hf import cli

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gradio" else real(name, *a))
    assert cli.main(["explore", "some/data"]) == 1
    assert 'nemo-hf explore needs gradio, which is not installed: pip install "nemo_hf[app]"' in capsys.readouterr().err


def test_the_default_install_does_not_import_gradio() -> None:
    code = ("import sys, nemo_hf.explore.session, nemo_hf.explore.app, nemo_hf.cli; "
            "assert 'gradio' not in sys.modules, 'gradio imported'")
    run = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
