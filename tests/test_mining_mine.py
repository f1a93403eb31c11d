"""NeMo.mine over a dataset: independent recomputation, caching, determinism, bad input."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Dataset, load_from_disk
from datasets.fingerprint import Hasher

from nemo_hf import NeMo, NeMoSettings
from nemo_hf.dataset_tools import mine_negatives
from nemo_hf.mining import NEGATIVE_COLUMNS
from tests.test_mining_embed import one_at_a_time_images, one_at_a_time_texts, unique_images
from tests.test_mining_fixtures import shapes_dataset
from tests.test_mining_selection import Problem, brute_force
from tests.tiny_models import tiny_clip

torch.set_num_threads(1)


class CountingClip:
    """A tiny CLIP whose image/text forwards are counted."""

    def __init__(self, seed: int = 0) -> None:
        self.model, self.processor = tiny_clip(seed)
        self.images = self.texts = 0
        image_forward, text_forward = self.model.get_image_features, self.model.get_text_features

        def images(*args, **kwargs):
            self.images += 1
            return image_forward(*args, **kwargs)

        def texts(*args, **kwargs):
            self.texts += 1
            return text_forward(*args, **kwargs)

        self.model.get_image_features, self.model.get_text_features = images, texts


def expected_negatives(ds: Dataset, pool: Dataset, top_k: int, needed: int, tau_text, tau_image, tau_own=None):
    """Per-row lists of negative image_ids, from one-at-a-time forwards + the brute-force rule."""
    model, processor = tiny_clip(0)
    pool_rows = unique_images(pool)
    pool_ids = np.asarray(pool_rows["image_id"][:])
    query_rows = unique_images(ds)
    query_ids = np.asarray(query_rows["image_id"][:])
    texts = [t for row in ds["sentences"] for t in row]
    sentence_images = np.repeat(ds["image_id"][:], [len(s) for s in ds["sentences"]])
    image_index = np.searchsorted(query_ids, sentence_images)
    own = np.asarray([int(np.searchsorted(pool_ids, i)) if i in pool_ids else -1 for i in sentence_images])
    problem = Problem(
        one_at_a_time_texts(model, processor, texts), one_at_a_time_images(model, processor, query_rows),
        image_index, one_at_a_time_images(model, processor, pool_rows), own,
    )  # fmt: skip
    lists, fallback = brute_force(problem, top_k, needed, tau_text, tau_image, tau_own)
    ids = [[int(pool_ids[c]) for c in chosen] for chosen in lists]
    return ids, fallback


def per_sentence(mined: Dataset, column: str) -> list:
    return [entry for row in mined[column] for entry in row]


@pytest.mark.parametrize(
    ("tau_text", "tau_image", "tau_own", "top_k"),
    [(None, 0.9, None, 5), (0.3, None, None, 4), (0.25, 0.8, None, 8), (None, None, 0.0, 5)],
)
def test_mined_columns_equal_an_independent_computation(tmp_path, tau_text, tau_image, tau_own, top_k) -> None:
    ds = shapes_dataset(n_images=10, seed=0)
    nemo = NeMo(ds, *tiny_clip(0), top_k=top_k, tau_text=tau_text, tau_image=tau_image, tau_own=tau_own,
                cache_dir=str(tmp_path))  # fmt: skip
    mined = nemo.mine(ds, verbose=False)
    ids, fallback = expected_negatives(ds, ds, top_k, 3, tau_text, tau_image, tau_own)
    assert per_sentence(mined, "negative_image_ids") == ids
    assert per_sentence(mined, "negative_fallback") == fallback
    assert nemo.last_report.n_fallback == sum(fallback)
    for row in mined:
        assert len(row["negative_image_ids"]) == len(row["negative_scores"]) == len(row["sentences"])
        for negatives, scores in zip(row["negative_image_ids"], row["negative_scores"], strict=True):
            assert row["image_id"] not in negatives
            assert 3 <= len(negatives) <= top_k and len(set(negatives)) == len(negatives)
            assert scores == sorted(scores, reverse=True)


def test_sentences_of_images_outside_the_pool_use_their_own_embeddings(tmp_path) -> None:
    pool = shapes_dataset(n_images=8, seed=0)
    val = shapes_dataset(n_images=3, seed=9).map(lambda r: {"image_id": r["image_id"] + 10_000})
    mined = NeMo(pool, *tiny_clip(0), top_k=5, cache_dir=str(tmp_path)).mine(val, verbose=False)
    ids, _ = expected_negatives(val, pool, 5, 3, None, 0.9)
    assert per_sentence(mined, "negative_image_ids") == ids
    assert set(i for lst in ids for i in lst) <= set(pool["image_id"][:])


def test_a_second_mine_recomputes_nothing(tmp_path) -> None:
    ds = shapes_dataset(n_images=6, seed=1)
    clip = CountingClip()
    first = NeMo(ds, clip.model, clip.processor, top_k=4, cache_dir=str(tmp_path)).mine(ds, verbose=False)
    assert clip.images > 0 and clip.texts > 0
    counts = (clip.images, clip.texts)
    again = NeMo(ds, clip.model, clip.processor, top_k=4, cache_dir=str(tmp_path)).mine(ds, verbose=False)
    assert (clip.images, clip.texts) == counts
    assert again[:]["negative_image_ids"] == first[:]["negative_image_ids"]
    # New τ: the selection is redone from the cached embeddings, still without the model.
    other = NeMo(ds, clip.model, clip.processor, top_k=4, tau_image=0.5, cache_dir=str(tmp_path))
    other = other.mine(ds, verbose=False)
    assert (clip.images, clip.texts) == counts
    assert other[:]["negative_image_ids"] != first[:]["negative_image_ids"]
    # Other weights: nothing is reused.
    NeMo(ds, *tiny_clip(1), top_k=4, cache_dir=str(tmp_path)).mine(ds, verbose=False)
    assert len(list((tmp_path / "texts").iterdir())) == 2


def test_a_named_checkpoint_is_not_even_loaded_on_a_cache_hit(tmp_path, monkeypatch) -> None:
    model, processor = tiny_clip(0)
    model.save_pretrained(tmp_path / "clip")
    processor.save_pretrained(tmp_path / "clip")
    ds = shapes_dataset(n_images=5, seed=2)
    nemo = NeMo(ds, str(tmp_path / "clip"), top_k=4, cache_dir=str(tmp_path / "cache"))
    first = nemo.mine(ds, verbose=False)

    def no_loading(*args, **kwargs):
        raise AssertionError("the model was loaded although everything was cached")

    monkeypatch.setattr("nemo_hf.mining.clip.load_clip", no_loading)
    fresh = NeMo(ds, str(tmp_path / "clip"), top_k=4, cache_dir=str(tmp_path / "cache"))
    assert fresh.mine(ds, verbose=False)[:]["negative_image_ids"] == first[:]["negative_image_ids"]


def test_runs_and_num_proc_give_identical_columns(tmp_path) -> None:
    ds = shapes_dataset(n_images=9, seed=3)
    results = [
        NeMo(ds, *tiny_clip(0), top_k=5, image_batch_size=4, cache_dir=str(tmp_path / name)).mine(
            ds, num_proc=num_proc, verbose=False
        )
        for name, num_proc in (("a", None), ("b", None), ("c", 2))
    ]
    for other in results[1:]:
        for column in NEGATIVE_COLUMNS:
            assert other[:][column] == results[0][:][column]


def _mine_in_each_process(folder: str) -> None:
    from accelerate import PartialState

    from nemo_hf.mining.device import process_state

    PartialState._reset_state()  # forked from pytest: start from a clean process state
    state = process_state()
    assert state.num_processes == 2
    torch.set_num_threads(1)
    ds = shapes_dataset(n_images=7, seed=14)
    mined = NeMo(ds, *tiny_clip(0), top_k=4, image_batch_size=2, cache_dir=str(Path(folder) / "cache")).mine(
        ds, verbose=False
    )
    mined.select_columns(list(NEGATIVE_COLUMNS)).to_json(str(Path(folder) / f"rank-{state.process_index}.jsonl"))


def test_two_processes_mine_like_one(tmp_path) -> None:
    from accelerate import debug_launcher

    debug_launcher(_mine_in_each_process, args=(str(tmp_path),), num_processes=2)
    ds = shapes_dataset(n_images=7, seed=14)
    alone = NeMo(ds, *tiny_clip(0), top_k=4, cache_dir=str(tmp_path / "alone")).mine(ds, verbose=False)
    for rank in (0, 1):
        both = Dataset.from_json(str(tmp_path / f"rank-{rank}.jsonl"))
        assert both["negative_image_ids"][:] == alone["negative_image_ids"][:]
        assert both["negative_fallback"][:] == alone["negative_fallback"][:]
    # Written once, by the main process, and the same entries a single process writes.
    for kind in ("pool-images", "texts", "selection"):
        entries = [p.name for p in (tmp_path / "cache" / kind).iterdir()]
        assert entries == [p.name for p in (tmp_path / "alone" / kind).iterdir()] and len(entries) == 1


def test_mining_again_replaces_the_negative_columns(tmp_path) -> None:
    ds = shapes_dataset(n_images=6, seed=4)
    once = NeMo(ds, *tiny_clip(0), top_k=4, cache_dir=str(tmp_path)).mine(ds, verbose=False)
    twice = NeMo(ds, *tiny_clip(0), top_k=6, tau_image=None, cache_dir=str(tmp_path)).mine(once, verbose=False)
    assert twice.column_names == once.column_names
    assert all(len(lst) == 5 for lst in per_sentence(twice, "negative_image_ids"))  # 6 images: 5 candidates


def test_the_report_is_printed_and_saved(tmp_path, capsys) -> None:
    ds = shapes_dataset(n_images=6, seed=5)
    nemo = NeMo(ds, *tiny_clip(0), top_k=4, tau_text=0.3, cache_dir=str(tmp_path))
    nemo.mine(ds, report_dir=tmp_path / "report")
    printed = capsys.readouterr().out
    assert "top_k=4" in printed and "tau_text=0.3" in printed and "fallback" in printed
    saved = json.loads((tmp_path / "report" / "mining_report.json").read_text())
    assert saved["n_sentences"] == sum(len(s) for s in ds["sentences"])
    assert saved["tau_text"] == 0.3 and saved["top_k"] == 4
    assert sum(saved["candidate_text_hist"]) == saved["sample_candidates"]
    png = (tmp_path / "report" / "mining_report.png").read_bytes()
    assert png.startswith(b"\x89PNG")


def test_an_empty_expression_is_an_error_naming_it(tmp_path) -> None:
    ds = shapes_dataset(n_images=4, seed=6)
    sentences = ds["sentences"][:]
    sentences[2] = [sentences[2][0], "   "]
    broken = ds.remove_columns("sentences").add_column("sentences", sentences)
    ref_id, sent_id = broken[2]["ref_id"], broken[2]["sent_ids"][1]
    nemo = NeMo(ds, *tiny_clip(0), top_k=4, cache_dir=str(tmp_path))
    with pytest.raises(ValueError, match=rf"row 2 \(ref_id {ref_id}, sent_id {sent_id}, sentence 1\) has an empty"):
        nemo.mine(broken, verbose=False)


def test_an_empty_dataset_gets_empty_negative_columns(tmp_path) -> None:
    ds = shapes_dataset(n_images=5, seed=15)
    mined = NeMo(ds, *tiny_clip(0), top_k=4, cache_dir=str(tmp_path)).mine(ds.select([]), verbose=False)
    assert len(mined) == 0 and set(NEGATIVE_COLUMNS) <= set(mined.column_names)
    assert set(ds.column_names) <= set(mined.column_names)


def test_a_pool_too_small_for_the_mosaic_is_an_error(tmp_path) -> None:
    ds = shapes_dataset(n_images=3, seed=7)
    with pytest.raises(ValueError, match=r"3 distinct images.*only 2 candidate negatives.*needs 3"):
        NeMo(ds, *tiny_clip(0), top_k=4, cache_dir=str(tmp_path)).mine(ds, verbose=False)
    with pytest.raises(ValueError, match="needs 8"):
        NeMo(shapes_dataset(n_images=8, seed=7), *tiny_clip(0), grid=3, top_k=8, cache_dir=str(tmp_path)).mine(
            ds, verbose=False
        )


def test_missing_columns_are_errors() -> None:
    ds = shapes_dataset(n_images=4, seed=8)
    with pytest.raises(ValueError, match=r"pool has no column\(s\) \['image_id'\]"):
        NeMo(ds.remove_columns("image_id"), *tiny_clip(0))
    with pytest.raises(ValueError, match=r"dataset has no column\(s\) \['sentences'\]"):
        NeMo(ds, *tiny_clip(0)).mine(ds.remove_columns("sentences"), verbose=False)


@pytest.mark.parametrize(
    ("settings", "error", "message"),
    [
        ({"tau_image": 1.5}, ValueError, "tau_image=1.5"),
        ({"tau_text": "high"}, TypeError, "tau_text='high'"),
        ({"top_k": 2}, ValueError, "top_k=2"),
        ({"grid": 3, "top_k": 5}, ValueError, "top_k=5 keeps only 5 candidate negatives, but a 3x3 mosaic needs 8"),
        ({"grid": 4}, ValueError, "grid=4"),
        ({"mosaic_prob": -0.1}, ValueError, "mosaic_prob=-0.1"),
        ({"random_share": 2}, ValueError, "random_share=2"),
        ({"warmup_epochs": -1}, ValueError, "warmup_epochs=-1"),
        ({"cross_point_jitter": 0.5}, ValueError, "cross_point_jitter=0.5"),
        ({"resize": "crop"}, ValueError, "resize='crop'"),
        ({"position_aware": 1}, TypeError, "position_aware=1"),
        ({"seed": 1.5}, ValueError, "seed=1.5"),
        ({"search_backend": "annoy"}, ValueError, "search_backend='annoy'"),
        ({"image_batch_size": 0}, ValueError, "image_batch_size=0"),
    ],
)
def test_settings_are_validated_and_errors_name_the_value(settings, error, message) -> None:
    with pytest.raises(error, match=message.replace("(", r"\(")):
        NeMoSettings(**settings)


def test_unknown_settings_are_refused() -> None:
    with pytest.raises(TypeError, match=r"unknown NeMo setting\(s\) \['topk'\]"):
        NeMo(shapes_dataset(n_images=4), topk=3)


def test_settings_are_frozen_and_defaults_are_consistent() -> None:
    settings = NeMoSettings()
    assert settings.negatives_needed == 3 and settings.top_k >= settings.negatives_needed
    with pytest.raises(AttributeError):
        settings.top_k = 5  # type: ignore[misc]


def test_pickled_state_is_cheap_stable_and_model_free(tmp_path) -> None:
    ds = shapes_dataset(n_images=6, seed=10)
    ds.save_to_disk(str(tmp_path / "pool"))
    pool = load_from_disk(str(tmp_path / "pool"))
    by_object = NeMo(pool, *tiny_clip(0), top_k=5)
    by_name = NeMo(pool, "openai/clip-vit-base-patch16", top_k=5)
    assert not any(isinstance(value, torch.nn.Module) for value in by_object.__getstate__().values())
    object_state = by_object.__getstate__()["clip"].__getstate__()
    assert object_state["name"] == "" and len(object_state["key"]) == 32  # a digest of the weights, not them
    assert by_name.__getstate__()["clip"].__getstate__() == {"name": "openai/clip-vit-base-patch16", "revision": None}
    assert len(pickle.dumps(by_object)) < 20_000  # a file-backed pool pickles by reference
    assert Hasher.hash(by_name) == Hasher.hash(NeMo(pool, "openai/clip-vit-base-patch16", top_k=5))
    assert Hasher.hash(by_name) != Hasher.hash(NeMo(pool, "openai/clip-vit-base-patch16", top_k=6))
    # unnamed models are told apart by their weights' digest (on-the-fly mining depends on them)
    assert Hasher.hash(by_object) != Hasher.hash(NeMo(pool, *tiny_clip(1), top_k=5))
    restored = pickle.loads(pickle.dumps(by_object))
    assert restored.settings == by_object.settings and len(restored.pool) == len(pool)
    with pytest.raises(ValueError, match="unnamed model object and has been pickled"):
        restored.mine(ds, verbose=False)


def test_script_mines_a_saved_split(tmp_path) -> None:
    model, processor = tiny_clip(0)
    model.save_pretrained(tmp_path / "clip")
    processor.save_pretrained(tmp_path / "clip")
    from datasets import DatasetDict

    splits = {"train": shapes_dataset(n_images=7, seed=11), "val": shapes_dataset(n_images=2, seed=12)}
    DatasetDict(splits).save_to_disk(str(tmp_path / "data"))
    argv = [str(tmp_path / "data"), "--split", "train", "--clip", str(tmp_path / "clip"), "--top-k", "4",
            "--tau-image", "none", "--tau-text", "0.4", "--cache-dir", str(tmp_path / "cache"),
            "--out", str(tmp_path / "mined")]  # fmt: skip
    assert mine_negatives.main(argv) == 0
    mined = load_from_disk(str(tmp_path / "mined"))
    assert set(NEGATIVE_COLUMNS) <= set(mined.column_names)
    config = json.loads((tmp_path / "mined-report" / "mining_config.json").read_text())
    assert config["settings"]["tau_image"] is None and config["settings"]["tau_text"] == 0.4
    assert (tmp_path / "mined-report" / "mining_report.png").is_file()
    with pytest.raises(FileExistsError, match="pass --overwrite"):  # never overwrites unasked (run_command prints it)
        mine_negatives.main(argv)
    with pytest.raises(SystemExit):  # nothing to do
        mine_negatives.main([str(tmp_path / "data")])


@pytest.mark.hub
def test_script_pushes_to_the_hub(tmp_path, hub_repo_id) -> None:
    model, processor = tiny_clip(0)
    model.save_pretrained(tmp_path / "clip")
    processor.save_pretrained(tmp_path / "clip")
    shapes_dataset(n_images=5, seed=13).save_to_disk(str(tmp_path / "data"))
    argv = [str(tmp_path / "data"), "--clip", str(tmp_path / "clip"), "--top-k", "4",
            "--cache-dir", str(tmp_path / "cache"), "--push", hub_repo_id, "--config", "refcoco_unc"]  # fmt: skip
    assert mine_negatives.main(argv) == 0
    from datasets import load_dataset

    pushed = load_dataset(hub_repo_id, "refcoco_unc", split="train")
    assert len(pushed) == len(shapes_dataset(n_images=5, seed=13))
    assert set(NEGATIVE_COLUMNS) <= set(pushed.column_names)
    from huggingface_hub import DatasetCard, HfApi

    card = DatasetCard.load(hub_repo_id, repo_type="dataset").text  # how it was mined, and what it looks like
    assert f"Mined with CLIP `{tmp_path / 'clip'}` (a local folder, not on the Hub)" in card and "`top_k` 4" in card
    assert "](refcoco_unc/samples.png)" in card
    assert "refcoco_unc/samples.png" in HfApi().list_repo_files(hub_repo_id, repo_type="dataset")
