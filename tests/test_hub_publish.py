"""training/train.py --push_to_hub against the local Hub, read back with the real clients over HTTP.

Every push and download here goes through unpatched huggingface_hub, transformers and
datasets to the session's local Hub-compatible server (tests/hub_server), which enforces
tokens, private repositories and all-or-nothing commits as the Hub does.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from nemo_hf.trainer import segmenter_training as train
from tests.hub_server import LOCAL_HUB_OTHER_TOKEN, LOCAL_HUB_TOKEN
from tests.training_runs import TRAINING, final_weights, launch, reset_accelerate, run_to_completion, tiny_args

pytestmark = pytest.mark.hub

torch.set_num_threads(1)


_STATE_FILES = ("optimizer", "scheduler", "random_states", "sampler", "trainer_state")


@pytest.fixture(autouse=True)
def _fresh_accelerate_state():
    yield
    reset_accelerate()


def _tiny_push(output_dir: Path, repo_id: str, *extra: str) -> list[str]:
    """A 2-step tiny run on the random tiny CLIPSeg that pushes to ``repo_id``."""
    return tiny_args(output_dir, "--max_train_steps", "2", "--checkpointing_steps", "none", "--push_to_hub",
                     "--hub_model_id", repo_id, *extra)


def _repo_files(repo_id: str, **kwargs) -> list[str]:
    from huggingface_hub import HfApi

    return sorted(HfApi().list_repo_files(repo_id, **kwargs))


def test_a_pushed_run_loads_back_with_the_pipeline_and_with_plain_transformers(
        tmp_path, hub_repo_id, tiny_clipseg_dir) -> None:
    import transformers
    from huggingface_hub import ModelCard
    from PIL import Image
    from safetensors.torch import load_file
    from transformers import AutoProcessor, CLIPSegForImageSegmentation

    import nemo_hf
    from nemo_hf.modeling import load_referring_segmenter, predict_masks

    out = tmp_path / "run"
    results = train.main(_tiny_push(out, hub_repo_id, "--model_name_or_path", str(tiny_clipseg_dir),
                                    "--hub_token", LOCAL_HUB_TOKEN))

    files = _repo_files(hub_repo_id)
    assert files == sorted([".gitattributes", *(p.name for p in (out / "final").iterdir())])
    assert {"model.safetensors", "config.json", "processor_config.json", "README.md", "all_results.json",
            "train_config.yaml"} <= set(files)
    assert not [f for f in files if f.startswith(_STATE_FILES) or f.endswith((".pkl", ".bin"))], files
    saved = yaml.safe_load((out / "train_config.yaml").read_text())
    assert saved["hub_token"] is None and LOCAL_HUB_TOKEN not in (out / "final" / "train_config.yaml").read_text()

    # plain transformers, no nemo_hf: the very weights that final/ holds
    model = CLIPSegForImageSegmentation.from_pretrained(hub_repo_id)
    expected = final_weights(out)
    assert expected and all(torch.equal(model.state_dict()[name], tensor) for name, tensor in expected.items())
    processor = AutoProcessor.from_pretrained(hub_repo_id)
    assert type(processor).__name__ == "CLIPSegProcessor"

    # the pipeline, by repo id, through transformers' own factory and nemo_hf's
    image = Image.new("RGB", (50, 30), "red")
    by_transformers = transformers.pipeline("referring-image-segmentation", model=hub_repo_id, device="cpu")
    by_nemo_hf = nemo_hf.pipeline(model=hub_repo_id, device="cpu")
    local, local_processor = load_referring_segmenter(out / "final")
    [reference] = predict_masks(local, local_processor, [image], ["the red one"])
    for segmenter in (by_transformers, by_nemo_hf):
        result = segmenter(image, "the red one")
        assert result["mask"].size == (50, 30) and 0.0 <= result["score"] <= 1.0
        np.testing.assert_array_equal(np.asarray(result["mask"]) > 0, reference)
        assert all(torch.equal(segmenter.model.state_dict()[f"model.{name}"], tensor)
                   for name, tensor in expected.items())

    # the card parses back, with the real repo id, the metrics per split and what was trained
    card = ModelCard.load(hub_repo_id)
    assert f'model="{hub_repo_id}"' in card.text and f'from_pretrained("{hub_repo_id}")' in card.text
    assert str(out) not in card.text
    scores = {(r.dataset_split, r.metric_type): r.metric_value for r in card.data.eval_results}
    for split in ("val", "testB"):
        for key in ("overall_iou", "mean_iou", *(f"precision@{x}" for x in ("0.5", "0.6", "0.7", "0.8", "0.9"))):
            assert scores[split, key] == pytest.approx(results["eval"][split][key])
    assert {r.dataset_config for r in card.data.eval_results} == {"refcoco_unc"}
    assert card.data.base_model is None  # a local folder is no Hub model to link
    assert "**Trained: the CLIPSeg decoder only**" in card.text and "Augmentation: **none**" in card.text
    assert "--config reproduce/train_config.yaml" in card.text
    assert json.loads((out / "logs" / "hub_push.json").read_text())["repo_id"] == hub_repo_id
    assert load_file(Path(_download(hub_repo_id, "model.safetensors"))).keys() == expected.keys()


def _download(repo_id: str, filename: str, **kwargs) -> str:
    from huggingface_hub import hf_hub_download

    return hf_hub_download(repo_id, filename, **kwargs)


def test_a_private_repo_is_invisible_to_anyone_but_its_owner(tmp_path, hub_repo_id, tiny_clipseg_dir) -> None:
    from huggingface_hub import HfApi
    from huggingface_hub.errors import RepositoryNotFoundError

    import nemo_hf

    train.main(_tiny_push(tmp_path / "run", hub_repo_id, "--model_name_or_path", str(tiny_clipseg_dir),
                          "--hub_private_repo"))
    assert HfApi().repo_info(hub_repo_id).private  # the owner sees it
    for token in (LOCAL_HUB_OTHER_TOKEN, False):
        with pytest.raises(RepositoryNotFoundError):
            HfApi(token=token).repo_info(hub_repo_id)
        with pytest.raises(OSError):  # transformers' loaders say the repository is not there
            nemo_hf.pipeline(model=hub_repo_id, token=token, device="cpu")
    assert nemo_hf.pipeline(model=hub_repo_id, token=LOCAL_HUB_TOKEN, device="cpu") is not None


def test_a_hub_model_without_its_tokenizer_is_refused_not_run_with_an_empty_one(hub_repo_id, tiny_clipseg_dir) -> None:
    """transformers builds a tokenizer without tokenizer.json: no vocabulary, every word unknown, no error."""
    from huggingface_hub import HfApi

    import nemo_hf
    from nemo_hf.modeling import load_referring_segmenter

    HfApi().create_repo(hub_repo_id)
    HfApi().upload_folder(repo_id=hub_repo_id, folder_path=str(tiny_clipseg_dir), ignore_patterns=["tokenizer.json"])
    message = rf"{hub_repo_id} holds a clipseg model but not its processor: its tokenizer has no vocabulary"
    with pytest.raises(FileNotFoundError, match=message):
        load_referring_segmenter(hub_repo_id)
    with pytest.raises(FileNotFoundError, match=message):
        nemo_hf.pipeline(model=hub_repo_id, device="cpu")


def test_revision_pins_an_older_push_and_pushing_twice_is_harmless(tmp_path, hub_repo_id, tiny_clipseg_dir) -> None:
    from huggingface_hub import HfApi

    import nemo_hf
    from nemo_hf.hub.model_repos import push_model_folder

    model = ("--model_name_or_path", str(tiny_clipseg_dir))
    train.main(_tiny_push(tmp_path / "first", hub_repo_id, *model))
    first = HfApi().repo_info(hub_repo_id).sha
    reset_accelerate()
    train.main([*_tiny_push(tmp_path / "second", hub_repo_id, *model), "--max_train_steps", "4"])
    second = HfApi().repo_info(hub_repo_id).sha
    assert first != second

    def pipeline_weights(**kwargs) -> dict[str, torch.Tensor]:
        segmenter = nemo_hf.pipeline(model=hub_repo_id, device="cpu", **kwargs)
        return {name.removeprefix("model."): t for name, t in segmenter.model.state_dict().items()}

    for revision, run in ((first, "first"), (None, "second")):
        loaded = pipeline_weights(revision=revision)
        assert all(torch.equal(loaded[name], tensor) for name, tensor in final_weights(tmp_path / run).items())
    assert json.loads(Path(_download(hub_repo_id, "all_results.json", revision=first)).read_text())[
        "train_steps"] == 2

    # the same folder again: nothing changes, nothing breaks
    commits = len(HfApi().list_repo_commits(hub_repo_id))
    assert push_model_folder(tmp_path / "second" / "final", hub_repo_id, message="again") == second
    assert len(HfApi().list_repo_commits(hub_repo_id)) == commits and HfApi().repo_info(hub_repo_id).sha == second


def test_a_push_that_fails_midway_says_so_and_leaves_main_unchanged(
        tmp_path, hub_repo_id, tiny_clipseg_dir, monkeypatch) -> None:
    """The weights' upload is lost on the way (the client carries on): the server refuses the commit whole."""
    import huggingface_hub._commit_api as commit_api
    from huggingface_hub import HfApi

    from nemo_hf.hub.model_repos import HubPushError, push_model_folder

    train.main(_tiny_push(tmp_path / "run", hub_repo_id, "--model_name_or_path", str(tiny_clipseg_dir)))
    before = HfApi().repo_info(hub_repo_id).sha
    files_before = _repo_files(hub_repo_id)
    folder = tmp_path / "changed"
    folder.mkdir()
    for name in ("config.json", "README.md"):
        (folder / name).write_bytes((tmp_path / "run" / "final" / name).read_bytes())
    (folder / "README.md").write_text("a new card\n")
    (folder / "model.safetensors").write_bytes(b"\0" * 1000)  # large-file mode: goes through the lost upload

    real_upload = commit_api.lfs_upload
    with monkeypatch.context() as patch:
        patch.setattr(commit_api, "lfs_upload", lambda **kwargs: None)
        with pytest.raises(HubPushError, match=rf"(?s)pushing {folder} to {hub_repo_id} .* failed: .*was never uploaded.*Nothing of it "
                                               r"landed .*the repository is as it was"):
            push_model_folder(folder, hub_repo_id, message="half a push")
    assert commit_api.lfs_upload is real_upload
    assert HfApi().repo_info(hub_repo_id).sha == before and _repo_files(hub_repo_id) == files_before
    assert Path(_download(hub_repo_id, "README.md")).read_text() != "a new card\n"
    push_model_folder(folder, hub_repo_id, message="the whole push")  # once the cause is gone, it lands
    assert Path(_download(hub_repo_id, "README.md")).read_text() == "a new card\n"


# `accelerate launch THIS train.py args…` runs train.py as `accelerate launch train.py args…` does, and appends
# one JSON line [process index, "model" | "dataset"] to $PUSH_LOG whenever a process starts a push
RECORDING_PUSHES = """
import json, os, runpy, sys
from accelerate import PartialState
import nemo_hf.hub.runs as runs

def recording(kind, push):
    def call(*args, **kwargs):
        with open(os.environ["PUSH_LOG"], "a") as log:
            log.write(json.dumps([PartialState().process_index, kind]) + "\\n")
        return push(*args, **kwargs)
    return call

runs.push_model_folder = recording("model", runs.push_model_folder)
runs.push_mined_dataset = recording("dataset", runs.push_mined_dataset)
if __name__ == "__main__":  # not again in a process that multiprocessing spawns, which imports this file
    sys.argv = sys.argv[1:]
    runpy.run_path(sys.argv[0], run_name="__main__")
"""


@pytest.mark.slow
def test_only_the_main_process_of_a_two_process_run_pushes(tmp_path, hub_repo_id, tiny_clipseg_dir, local_hub) -> None:
    """Two processes, a model pushed at steps 2 and 4 and at the end, and the mined training set: each push once.

    Every process holds the same model and data, so a push from each would not change what
    the repositories end up holding: the pushes themselves are counted, in the processes and
    by the server.
    """
    dataset_id = hub_repo_id.replace("user/", "user/data-")
    wrapper, log = tmp_path / "recording_pushes.py", tmp_path / "pushes.jsonl"
    wrapper.write_text(RECORDING_PUSHES)
    out = tmp_path / "run"
    run = run_to_completion(launch(
        str(wrapper), str(TRAINING / "train.py"),
        *tiny_args(out, "--model_name_or_path", str(tiny_clipseg_dir), "--max_train_steps", "4",
                   "--checkpointing_steps", "2", "--push_to_hub", "--hub_model_id", hub_repo_id,
                   "--push_dataset_to_hub", dataset_id, augmentation="nemo"),
        processes=2), timeout=400, PUSH_LOG=str(log))
    assert json.loads((out / "final" / "all_results.json").read_text())["num_processes"] == 2
    pushes = sorted(tuple(json.loads(line)) for line in log.read_text().splitlines())
    assert pushes == [(0, "dataset"), (0, "model"), (0, "model"), (0, "model")], pushes
    assert "failed" not in run.stdout + run.stderr
    # what the server received: one preupload per model push (steps 2 and 4, the end), each leaving one commit
    requests = local_hub.log_path.read_text()
    assert requests.count(f"POST /api/models/{hub_repo_id}/preupload/main") == 3
    assert requests.count(f"POST /api/models/{hub_repo_id}/commit/main") == 3
    from huggingface_hub import HfApi

    titles = [c.title for c in HfApi().list_repo_commits(hub_repo_id)]
    assert titles[0].startswith("End of training: step 4")
    assert titles[1:] == ["Training in progress, step 4", "Training in progress, step 2", "initial commit"]


def test_the_retry_command_of_a_failed_final_push_works_as_printed_from_anywhere(
        tmp_path, hub_repo_id, tiny_clipseg_dir, monkeypatch) -> None:
    """The command named the folder as the run did (relative to where it ran): from elsewhere, nothing there."""
    import re
    import shutil
    import subprocess
    import sys

    from huggingface_hub import HfApi

    from nemo_hf.hub.model_repos import HubPushError

    (tmp_path / "work").mkdir()
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "work")

    def dropped(*args, **kwargs):
        raise OSError("the connection dropped")

    with monkeypatch.context() as patch:
        patch.setattr(HfApi, "create_commit", dropped)
        with pytest.raises(HubPushError) as failed:
            train.main(_tiny_push(Path("my run"), hub_repo_id, "--model_name_or_path", str(tiny_clipseg_dir),
                                  "--hub_strategy", "end"))
    message = str(failed.value)
    assert "the connection dropped" in message and "Nothing of it landed" in message
    [command] = re.findall(r"`(hf upload [^`]+)`", message)
    assert (tmp_path / "work" / "my run" / "final" / "model.safetensors").is_file()
    assert "model.safetensors" not in _repo_files(hub_repo_id)

    hf = shutil.which("hf") or str(Path(sys.executable).parent / "hf")
    run = subprocess.run(command.replace("hf", hf, 1), shell=True, cwd=tmp_path / "elsewhere", capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert sorted(_repo_files(hub_repo_id)) == sorted(
        [".gitattributes", *(p.name for p in (tmp_path / "work" / "my run" / "final").iterdir())])


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--hub_model_id", "user/bad--name"), r"--hub_model_id 'user/bad--name' is not a Hub repository id"),
        (("--hub_model_id", "other-user/model"), r"'user' may not push to other-user/model: .*\['user'\]"),
        (("--hub_model_id", "user/x", "--hub_token", "hf_unknown"), r"refused the token \(401\)"),
    ],
    ids=["bad-id", "other-namespace", "unknown-token"],
)
def test_a_push_that_cannot_land_stops_before_training(tmp_path, flags, message) -> None:
    out = tmp_path / "run"
    with pytest.raises(ValueError, match=message):
        train.main(tiny_args(out, "--push_to_hub", *flags))
    assert not out.exists()  # nothing built, nothing trained


def test_a_push_without_any_token_stops_before_training(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("HF_TOKEN")  # and the session's HF_HOME holds no login
    out = tmp_path / "run"
    with pytest.raises(ValueError, match=r"needs a token with write access: run `hf auth login`, set HF_TOKEN"):
        train.main(tiny_args(out, "--push_to_hub", "--hub_model_id", "user/anything"))
    assert not out.exists()


def test_a_private_push_into_an_existing_public_repo_is_refused(tmp_path, hub_repo_id) -> None:
    from huggingface_hub import HfApi

    HfApi().create_repo(hub_repo_id)
    with pytest.raises(ValueError, match=rf"{hub_repo_id} already exists and is public, but --hub_private_repo"):
        train.main(tiny_args(tmp_path / "run", "--push_to_hub", "--hub_model_id", hub_repo_id, "--hub_private_repo"))
    assert not HfApi().repo_info(hub_repo_id).private


class _Stop(Exception):
    """Ends a run between two steps, as a kill would."""


def test_hub_strategy_checkpoint_resumes_a_stopped_run_from_the_hub_on_another_machine(
        tmp_path, hub_repo_id, tiny_clipseg_dir, monkeypatch, capsys) -> None:
    """Stopped after step 4 (its checkpoint pushed); resumed in an empty folder from the Hub alone.

    Equal weights alone would not show a resume (a deterministic run restarted from scratch
    ends the same), so the resumed run must also say where it restarted and collate only the
    batches after it: those the uninterrupted run took from that step on. (Accelerate's
    loader fetches one batch ahead, so each run collates one batch past its last step.)
    """
    from huggingface_hub import HfApi

    from nemo_hf.modeling import RISCollator

    collate, batches, stop_at = RISCollator.__call__, [], [None]

    def recording(self, rows):
        if not self.with_targets:  # a training batch (evaluation batches carry targets)
            if len(batches) == stop_at[0]:
                raise _Stop
            batches.append([row["ref_id"] for row in rows])
        return collate(self, rows)

    monkeypatch.setattr(RISCollator, "__call__", recording)
    common = ("--model_name_or_path", str(tiny_clipseg_dir), "--max_train_steps", "6", "--checkpointing_steps", "2")
    train.main(tiny_args(tmp_path / "uninterrupted", *common))
    uninterrupted = list(batches)
    assert len(uninterrupted) == 7

    reset_accelerate()
    batches.clear()
    stop_at[0] = 5  # fetching batch 6, while step 5 waits: after step 4 and its checkpoint
    pushing = ("--push_to_hub", "--hub_model_id", hub_repo_id, "--hub_strategy", "checkpoint")
    with pytest.raises(_Stop):
        train.main(tiny_args(tmp_path / "stopped", *common, *pushing))
    files = _repo_files(hub_repo_id)
    assert "last-checkpoint/trainer_state.json" in files and "last-checkpoint/optimizer.bin" in files
    assert json.loads(Path(_download(hub_repo_id, "last-checkpoint/trainer_state.json")).read_text())[
        "completed_steps"] == 4
    assert not any(f.startswith(_STATE_FILES) for f in files)  # training state only under last-checkpoint/
    titles = [c.title for c in HfApi().list_repo_commits(hub_repo_id)]
    assert titles[:2] == ["Training in progress, step 4", "Training in progress, step 2"]

    reset_accelerate()
    batches.clear()
    stop_at[0] = None
    capsys.readouterr()
    elsewhere = tmp_path / "another-machine"
    results = train.main(tiny_args(elsewhere, *common, *pushing, "--resume_from_checkpoint", "hub"))
    assert f"resumed from {elsewhere / 'checkpoints' / 'step_4'} at step 4: 2 steps left" in capsys.readouterr().out
    assert batches == uninterrupted[4:] and results["train_steps"] == 6  # only the steps left were run
    for name, tensor in final_weights(tmp_path / "uninterrupted").items():
        assert torch.equal(final_weights(elsewhere)[name], tensor), name
    assert json.loads(Path(_download(hub_repo_id, "last-checkpoint/trainer_state.json")).read_text())[
        "completed_steps"] == 6
    assert HfApi().list_repo_commits(hub_repo_id)[0].title.startswith("End of training: step 6")


def test_resuming_from_a_repo_without_training_state_says_why(tmp_path, hub_repo_id, tiny_clipseg_dir) -> None:
    train.main(_tiny_push(tmp_path / "run", hub_repo_id, "--model_name_or_path", str(tiny_clipseg_dir),
                          "--hub_strategy", "end"))
    reset_accelerate()
    with pytest.raises(FileNotFoundError, match=r"holds no last-checkpoint/trainer_state.json; only runs pushed with "
                                                r"--hub_strategy checkpoint"):
        train.main(tiny_args(tmp_path / "again", "--hub_model_id", hub_repo_id, "--resume_from_checkpoint", "hub"))


def test_a_pushed_training_set_trains_with_nemo_elsewhere_without_any_clip(
        tmp_path, hub_repo_id, monkeypatch) -> None:
    """--push_dataset_to_hub, then load_dataset from the Hub, then NeMo training that never loads a CLIP."""
    from datasets import Image, load_dataset
    from huggingface_hub import DatasetCard, HfApi

    import nemo_hf.mining.clip

    dataset_id = hub_repo_id.replace("user/", "user/data-")
    results = train.main(tiny_args(tmp_path / "miner", "--max_train_steps", "2", "--checkpointing_steps", "none",
                                   "--push_dataset_to_hub", dataset_id, "--seed", "7", augmentation="nemo"))
    assert results["mining_clip"]["name"] == "nemo-hf/synthetic-clip"

    config = "refcoco_unc-nemo"
    loaded = load_dataset(dataset_id, config)
    assert sorted(loaded) == ["testB", "train", "val"]
    train_split = loaded["train"]
    assert len(train_split) == results["train_samples"]
    for row in train_split.select(range(5)):
        assert len(row["negative_image_ids"]) == len(row["negative_scores"]) == len(row["sentences"])
        assert all(ids and set(ids) <= set(train_split["image_id"]) - {row["image_id"]}
                   for ids in row["negative_image_ids"])
    raw = train_split.cast_column("image", Image(decode=False))[0]["image"]
    assert raw["bytes"] and not Path(raw["path"] or "/nonexistent").exists()  # embedded, not a local path
    assert loaded["val"][0]["negative_image_ids"] is None  # evaluation is never mined

    card = DatasetCard.load(dataset_id, repo_type="dataset")
    for fact in ("**Synthetic data, not RefCOCO**", "CLIP `nemo-hf/synthetic-clip`", "shipped inside nemo_hf",
                 "`tau_image` 0.9", "`top_k` 10",
                 "seed 7", "sentences fell back", f"]({config}/samples.png)", "| train | 80 |"):
        assert fact in card.text, fact
    assert f"{config}/samples.png" in HfApi().list_repo_files(dataset_id, repo_type="dataset")

    # another machine: the pushed config is the data source; mining would need a CLIP, and none is there
    # (the local Hub has no openai/clip-vit-base-patch16, and loading any CLIP fails)
    reset_accelerate()

    def no_clip(*args, **kwargs):
        raise AssertionError("a CLIP was loaded")

    monkeypatch.setattr(nemo_hf.mining.clip, "load_clip", no_clip)
    again = train.main(tiny_args(tmp_path / "elsewhere", "--synthetic_images", "0", "--hub_dataset", dataset_id,
                                 "--dataset_name", config, "--clip_model", "openai/clip-vit-base-patch16", "--max_train_steps", "2",
                                 "--checkpointing_steps", "none", "--mosaic_prob", "1.0", augmentation="nemo"))
    assert again["train_steps"] == 2 and again["eval"]["val"]["count"] == 16
    assert again["mining_clip"] is None
    card_text = (tmp_path / "elsewhere" / "final" / "README.md").read_text()
    assert "came with their negatives mined" in card_text
