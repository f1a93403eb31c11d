"""Model names: shipped ones resolve to their folder; a local path that is not there is named at once.

A name that can only be a local path used to go to the Hub as a repo id, where the clients
retry for half a minute and then report a connection error.
"""

from __future__ import annotations

import time

import pytest

from nemo_hf.pretrained import check_local_path, resolve_pretrained


@pytest.fixture
def in_a_project(tmp_path, monkeypatch):
    """The working folder of a user who trains into ./outputs."""
    (tmp_path / "outputs" / "run").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize(("name", "why"), [
    ("./missing", "starts with '.'"),
    ("~/no/such/model", "starts with '~'"),
    ("/no/such/model", "starts with '/'"),
    ("outputs/nope", r"\./outputs is a folder here"),
    ("outputs/run/final", "at most one '/'"),
    ("models\\clip", "backslash"),
])
def test_a_missing_local_path_is_named(in_a_project, name: str, why: str) -> None:
    with pytest.raises(FileNotFoundError, match=why):
        check_local_path(name)


def test_the_error_shows_what_the_nearest_existing_folder_holds(in_a_project) -> None:
    with pytest.raises(FileNotFoundError, match=r"'outputs/run/fnial' .* outputs/run holds \[\]"):
        resolve_pretrained("outputs/run/fnial")
    (in_a_project / "outputs" / "run" / "final").mkdir()
    assert resolve_pretrained("outputs/run/final") == "outputs/run/final"


@pytest.mark.parametrize("name", ["openai/clip-vit-base-patch16", "CIDAS/clipseg-rd64-refined", "gpt2", "tiny-clip"])
def test_hub_ids_and_factory_keys_pass_unchecked(in_a_project, name: str) -> None:
    assert resolve_pretrained(name) == name


def test_loaders_fail_at_once_without_asking_the_hub(in_a_project) -> None:
    from datasets import Dataset

    from nemo_hf import NeMo
    from nemo_hf.mining.clip import load_clip
    from nemo_hf.modeling import load_referring_segmenter

    pool = Dataset.from_dict({"image": [], "image_id": []})
    calls = {
        "load_referring_segmenter": lambda: load_referring_segmenter("outputs/nope"),
        "load_clip": lambda: load_clip("./missing"),
        "NeMo": lambda: NeMo(pool, clip="./missing"),  # at construction, not at the first mining
    }
    for name, call in calls.items():
        started = time.perf_counter()
        with pytest.raises(FileNotFoundError, match="is a local path"):
            call()
        assert time.perf_counter() - started < 1.0, name


def test_training_arguments_name_a_missing_model_before_any_data_is_built(in_a_project) -> None:
    from nemo_hf.trainer.args import EVALUATE_DATACLASSES, TRAIN_DATACLASSES, parse_arguments

    with pytest.raises(FileNotFoundError, match="'outputs/nope' is a local path"):
        parse_arguments(["--synthetic_images", "4", "--model_name_or_path", "outputs/nope"], EVALUATE_DATACLASSES)
    with pytest.raises(FileNotFoundError, match="'./clip' is a local path"):
        parse_arguments(["--synthetic_images", "4", "--clip_model", "./clip"], TRAIN_DATACLASSES)
    parse_arguments(["--synthetic_images", "4", "--clip_model", "./clip", "--augmentation", "random"],
                    TRAIN_DATACLASSES)  # no mining: the CLIP is not used
