"""NeMo's settings are declared once (``NeMoSettings``) and reach the transform from any door, unchanged.

Every field gets a value other than its default, given on ``train.py``'s command line or in a
YAML config; the ``NeMo`` that draws the training samples holds exactly those values. The same
for the dataset scripts, which take NeMo's settings through the same declaration.
"""

from __future__ import annotations

import argparse
import dataclasses

import pytest
import yaml

from nemo_hf.nemo.settings import SETTING_GROUPS, NeMoSettings, settings_in_group
from nemo_hf.trainer.args import TrainingConfig, add_dataclass_flags
from nemo_hf.trainer.data import build_train_dataset, load_splits
from tests.training_runs import TINY_CONFIG

# a value other than the default for every field, valid together (top_k >= 8 for a 3x3 grid)
CHANGED = {
    "tau_image": 0.8, "tau_text": 0.6, "tau_own": 0.05, "top_k": 9, "clip_revision": "main", "grid": 3, "size": 48,
    "mosaic_prob": 0.75, "random_share": 0.25, "warmup_epochs": 2, "position_aware": False,
    "cross_point_jitter": 0.1, "resize": "letterbox", "blur_negatives": True, "thumbnail_cells": False, "seed": 11,
    "image_batch_size": 7, "text_batch_size": 9, "search_backend": "exact", "device": "cpu", "cache_dir": None,
}


def _flag(name: str, value: object) -> list[str]:
    if isinstance(value, bool):
        return [f"--{name}"] if value else [f"--no_{name}"]
    return [f"--{name}", "none" if value is None else str(value)]


def test_the_changed_values_cover_every_field_and_differ_from_the_defaults() -> None:
    defaults = NeMoSettings().to_dict()
    assert set(CHANGED) == set(defaults)
    assert [name for name, value in CHANGED.items() if value == defaults[name] and name != "cache_dir"] == []
    assert {f.metadata["group"] for f in dataclasses.fields(NeMoSettings)} == set(SETTING_GROUPS)
    assert all(f.metadata["help"] for f in dataclasses.fields(NeMoSettings))


@pytest.mark.parametrize("door", ["command line", "yaml"])
def test_every_setting_reaches_the_transform_unchanged(door: str, tmp_path) -> None:
    changed = {**CHANGED, "cache_dir": str(tmp_path / "cache")}
    if door == "command line":
        argv = ["--config", str(TINY_CONFIG), *[part for name, value in changed.items() for part in _flag(name, value)]]
    else:
        config = {**yaml.safe_load(TINY_CONFIG.read_text()), **changed}
        (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
        argv = ["--config", str(tmp_path / "run.yaml")]
    config = TrainingConfig.parse(argv)
    assert config.nemo.to_dict() == changed
    assert config.run.seed == changed["seed"] and config.data.cache_dir == changed["cache_dir"]  # shared flags

    rows = load_splits(config.data, ["train"])["train"]
    train = build_train_dataset(rows, "nemo", config.nemo, clip_model=config.augmentation.clip_model, input_size=64)
    assert train.transform.settings == config.nemo
    train.set_epoch(3)
    assert train.dataset[0]["image"].size == (48, 48)  # the settings are the ones drawing, not only stored


def test_an_augmentation_changes_only_what_it_means() -> None:
    config = TrainingConfig.parse(["--config", str(TINY_CONFIG), "--top_k", "12", "--mosaic_prob", "0.9"])
    rows = load_splits(config.data, ["train"])["train"]
    for augmentation, changes in (("none", {"mosaic_prob": 0.0}), ("random", {"random_share": 1.0})):
        train = build_train_dataset(rows, augmentation, config.nemo, input_size=64)
        expected = dataclasses.replace(config.nemo, size=64, **changes)
        assert train.transform.settings == expected


def test_the_dataset_scripts_take_the_same_declaration() -> None:
    parser = argparse.ArgumentParser()
    names = add_dataclass_flags(parser, NeMoSettings, [f.name for f in settings_in_group("mining")])
    argv = [part for name in names for part in _flag(name, CHANGED[name])]
    parsed = vars(parser.parse_args([arg.replace("_", "-") if arg.startswith("--") else arg for arg in argv]))
    assert parsed == {name: CHANGED[name] for name in names}
    assert "--tau-text" in parser.format_help() and "text-image cosine" in parser.format_help()


def test_a_shared_setting_must_agree_between_its_groups() -> None:
    config = TrainingConfig.parse(["--config", str(TINY_CONFIG)])
    with pytest.raises(ValueError, match="seed is one setting of the run and of NeMo"):
        dataclasses.replace(config, nemo=dataclasses.replace(config.nemo, seed=config.run.seed + 1))
