"""dataset_scripts/ end to end: build_refcoco.py's Parquet folder and push to the local test Hub; mining what it
wrote; mosaics drawn from it for several epochs."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import datasets
import numpy as np
import pytest

SCRIPTS = Path(__file__).parents[1] / "dataset_scripts"


def _script(name: str = "build_refcoco"):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _args(tree, cache, *extra):
    return ["--data-dir", str(tree.root), "--image-dir", str(tree.image_dir), "--cache-dir", str(cache), *extra]


@pytest.mark.parametrize("name", ["build_refcoco", "mine_negatives", "materialize_mosaics"])
def test_help_shows_the_examples_as_written(name, capsys):
    script = _script(name)
    with pytest.raises(SystemExit):
        script.main(["--help"])
    shown = capsys.readouterr().out.splitlines()
    examples = [line for line in script.__doc__.splitlines() if line.startswith("    ")]
    assert any(line.endswith(" \\") for line in examples)  # a continued command line
    assert all(line in shown for line in examples)
    flat = " ".join(" ".join(shown).split())
    if name != "build_refcoco":  # its flags are required or off by default
        assert "(default: train)" in flat and "(default: 0.9)" in flat  # --split and tau_image
    assert "(default: None)" not in flat


def test_nothing_to_do_is_an_error(refer_tree, tmp_path, capsys):
    with pytest.raises(SystemExit):
        _script().main(["refcoco_unc", *_args(refer_tree, tmp_path)])
    assert "give --out and/or --push" in capsys.readouterr().err


@pytest.mark.hub
def test_push_two_configs_and_load_them_back(refer_tree, tmp_path, hub_repo_id, capsys):
    build = _script()
    for config in ("refcoco_unc", "refcocog_umd"):
        assert build.main([config, *_args(refer_tree, tmp_path / "cache"), "--push", hub_repo_id]) == 0
    assert "| train |" in capsys.readouterr().out

    from huggingface_hub import DatasetCard

    card = DatasetCard.load(hub_repo_id, repo_type="dataset")
    assert {c["config_name"] for c in card.data["configs"]} == {"refcoco_unc", "refcocog_umd"}
    # each config's stats section survives the other's push
    assert "<!-- stats:refcoco_unc -->" in card.text and "<!-- stats:refcocog_umd -->" in card.text
    assert "Mao, Junhua" in card.text  # RefCOCOg citation of the last push

    from nemo_hf import load_refcoco

    local = load_refcoco("refcocog_umd", refer_tree.root, refer_tree.image_dir, split="val",
                         cache_dir=tmp_path / "cache")
    remote = datasets.load_dataset(hub_repo_id, "refcocog_umd", split="val", cache_dir=str(tmp_path / "dl"))
    assert remote["ref_id"] == local["ref_id"]
    for a, b in zip(local, remote):
        np.testing.assert_array_equal(np.asarray(a["mask"]), np.asarray(b["mask"]))
        np.testing.assert_array_equal(np.asarray(a["image"]), np.asarray(b["image"]))
        assert a["sentences"] == b["sentences"]


def test_parquet_folder_keeps_every_config(refer_tree, tmp_path):
    build = _script()
    for config in ("refcoco_unc", "refcocog_umd"):
        assert build.main([config, *_args(refer_tree, tmp_path / "cache"), "--out", str(tmp_path / "out")]) == 0
    readme = (tmp_path / "out" / "README.md").read_text()
    assert "<!-- stats:refcoco_unc -->" in readme and "<!-- stats:refcocog_umd -->" in readme
    assert len(datasets.load_dataset(str(tmp_path / "out"), "refcoco_unc", split="val",
                                     cache_dir=str(tmp_path / "dl"))) > 0


def test_negatives_are_mined_from_the_parquet_folder_the_build_wrote(refer_tree, tmp_path):
    for config in ("refcoco_unc", "refcocog_umd"):
        assert _script().main([config, *_args(refer_tree, tmp_path / "cache"), "--out", str(tmp_path / "out")]) == 0
    mine = _script("mine_negatives")
    argv = [str(tmp_path / "out"), "--config", "refcocog_umd", "--split", "train", "--clip", "nemo-hf/synthetic-clip",
            "--top-k", "4", "--cache-dir", str(tmp_path / "mining"), "--out", str(tmp_path / "mined")]
    assert mine.main(argv) == 0
    mined = datasets.load_from_disk(str(tmp_path / "mined"))
    from nemo_hf import load_refcoco

    built = load_refcoco("refcocog_umd", refer_tree.root, refer_tree.image_dir, split="train", cache_dir=tmp_path / "cache")
    assert mined["ref_id"] == built["ref_id"]  # the config asked for, not the folder's first one
    assert all(len(ids) == len(s) for ids, s in zip(mined["negative_image_ids"], mined["sentences"]))


@pytest.mark.hub
def test_mosaics_of_several_epochs_are_drawn_once_and_pushed(refer_tree, tmp_path, hub_repo_id):
    assert _script().main(["refcoco_unc", *_args(refer_tree, tmp_path / "cache"), "--out", str(tmp_path / "out")]) == 0
    argv = [str(tmp_path / "out"), "--config", "refcoco_unc", "--clip", "nemo-hf/synthetic-clip", "--epochs", "2",
            "--mosaic-prob", "1.0", "--size", "64", "--seed", "5", "--push", hub_repo_id, "--out",
            str(tmp_path / "mosaics")]
    assert _script("materialize_mosaics").main(argv) == 0

    from huggingface_hub import DatasetCard, HfApi

    train = datasets.load_dataset(str(tmp_path / "out"), "refcoco_unc", split="train", cache_dir=str(tmp_path / "dl"))
    sentences = sum(len(s) for s in train["sentences"])
    pushed = datasets.load_dataset(hub_repo_id, "refcoco_unc-mosaics", split="train", cache_dir=str(tmp_path / "dl"))
    assert len(pushed) == 2 * sentences and sorted(set(pushed["epoch"])) == [0, 1]
    assert set(pushed["mosaic_kind"]) <= {"mined", "random"} and {pushed[0]["image"].size} == {(64, 64)}
    by_epoch = [pushed.filter(lambda e, want=want: e == want, input_columns="epoch") for want in (0, 1)]
    assert by_epoch[0]["sent_id"] == by_epoch[1]["sent_id"]  # every expression, each epoch
    layouts = [list(zip(part["target_cell"], map(tuple, part["source_image_ids"]))) for part in by_epoch]
    assert sum(a != b for a, b in zip(*layouts)) > sentences // 2  # epochs draw anew
    written = datasets.load_dataset(str(tmp_path / "mosaics"), "refcoco_unc-mosaics", split="train",
                                    cache_dir=str(tmp_path / "dl"))
    assert written["source_image_ids"] == pushed["source_image_ids"]

    card = DatasetCard.load(hub_repo_id, repo_type="dataset").text
    for fact in ("2 epoch(s)", "Mined with CLIP `nemo-hf/synthetic-clip`", "| `mosaic_prob` | 1.0 |", "| `seed` | 5 |",
                 f"| 0 | {sentences} |", "](refcoco_unc-mosaics/samples.png)"):
        assert fact in card, fact
    assert "refcoco_unc-mosaics/samples.png" in HfApi().list_repo_files(hub_repo_id, repo_type="dataset")
