"""training/train.py and training/eval_ris.py on the CPU smoke config (a CLIPSeg on the shipped CLIP).

In-process runs call the package's ``main(argv)`` that the scripts call (``nemo_hf.trainer.segmenter_training``,
``segmenter_evaluation``, ``clip_training``); the multi-process and kill/resume runs start the scripts as real
processes (``accelerate launch``, ``python training/train.py``) as a user would. Every run
reads the same synthetic tree, generated once per session in the test datasets cache.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from nemo_hf.trainer import clip_training as train_clip
from nemo_hf.trainer import segmenter_evaluation as eval_ris
from nemo_hf.trainer import segmenter_training as train
from nemo_hf.trainer.args import TRAIN_DATACLASSES, TrainingConfig, parse_arguments
from nemo_hf.trainer.data import as_sentences, build_train_dataset, load_splits
from tests.training_runs import REPO, TINY_CONFIG, TRAINING, launch, run_to_completion, subprocess_env
from tests.training_runs import final_weights as _weights
from tests.training_runs import reset_accelerate as _reset_accelerate
from tests.training_runs import tiny_args as _tiny

CONFIGS = sorted((TRAINING / "configs").glob("*.yaml"))

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _fresh_accelerate_state():
    yield
    _reset_accelerate()


def _initial_model():
    """The model a run of the tiny config starts from, built as train.py builds it."""
    from nemo_hf.modeling import load_referring_segmenter

    config = TrainingConfig.parse(["--config", str(TINY_CONFIG)])
    return load_referring_segmenter(config.model.model_name_or_path, trainable=config.model.trainable,
                                    image_size=config.model.image_size, seed=config.run.seed)


def _fixed_batch_loss(model, batch) -> float:
    from nemo_hf.modeling import per_sample_bce

    model.eval()
    with torch.no_grad():
        logits = model(batch["pixel_values"], batch["input_ids"], batch["attention_mask"]).logits
    return per_sample_bce(logits, batch["labels"]).mean().item()


# ----------------------------------------------------------------------------- arguments


def test_yaml_config_is_read_and_flags_override_it(tmp_path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text("synthetic_images: 24\nlearning_rate: 1e-3\neval_splits: [val, testA]\n"
                      "verify_images: false\nmax_train_steps: 5\n")
    parsed = TrainingConfig.parse(["--config", str(config), "--learning_rate", "2e-3"])
    data, args = parsed.data, parsed.run
    assert data.synthetic_images == 24 and data.eval_splits == ["val", "testA"] and data.verify_images is False
    assert args.learning_rate == 2e-3 and isinstance(args.max_train_steps, int) and args.max_train_steps == 5
    saved = parsed.save(tmp_path / "saved.yaml")
    assert TrainingConfig.parse(["--config", str(saved)]) == parsed


def test_config_errors_name_the_file_and_the_value(tmp_path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("synthetic_images: 24\nlearning_rat: 1e-3\n")
    with pytest.raises(ValueError, match=r"bad\.yaml: unknown keys \['learning_rat'\]"):
        parse_arguments(["--config", str(config)], TRAIN_DATACLASSES)
    with pytest.raises(ValueError, match="exactly one data source"):
        parse_arguments(["--synthetic_images", "24", "--hub_dataset", "me/refcoco"],
                                   TRAIN_DATACLASSES)
    with pytest.raises(ValueError, match=r"synthetic_images=40 .*tiny_synthetic\.yaml.*add --synthetic_images 0"):
        parse_arguments(["--config", str(TINY_CONFIG), "--data_dir", "refer", "--image_dir", "coco"],
                        TRAIN_DATACLASSES)  # the config's synthetic source is still on
    with pytest.raises(ValueError, match="checkpointing_steps"):
        parse_arguments(["--synthetic_images", "24", "--checkpointing_steps", "often"],
                                   TRAIN_DATACLASSES)
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        parse_arguments(["--config", str(tmp_path / "missing.yaml")], TRAIN_DATACLASSES)


def _arguments_of(config: Path) -> tuple:
    """The argument dataclasses of the script a shipped config is for (the command in its header names it)."""
    found = re.search(rf"training/(\w+)\.py --config training/configs/{re.escape(config.name)}", config.read_text())
    assert found, f"{config} shows no command that reads it"
    if found[1] == "train":
        return TRAIN_DATACLASSES
    if found[1] == "train_clip":
        return (train_clip.ClipTrainingArguments,)
    pytest.fail(f"{config} is for training/{found[1]}.py: add its argument dataclasses here")


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_parse(config: Path) -> None:
    dataclasses = _arguments_of(config)
    parsed = parse_arguments(["--config", str(config)], dataclasses)
    assert parsed[-1].output_dir.startswith("outputs/")
    if dataclasses is TRAIN_DATACLASSES:
        config = TrainingConfig(*parsed)
        assert config.data.eval_splits and config.augmentation.augmentation in ("none", "random", "nemo")


@pytest.mark.skipif(not (REPO / ".gitignore").is_file(), reason="not a source checkout")
def test_default_output_folders_are_git_ignored() -> None:
    from nemo_hf.trainer.args import EvaluateArguments, TrainArguments

    ignored = {line.strip().rstrip("/") for line in (REPO / ".gitignore").read_text().splitlines()}
    configs = [yaml.safe_load(path.read_text())["output_dir"] for path in (TRAINING / "configs").glob("*.yaml")]
    defaults = [TrainArguments().output_dir, EvaluateArguments().output_dir,
                train_clip.ClipTrainingArguments().output_dir, *configs]
    assert [d for d in defaults if Path(d).parts[0] not in ignored] == []


@pytest.mark.parametrize("script", ["train", "eval_ris", "train_clip"])
def test_help_shows_the_script_docstring_as_written(script: str, capsys) -> None:
    import ast

    module = {"train": train, "eval_ris": eval_ris, "train_clip": train_clip}[script]
    # the script's own docstring, which it hands to its package main (read, not imported: a script, not a module)
    docstring = ast.get_docstring(ast.parse((TRAINING / f"{script}.py").read_text()), clean=False)
    assert "main(sys.argv[1:], description=__doc__)" in (TRAINING / f"{script}.py").read_text()
    with pytest.raises(SystemExit):
        module.main(["--help"], description=docstring)
    shown = capsys.readouterr().out
    examples = [line for line in docstring.splitlines() if line.startswith("    ")]
    assert examples and all(line in shown.splitlines() for line in examples)  # continuations (\) kept
    assert {"train": "--learning_rate", "eval_ris": "--num_sample_predictions", "train_clip": "--num_images"}[script] in shown


# ----------------------------------------------------------------------------- in process


def test_tiny_config_trains_in_process_and_the_loss_on_a_fixed_batch_goes_down(tmp_path) -> None:
    from nemo_hf.modeling import RISCollator, load_referring_segmenter

    out = tmp_path / "run"
    results = train.main(_tiny(out, "--max_train_steps", "30", "--checkpointing_steps", "13", "--logging_steps", "10",
                               "--report_to", "tensorboard",
                               "--lr_scheduler_type", "constant", "--num_warmup_steps", "0"))

    initial, processor = _initial_model()
    trained, _ = load_referring_segmenter(out / "final")
    data = TrainingConfig.parse(["--config", str(TINY_CONFIG)]).data
    rows = as_sentences(load_splits(data, ["train"])["train"], limit=16)
    batch = RISCollator(processor)(list(rows))
    before, after = _fixed_batch_loss(initial, batch), _fixed_batch_loss(trained, batch)
    assert after < 0.8 * before, (before, after)

    assert results["train_steps"] == 30 and results["num_processes"] == 1 and results["train_loss"] > 0
    assert results["trained_parameters"] == sum(p.numel() for p in initial.model.decoder.parameters())
    assert results["total_parameters"] == sum(p.numel() for p in initial.parameters())
    assert set(results["eval"]) == {"val", "testB"}
    assert all(r["count"] == 16 for r in results["eval"].values())
    assert json.loads((out / "final" / "all_results.json").read_text()) == json.loads(json.dumps(results))
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_13", "step_26"]
    logged = [json.loads(line) for line in (out / "logs" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged if "train/loss" in r] == [10, 20, 30]
    assert [r["step"] for r in logged if "eval/val/overall_iou" in r] == [10, 20, 30]  # 80 refs, batches of 8
    assert list((out / "logs").rglob("events.out.tfevents.*")), "no TensorBoard events"
    saved = yaml.safe_load((out / "train_config.yaml").read_text())
    assert saved["max_train_steps"] == 30 and saved["augmentation"] == "none"
    assert (out / "final" / "train_config.yaml").read_text() == (out / "train_config.yaml").read_text()
    assert sorted(p.name for p in out.iterdir()) == ["checkpoints", "final", "logs", "train_config.yaml"]
    card = (out / "final" / "README.md").read_text()  # the model card says what was trained and how it scored
    assert "**Trained: the CLIPSeg decoder only**" in card and "Augmentation: **none**" in card
    assert f"| val | 16 | {results['eval']['val']['overall_iou']:.4f} |" in card
    _assert_a_model_folder_without_training_state(out / "final")


@pytest.mark.slow
def test_the_tiny_config_learns_what_no_untrained_model_scores(tmp_path) -> None:
    """The config as shipped (its 400 steps, about 30 s here) must beat a threshold that needs learning.

    It scored oIoU 0.0000 on every split, as a broken pipeline would. Neither the model it
    starts from nor a mask of the whole picture comes near 0.2 on val; the run gets about 0.33.
    """
    from accelerate import Accelerator
    from torch.utils.data import DataLoader

    from nemo_hf.modeling import RISCollator
    from nemo_hf.modeling.evaluation import evaluate_referring

    results = train.main(["--config", str(TINY_CONFIG), "--output_dir", str(tmp_path / "run"), "--report_to", "none",
                          "--checkpointing_steps", "none", "--eval_splits", "val"])
    learned = results["eval"]["val"]["overall_iou"]

    _reset_accelerate()
    model, processor = _initial_model()
    rows = as_sentences(load_splits(TrainingConfig.parse(["--config", str(TINY_CONFIG)]).data, ["val"])["val"])
    loader = DataLoader(rows, batch_size=8, collate_fn=RISCollator(processor, with_targets=True))
    untrained = evaluate_referring(model, loader, Accelerator(cpu=True))["overall_iou"]
    masks = [np.asarray(mask, dtype=bool) for mask in rows["mask"]]
    whole_picture = sum(int(mask.sum()) for mask in masks) / sum(mask.size for mask in masks)
    assert max(untrained, whole_picture) < 0.05, (untrained, whole_picture)
    assert learned > 0.2, (learned, results["learning_curve"])


def _assert_a_model_folder_without_training_state(folder: Path) -> None:
    """What an upload of ``folder`` sends: the model, its processor, card and results; no training state."""
    from transformers import CLIPSegForImageSegmentation

    files = sorted(p.name for p in folder.iterdir())
    assert all(p.is_file() for p in folder.iterdir()), files  # no checkpoints/ or logs/ inside
    state = [name for name in files if name.startswith(("optimizer", "scheduler", "random_states", "sampler",
                                                         "trainer_state", "pytorch_model_fsdp", "step_"))
             or name.endswith((".pkl", ".bin"))]
    assert not state, state
    assert {"model.safetensors", "config.json", "README.md", "all_results.json", "train_config.yaml"} <= set(files)
    CLIPSegForImageSegmentation.from_pretrained(folder)  # a plain transformers checkpoint


def test_a_used_output_dir_is_refused_and_overwrite_replaces_the_old_run_whole(tmp_path) -> None:
    out = tmp_path / "run"
    train.main(_tiny(out, "--max_train_steps", "4", "--checkpointing_steps", "2"))
    before = sorted(out.rglob("*"))
    _reset_accelerate()
    again = _tiny(out, "--max_train_steps", "2", "--checkpointing_steps", "1")
    with pytest.raises(FileExistsError, match=f"{out} already holds .*--resume_from_checkpoint latest.*"
                                              "--overwrite_output_dir"):
        train.main(again)
    assert sorted(out.rglob("*")) == before  # nothing touched
    _reset_accelerate()
    train.main([*again, "--overwrite_output_dir"])
    # the old run's step_2 and step_4 are gone, not mixed with the new run's step_1 and step_2
    states = {p.name: json.loads((p / "trainer_state.json").read_text()) for p in (out / "checkpoints").iterdir()}
    assert sorted(states) == ["step_1", "step_2"] and len({s["run_id"] for s in states.values()}) == 1
    assert max(json.loads(line)["step"] for line in (out / "logs" / "metrics.jsonl").read_text().splitlines()) == 2
    assert json.loads((out / "final" / "all_results.json").read_text())["train_steps"] == 2
    assert sorted(p.name for p in out.iterdir()) == ["checkpoints", "final", "logs", "train_config.yaml"]
    _reset_accelerate()
    with pytest.raises(ValueError, match="would delete .*step_2, the checkpoint to resume from"):
        train.main([*again, "--overwrite_output_dir", "--resume_from_checkpoint", "latest"])


def test_a_folder_left_by_a_run_that_saved_nothing_is_taken_over_by_the_next_run(tmp_path, capsys) -> None:
    """A failed run left its train_config.yaml; the corrected rerun was refused and sent to
    ``--resume_from_checkpoint latest``, which found no checkpoint either."""
    out = tmp_path / "run"
    with pytest.raises(ValueError, match="has no split 'nope'"):
        train.main(_tiny(out, "--eval_splits", "nope"))
    assert sorted(p.name for p in out.iterdir()) == ["train_config.yaml"]  # all the failed run left
    _reset_accelerate()
    with pytest.raises(FileNotFoundError, match=rf"--resume_from_checkpoint latest, but {out / 'checkpoints'} holds "
                                                r"no checkpoint: .* start it again without --resume_from_checkpoint"):
        train.main(_tiny(out, "--max_train_steps", "2", "--resume_from_checkpoint", "latest"))
    _reset_accelerate()
    capsys.readouterr()
    results = train.main(_tiny(out, "--max_train_steps", "2", "--checkpointing_steps", "none"))
    assert (f"note: {out} held only what a run that saved no checkpoint and no model leaves (['train_config.yaml']): "
            "this run replaces it") in capsys.readouterr().out
    assert results["train_steps"] == 2 and yaml.safe_load((out / "train_config.yaml").read_text())["eval_splits"] == [
        "val", "testB"]

    # a finished run is one, checkpoints or not: refused, offering only what applies (it has no checkpoint)
    _reset_accelerate()
    with pytest.raises(FileExistsError) as refused:
        train.main(_tiny(out, "--max_train_steps", "2"))
    assert str(refused.value) == (f"{out} already holds a run: ['final', 'logs', 'train_config.yaml']. Pass "
                                  "--overwrite_output_dir to replace it, or another --output_dir")


@pytest.mark.parametrize(
    ("entries", "taken_over"),
    [
        (["logs/metrics.jsonl", "train_config.yaml"], True),  # killed in its first epoch
        (["checkpoints/.step_3.tmp/model.safetensors", ".final.tmp/config.json", "logs/"], True),  # killed mid-save
        (["checkpoints/step_3/trainer_state.json", "train_config.yaml"], False),  # a checkpoint to resume from
        (["final/config.json"], False),  # a model
        (["notes.txt", "train_config.yaml"], False),  # the user's own file
    ],
    ids=["killed-early", "killed-saving", "checkpoint", "model", "foreign-file"],
)
def test_only_a_checkpoint_a_model_or_a_foreign_file_make_a_folder_one_to_protect(tmp_path, entries,
                                                                                  taken_over) -> None:
    from nemo_hf.trainer.output_dir import TRAIN_ENTRIES, TRAIN_LEFTOVERS, claim_output_dir

    for entry in entries:
        path = tmp_path / entry
        if entry.endswith("/"):
            path.mkdir(parents=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("{}")
    claim = lambda: claim_output_dir(tmp_path, TRAIN_ENTRIES, overwrite=False, leftovers=TRAIN_LEFTOVERS)  # noqa: E731
    if taken_over:
        claim()
        assert list(tmp_path.iterdir()) == []
        return
    with pytest.raises(FileExistsError) as refused:
        claim()
    message = str(refused.value)
    assert ("--resume_from_checkpoint latest to continue it (from checkpoints/step_3)" in message) == (
        "checkpoint" in entries[0])
    assert ("keeps what is not a run's: ['notes.txt']" in message) == ("notes.txt" in entries)


def test_rotation_and_latest_go_by_run_not_by_step_number(tmp_path) -> None:
    from accelerate import Accelerator

    from nemo_hf.trainer.checkpoints import find_checkpoint, new_run, save_checkpoint

    accelerator = Accelerator(cpu=True)
    accelerator.prepare(torch.nn.Linear(2, 2))
    older, newer = {"run_id": "older", "run_started": 1.0}, new_run()
    for step in (100, 200):
        save_checkpoint(accelerator, tmp_path, {**older, "completed_steps": step}, total_limit=2)
    for step in (1, 2, 3):
        save_checkpoint(accelerator, tmp_path, {**newer, "completed_steps": step}, total_limit=2)
    # by step number alone, the newer run's low steps would be the ones deleted
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step_100", "step_2", "step_200", "step_3"]
    assert find_checkpoint("latest", tmp_path).name == "step_3"


def test_an_overwrite_that_dies_midway_leaves_the_old_run_set_aside_not_mixed(tmp_path, monkeypatch) -> None:
    from nemo_hf.trainer import output_dir
    from nemo_hf.trainer.checkpoints import find_checkpoint

    (tmp_path / "checkpoints" / "step_9").mkdir(parents=True)
    (tmp_path / "checkpoints" / "step_9" / "trainer_state.json").write_text('{"completed_steps": 9}')
    (tmp_path / "logs").mkdir()
    (tmp_path / "notes.txt").write_text("not the run's")

    def die(path, *args, **kwargs):
        raise OSError("killed")

    with monkeypatch.context() as patch:
        patch.setattr(output_dir.shutil, "rmtree", die)
        with pytest.raises(OSError, match="killed"):
            output_dir.claim_output_dir(tmp_path, output_dir.TRAIN_ENTRIES, overwrite=True)
    [aside] = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert sorted(p.name for p in tmp_path.iterdir()) == [aside, "notes.txt"]
    with pytest.raises(FileNotFoundError):  # nothing left that a resume could pick up
        find_checkpoint("latest", tmp_path)
    output_dir.claim_output_dir(tmp_path, output_dir.TRAIN_ENTRIES, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]  # what the run did not write stays


def test_gradient_accumulation_matches_a_larger_batch(tmp_path, tiny_clipseg_dir) -> None:
    from tests.tiny_clipseg import tiny_clipseg

    # the random tiny model: its short sums keep float reordering near 1e-7 (the shipped CLIP's
    # wider decoder: 1e-5, which Adam carries into the weights), so the tolerance below can be tight
    common = ("--max_train_steps", "4", "--checkpointing_steps", "none", "--max_grad_norm", "0",
              "--model_name_or_path", str(tiny_clipseg_dir))
    train.main(_tiny(tmp_path / "big", "--train_batch_size", "8", *common))
    _reset_accelerate()
    train.main(_tiny(tmp_path / "accumulated", "--train_batch_size", "4", "--gradient_accumulation_steps", "2",
                     *common))
    big, accumulated = _weights(tmp_path / "big"), _weights(tmp_path / "accumulated")
    initial = tiny_clipseg()[0].state_dict()
    moved = max((big[k] - initial[k]).abs().max().item() for k in big)
    assert moved > 1e-3
    for name in big:
        torch.testing.assert_close(accumulated[name], big[name], rtol=1e-5, atol=1e-6, msg=name)


class _Stop(Exception):
    """Ends a run between two steps, as a kill would."""


def test_a_run_with_gradient_accumulation_resumes_mid_epoch_at_the_right_micro_batch(
        tmp_path, tiny_clipseg_dir, monkeypatch, capsys) -> None:
    """Stopped after its step-3 checkpoint, resumed: the micro-batches and weights of the uninterrupted run.

    With 2 micro-batches per optimizer step, step 3 has consumed 6 micro-batches of the
    epoch: a resume that skipped 3 (the steps, not the micro-batches) would train on
    micro-batches 3–5 twice and end with other weights.
    """
    from nemo_hf.modeling.inputs import RISCollator

    collate = RISCollator.__call__
    seen: list[list[list[int]]] = []
    stop_at: list[int | None] = [None]

    def recording(self, rows):
        if not self.with_targets:  # training micro-batches only
            if len(seen) == stop_at[0]:
                raise _Stop
            seen.append([[r["ref_id"], r["sent_id"]] for r in rows])
        return collate(self, rows)

    monkeypatch.setattr(RISCollator, "__call__", recording)
    # 80 objects in micro-batches of 4: 20 per epoch, 10 optimizer steps; all of it inside epoch 1
    args = ("--model_name_or_path", str(tiny_clipseg_dir), "--train_batch_size", "4",
            "--gradient_accumulation_steps", "2", "--max_train_steps", "6", "--checkpointing_steps", "3",
            "--max_grad_norm", "0", "--eval_splits", "val", "--max_eval_samples", "4")
    train.main(_tiny(tmp_path / "full", *args))
    full = list(seen)
    assert len(full) == 12 + 1  # 6 steps of 2 micro-batches, and the one the loader fetched ahead

    seen.clear()
    stop_at[0] = 8  # inside step 4: after step_3 was saved, before step_6
    _reset_accelerate()
    with pytest.raises(_Stop):
        train.main(_tiny(tmp_path / "stopped", *args))
    assert sorted(p.name for p in (tmp_path / "stopped" / "checkpoints").iterdir()) == ["step_3"]

    seen.clear()
    stop_at[0] = None
    _reset_accelerate()
    capsys.readouterr()
    resumed = train.main([*_tiny(tmp_path / "stopped", *args), "--resume_from_checkpoint", "latest"])
    assert "at step 3: 3 steps left, from batch 6 of epoch 1" in capsys.readouterr().out
    assert Path(resumed["resumed_from"]).name == "step_3"
    assert seen == full[6:]  # micro-batches 6…11 (and the one fetched ahead): neither 3…5 again nor any skipped
    for name, tensor in _weights(tmp_path / "full").items():
        assert torch.equal(_weights(tmp_path / "stopped")[name], tensor), name


def test_bf16_mixed_precision_trains_on_cpu(tmp_path) -> None:
    results = train.main(_tiny(tmp_path / "bf16", "--mixed_precision", "bf16", "--max_train_steps", "3",
                               "--checkpointing_steps", "none"))
    assert results["mixed_precision"] == "bf16"
    assert np.isfinite(results["train_loss"]) and results["eval"]["val"]["count"] == 16


def test_eval_ris_script_writes_results_and_predictions(tmp_path, capsys) -> None:
    out, evaluation = tmp_path / "run", tmp_path / "eval"
    results = train.main(_tiny(out, "--max_train_steps", "3", "--checkpointing_steps", "none"))
    assert capsys.readouterr().out.splitlines()[-1].startswith(
        f"saved the model, processor, model card, all_results.json and train_config.yaml to {out / 'final'} "
        "(upload that folder)")
    _reset_accelerate()
    common = ["--config", str(out / "train_config.yaml"), "--output_dir", str(evaluation)]
    evaluated = eval_ris.main([*common, "--model_name_or_path", str(out / "final"), "--eval_splits", "val", "testB",
                               "--num_sample_predictions", "3"])
    # the same model, data and batches as the last evaluation of the training run
    assert evaluated["eval"]["val"] == results["eval"]["val"]
    assert evaluated["eval"]["testB"] == results["eval"]["testB"]
    assert json.loads((evaluation / "eval_results.json").read_text())["eval"]["val"]["count"] == 16
    from PIL import Image

    assert Image.open(evaluation / "predictions_val.png").size[0] == 3 * 256
    assert (evaluation / "predictions_testB.png").is_file()
    printed = capsys.readouterr().out
    assert printed.endswith(f"saved eval_results.json, eval_results.md, model_index.yaml, predictions_<split>.png to "
                            f"{evaluation}\n")
    assert "## val: 16 expressions, protocol nemo_hf" in printed and "| 0 distractors |" in printed

    # a second evaluation into the same folder: refused, or it replaces the first one whole
    again = [*common, "--model_name_or_path", str(out), "--eval_splits", "val", "--num_sample_predictions", "1"]
    with pytest.raises(FileExistsError, match=f"{evaluation} already holds .*--overwrite_output_dir"):
        eval_ris.main(again)
    _reset_accelerate()
    replaced = eval_ris.main([*again, "--overwrite_output_dir"])
    assert replaced["model"] == str(out / "final")  # a run's folder stands for its final model
    assert replaced["eval"]["val"] == results["eval"]["val"]
    assert sorted(p.name for p in evaluation.iterdir()) == ["eval_results.json", "eval_results.md", "model_index.yaml",
                                                            "predictions_val.png"]


def test_cris_on_the_shipped_clip_trains_with_its_recipe_and_eval_ris_gives_its_numbers(tmp_path) -> None:
    """--model_type cris: the whole model trains, the towers at their own rate, CRIS's step decay applies."""
    from transformers import AutoModel, AutoTokenizer

    out, evaluation = tmp_path / "cris", tmp_path / "eval"
    results = train.main(_tiny(out, "--model_type", "cris", "--trainable", "all", "--text_length", "12",
                               "--max_train_steps", "12", "--logging_steps", "1", "--checkpointing_steps", "none",
                               "--num_warmup_steps", "0",
                               "--learning_rate", "1e-3", "--text_encoder_learning_rate", "1e-4",
                               "--vision_encoder_learning_rate", "1e-4", "--lr_scheduler_type", "multistep",
                               "--lr_milestones", "1", "--lr_decay", "0.1"))
    assert results["architecture"] == "CRISForReferringSegmentation" and results["trainable"] == "all"
    assert results["trained_parameters"] == results["total_parameters"]  # the backbone trains too
    rates = {r["step"]: r["train/learning_rate"] for r in map(json.loads, (out / "logs" / "metrics.jsonl").open())
             if "train/learning_rate" in r}
    # 80 refs in batches of 8: the rate drops tenfold once epoch 1 (10 steps) is done
    assert [rates[step] for step in (1, 9, 10, 12)] == pytest.approx([1e-3, 1e-3, 1e-4, 1e-4])
    assert type(AutoModel.from_pretrained(out / "final")).__name__ == "CRISForReferringSegmentation"
    assert AutoTokenizer.from_pretrained(out / "final").model_max_length == 12  # CRIS's word_len travels
    card = (out / "final" / "README.md").read_text()
    assert "**Trained: the whole model: CRIS's neck, decoder and projector and both CLIP encoders**" in card
    assert "AutoModel.from_pretrained" in card and "- cris" in card

    _reset_accelerate()
    evaluated = eval_ris.main(["--config", str(out / "train_config.yaml"), "--output_dir",
                                                str(evaluation), "--model_name_or_path", str(out / "final"),
                                                "--eval_splits", "val", "testB", "--num_sample_predictions", "2"])
    assert evaluated["eval"] == results["eval"]
    assert (evaluation / "predictions_val.png").is_file()


def test_a_segmenters_parts_get_their_learning_rates(tiny_cris_dir) -> None:
    from nemo_hf.modeling import load_referring_segmenter

    args = TrainingConfig.parse(["--synthetic_images", "4", "--learning_rate", "1e-4",
                                 "--text_encoder_learning_rate", "2e-5", "--vision_encoder_learning_rate", "1e-5",
                                 "--weight_decay", "0.5"]).run
    model, _ = load_referring_segmenter(tiny_cris_dir)
    groups = train.parameter_groups(model, args)
    rate = {id(p): group["lr"] for group in groups for p in group["params"]}
    parts = model.trainable_parameters()
    assert {part: {rate[id(p)] for p in params} for part, params in parts.items()} == {
        "decoder": {1e-4}, "text": {2e-5}, "vision": {1e-5}}
    # CRIS's groups: the towers' position embeddings train at the new layers' rate (tests/test_cris_resnet.py)
    assert {rate[id(p)] for p in model.model.position_embeddings()} == {1e-4}
    assert sum(len(group["params"]) for group in groups) == len(list(model.parameters()))
    assert all(p.ndim < 2 for group in groups if group["weight_decay"] == 0.0 for p in group["params"])


def test_lr_milestones_need_the_multistep_schedule() -> None:
    with pytest.raises(ValueError, match=r"lr_milestones \[35\] apply to lr_scheduler_type 'multistep' only"):
        parse_arguments(["--synthetic_images", "4", "--lr_milestones", "35"], TRAIN_DATACLASSES)


def test_eval_ris_reads_a_training_config_but_not_its_output_folder(tmp_path) -> None:
    from nemo_hf.trainer.args import EvaluationConfig

    config = TrainingConfig.parse(["--config", str(TINY_CONFIG), "--eval_batch_size", "4", "--overwrite_output_dir"]
                                  ).save(tmp_path / "train_config.yaml")
    evaluation = EvaluationConfig.parse(["--config", str(config)])
    data, args = evaluation.data, evaluation.evaluation
    assert data.synthetic_images == 40 and args.eval_batch_size == 4  # what the two scripts share is read
    assert args.output_dir == "eval_outputs" and args.overwrite_output_dir is False  # not the training run's


@pytest.mark.hub
def test_trains_from_a_dataset_pushed_to_the_hub(refer_tree, tmp_path, hub_repo_id) -> None:
    from nemo_hf.data.load import load_refcoco

    built = load_refcoco("refcoco_unc", refer_tree.root, refer_tree.image_dir, cache_dir=tmp_path / "cache")
    built.push_to_hub(hub_repo_id, config_name="refcoco_unc")
    results = train.main(_tiny(tmp_path / "run", "--synthetic_images", "0", "--hub_dataset", hub_repo_id,
                               "--cache_dir", str(tmp_path / "download"), "--max_train_steps", "2",
                               "--checkpointing_steps", "none", "--train_batch_size", "4"))
    expected = sum(len(s) for s in built["val"]["sentences"])
    assert results["eval"]["val"]["count"] == min(16, expected)
    assert results["train_samples"] == len(built["train"])  # one row per referred object


# ----------------------------------------------------------------------------- processes


@pytest.mark.slow
@pytest.mark.parametrize("segmenter", ["clipseg", "cris"])
def test_two_processes_give_the_same_metrics_as_one(tmp_path, segmenter: str, tiny_clipseg_dir) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    # the tiny CLIPSeg, as for gradient accumulation: DDP's averaging reorders float sums; CRIS on the shipped
    # CLIP, every weight trained under DDP (batch norm, position embeddings at the head's rate)
    model = (("--model_name_or_path", str(tiny_clipseg_dir), "--max_train_steps", "6") if segmenter == "clipseg"
             else ("--model_type", "cris", "--trainable", "all", "--max_train_steps", "10", "--learning_rate", "3e-3",
                   "--num_warmup_steps", "5", "--loss", "bce"))
    steps = ("--checkpointing_steps", "none", *model)
    # NeMo mosaics: mining runs on both processes, each process draws the same mosaics as one would
    run_to_completion(launch(str(TRAINING / "train.py"), *_tiny(one, *steps, augmentation="nemo"), processes=1))
    # eval_batch_size 8 over two processes: each evaluates batches of 4, as the single process did
    run_to_completion(launch(str(TRAINING / "train.py"), *_tiny(two, *steps, "--eval_batch_size", "8",
                                                                 augmentation="nemo"), processes=2))
    single = json.loads((one / "final" / "all_results.json").read_text())
    double = json.loads((two / "final" / "all_results.json").read_text())
    assert (single["num_processes"], double["num_processes"]) == (1, 2)

    # training: the same global batches, gradients averaged by DDP instead of within one batch; CRIS's batch
    # norm sees each process's half of the batch on CPUs (train.py synchronises it on GPUs only)
    if segmenter == "clipseg":
        for name, tensor in _weights(one).items():
            torch.testing.assert_close(_weights(two)[name], tensor, rtol=1e-4, atol=1e-6, msg=name)
        assert double["train_loss"] == pytest.approx(single["train_loss"], rel=1e-6)
    else:
        assert np.isfinite(double["train_loss"]) and _weights(two).keys() == _weights(one).keys()

    # evaluation of one checkpoint: exactly the numbers of one process, every sentence counted once
    run_to_completion(launch(str(TRAINING / "eval_ris.py"), "--config", str(one / "train_config.yaml"),
                             "--model_name_or_path", str(one / "final"), "--output_dir", str(tmp_path / "eval2"),
                             "--eval_batch_size", "8", "--num_sample_predictions", "0", processes=2))
    evaluated = json.loads((tmp_path / "eval2" / "eval_results.json").read_text())
    assert evaluated["num_processes"] == 2
    for split, expected in single["eval"].items():
        got = evaluated["eval"][split]
        assert got["count"] == 16
        if segmenter == "clipseg":  # masks that can disagree: the mask metrics' equality means something
            assert 0.0 < expected["overall_iou"] < 1.0
        # the tiny CRIS's masks sit at the threshold this early (oIoU 0 to 0.05 over 10 to 60 steps, learning
        # rates and losses, measured): its comparison rests on the loss, a function of every logit of every sentence
        assert expected["loss"] > 0.0
        assert {k: v for k, v in got.items() if k != "loss"} == {k: v for k, v in expected.items() if k != "loss"}
        assert got["loss"] == pytest.approx(expected["loss"], rel=1e-12)


@pytest.mark.slow
def test_two_processes_evaluate_a_split_that_does_not_divide_into_their_batches_exactly_as_one(
        tmp_path, tiny_clipseg_dir) -> None:
    """13 sentences in batches of 8 over 2 processes: the last batch of 5 reaches them as 3 + 3.

    Accelerate repeats a sample to even the processes out; counted, it would add a sentence
    to every sum (and 13 would become 14). Every number must be the single process's.
    """
    out = tmp_path / "run"
    train.main(_tiny(out, "--model_name_or_path", str(tiny_clipseg_dir), "--max_train_steps", "6",
                     "--learning_rate", "3e-3", "--checkpointing_steps", "none", "--eval_splits", "val",
                     "--max_eval_samples", "4"))
    common = ["--config", str(out / "train_config.yaml"), "--model_name_or_path", str(out / "final"),
              "--eval_splits", "val", "testB", "--max_eval_samples", "13", "--eval_batch_size", "8",
              "--num_sample_predictions", "0"]
    _reset_accelerate()
    single = eval_ris.main([*common, "--output_dir", str(tmp_path / "one")])
    run_to_completion(launch(str(TRAINING / "eval_ris.py"), *common, "--output_dir", str(tmp_path / "two"),
                             processes=2))
    double = json.loads((tmp_path / "two" / "eval_results.json").read_text())
    assert (single["num_processes"], double["num_processes"]) == (1, 2)
    for split, expected in single["eval"].items():
        got = double["eval"][split]
        assert expected["count"] == got["count"] == 13
        assert 0.0 < expected["overall_iou"] < 1.0  # predictions that can disagree
        assert {k: v for k, v in got.items() if k != "loss"} == {k: v for k, v in expected.items() if k != "loss"}
        assert got["loss"] == pytest.approx(expected["loss"], rel=1e-12)


# `python -c RECORDING_RUN script args…` runs a training script as `python script args…` does and
# appends the rows of each training batch (ref_id, sent_id, source images) as one JSON line to $BATCH_LOG
RECORDING_RUN = """
import json, os, runpy, sys
from nemo_hf.modeling import RISCollator
collate = RISCollator.__call__
def recording(self, rows):
    if not self.with_targets:  # evaluation batches carry targets; training batches do not
        with open(os.environ["BATCH_LOG"], "a") as log:
            log.write(json.dumps([[r["ref_id"], r["sent_id"], r["source_image_ids"]] for r in rows]) + "\\n")
    return collate(self, rows)
RISCollator.__call__ = recording
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def _batches(log: Path) -> list[list]:
    return [json.loads(line) for line in log.read_text().splitlines()]


@pytest.mark.slow
def test_a_killed_run_resumes_mid_epoch_and_matches_an_uninterrupted_run(tmp_path) -> None:
    """SIGKILL after the first checkpoint, resume from the latest: bit-identical on CPU, and truly resumed.

    Equal results alone would not show a resume: a deterministic run restarted from scratch
    ends the same. So the resumed run must say the step it restarted from, collate only the
    batches after it, and start with the batch the uninterrupted run took at that step.
    Tolerance: none for weights, metrics and the log (CPU arithmetic is deterministic and
    the resumed run replays the same batches, samples and RNG states); the train loss is a
    float64 sum and is compared to 1e-12.
    """
    args = ("--num_train_epochs", "3", "--checkpointing_steps", "3", "--logging_steps", "2")
    full, killed = tmp_path / "full", tmp_path / "killed"
    run_to_completion([sys.executable, "-c", RECORDING_RUN, str(TRAINING / "train.py"),
                       *_tiny(full, *args, augmentation="nemo")], BATCH_LOG=str(tmp_path / "full.jsonl"))

    command = [sys.executable, str(TRAINING / "train.py"), *_tiny(killed, *args, augmentation="nemo")]
    process = subprocess.Popen(command, cwd=REPO, env=subprocess_env(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    checkpoints = killed / "checkpoints"
    deadline = time.time() + 240
    while not (checkpoints.is_dir() and any(p.name.startswith("step_") for p in checkpoints.iterdir())):
        assert process.poll() is None, "the run ended before its first checkpoint"
        assert time.time() < deadline, "no checkpoint after 240 s"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    assert not (killed / "final").exists()

    resumed_run = run_to_completion([sys.executable, "-c", RECORDING_RUN, *command[1:], "--resume_from_checkpoint",
                                     "latest"], BATCH_LOG=str(tmp_path / "resumed.jsonl"))
    expected = json.loads((full / "final" / "all_results.json").read_text())
    resumed = json.loads((killed / "final" / "all_results.json").read_text())
    step = int(Path(resumed["resumed_from"]).name.removeprefix("step_"))
    steps_per_epoch = expected["train_steps"] // expected["train_epochs"]
    assert step % steps_per_epoch != 0, "the test must exercise a mid-epoch resume"
    assert f"resumed from {resumed['resumed_from']} at step {step}: {expected['train_steps'] - step} steps left" in (
        resumed_run.stdout)
    full_batches, resumed_batches = _batches(tmp_path / "full.jsonl"), _batches(tmp_path / "resumed.jsonl")
    assert len(full_batches) == expected["train_steps"]  # one batch per step: no gradient accumulation
    assert len(resumed_batches) == expected["train_steps"] - step  # only the steps left were run
    assert resumed_batches[0] == full_batches[step]  # the data loader continued where the checkpoint was
    assert resumed_batches == full_batches[step:]
    assert resumed["eval"] == expected["eval"]
    assert resumed["train_loss"] == pytest.approx(expected["train_loss"], rel=1e-12)
    for name, tensor in _weights(full).items():
        assert torch.equal(_weights(killed)[name], tensor), name

    def log(folder: Path) -> list[dict]:
        lines = (folder / "logs" / "metrics.jsonl").read_text().splitlines()
        return [{k: v for k, v in json.loads(line).items() if k != "time"} for line in lines]

    assert log(killed) == log(full)  # the killed run's lines past its checkpoint are gone


# ----------------------------------------------------------------------------- train_clip.py


def test_train_clip_resumes_from_its_checkpoint_and_ends_with_the_uninterrupted_weights(
        tmp_path, monkeypatch, capsys) -> None:
    tiny = ["--num_images", "40", "--eval_images", "20", "--max_steps", "6", "--train_batch_size", "16",
            "--checkpointing_steps", "3", "--num_warmup_steps", "1", "--cache_dir", str(tmp_path / "cache")]
    planned = train_clip.batch_plan
    steps: list[int] = []

    def recording(seed, step, *args):  # every step draws its batch here, once
        steps.append(step)
        if step == stop_at:
            raise _Stop
        return planned(seed, step, *args)

    monkeypatch.setattr(train_clip, "batch_plan", recording)
    stop_at = None
    train_clip.main([*tiny, "--output_dir", str(tmp_path / "full")])
    assert steps == [0, 1, 2, 3, 4, 5]

    steps.clear()
    stop_at = 4  # after step_3 was saved
    _reset_accelerate()
    with pytest.raises(_Stop):
        train_clip.main([*tiny, "--output_dir", str(tmp_path / "stopped")])
    assert sorted(p.name for p in (tmp_path / "stopped" / "checkpoints").iterdir()) == ["step_3"]

    steps.clear()
    stop_at = None
    _reset_accelerate()
    capsys.readouterr()
    results = train_clip.main([*tiny, "--output_dir", str(tmp_path / "stopped"), "--resume_from_checkpoint", "latest"])
    assert f"resumed from {tmp_path / 'stopped' / 'checkpoints' / 'step_3'} at step 3: 3 steps left" in (
        capsys.readouterr().out)
    assert steps == [3, 4, 5] and results["resumed_from_step"] == 3  # only the steps left were run
    full, resumed = _weights(tmp_path / "full"), _weights(tmp_path / "stopped")
    assert all(torch.equal(resumed[name], tensor) for name, tensor in full.items())
    from transformers import CLIPModel

    final = tmp_path / "stopped" / "final"
    assert {"model.safetensors", "README.md", "all_results.json", "train_config.yaml"} <= {p.name for p in final.iterdir()}
    assert not any(p.is_dir() or p.name.startswith(("optimizer", "random_states")) for p in final.iterdir())
    CLIPModel.from_pretrained(final)


def test_train_clip_can_learn_the_fair_tests_world_in_trees_of_its_own(tmp_path) -> None:
    from nemo_hf.experiment.settings import ExperimentSettings

    fair = ExperimentSettings().world()  # the world benchmarks/nemo_effect.py builds its trees with
    assert train_clip.WORLDS["fair"] == {**fair, "distractor_levels": tuple(fair["distractor_levels"])}
    roots = {world: train_clip.synthetic_tree(train_clip.ClipTrainingArguments(world=world, cache_dir=str(tmp_path)),
                                              24, 5) for world in ("default", "fair")}
    assert roots["default"] != roots["fair"]  # cached apart: neither world's tree is reused for the other
    from nemo_hf.synthetic import make_refer_dataset

    direct = make_refer_dataset(tmp_path / "direct", num_images=24, seed=5, datasets=("refcoco", "refcoco+", "refcocog"),
                                **fair).root
    instances = {name: json.loads((root / "refcoco" / "instances.json").read_text())
                 for name, root in {**roots, "direct": direct}.items()}
    assert instances["fair"] == instances["direct"] != instances["default"]
    with pytest.raises(ValueError, match=r"world must be one of \['default', 'fair'\], got 'fiar'"):
        train_clip.ClipTrainingArguments(world="fiar")


def test_same_colour_batches_hold_one_target_colour_and_random_batches_are_unchanged(tmp_path) -> None:
    """Each text of a same-colour batch is about an object of the drawn colour, as the tree records it
    (an independent recount from the refs); with the share at 0 the images are the original draws."""
    from nemo_hf.data.refer_files import load_refs
    from nemo_hf.synthetic import FAIR_WORLD, make_refer_dataset

    tree = make_refer_dataset(tmp_path / "refer", num_images=60, seed=4, datasets=("refcoco", "refcoco+", "refcocog"),
                              image_size=(160, 120), **FAIR_WORLD)
    train_images = train_clip.tree_images(tree.root, train_clip.TRAIN_CONFIGS, ["train"], tmp_path / "cache")
    colours_of_text: dict[tuple[int, str], set[str]] = {}  # (image id, expression) -> its targets' colours
    ann_colour = {}
    for name in ("refcoco", "refcoco+", "refcocog"):
        instances = json.loads((tree.root / name / "instances.json").read_text())
        ann_colour.update({a["id"]: a["attributes"]["colour"] for a in instances["annotations"]})
        for ref in load_refs(tree.root / name / ("refs(umd).p" if name == "refcocog" else "refs(unc).p")):
            if ref["split"] == "train":
                for sent in ref["sentences"]:
                    colours_of_text.setdefault((ref["image_id"], sent["raw"]), set()).add(ann_colour[ref["ann_id"]])
    image_ids = list(train_images.images["image_id"])  # a list: a datasets Column re-reads the table per index
    by_colour = train_images.by_colour()
    batch = 16
    kinds = set()
    for step in range(30):
        picked, texts = train_clip.batch_plan(3, step, len(image_ids), batch, train_images.sentences, 0.5, by_colour)
        assert len(set(picked.tolist())) == len(picked) == len(texts)
        stated = [colours_of_text[(image_ids[i], t)] for i, t in zip(picked, texts, strict=True)]
        one_colour = all(len(c) == 1 for c in stated) and len(set.union(*stated)) == 1
        kinds.add(one_colour)
        # share 0 draws what the plan drew before same-colour batches existed (the shipped CLIP's remake)
        rng = np.random.default_rng([3, step])
        plain = rng.choice(len(image_ids), size=batch, replace=False)
        assert (train_clip.batch_plan(3, step, len(image_ids), batch, train_images.sentences)[0] == plain).all()
    assert kinds == {True, False}, "about half the steps draw a same-colour batch"
    with pytest.raises(ValueError, match=r"same_colour_batches must be in \[0, 1\], got 1.5"):
        train_clip.ClipTrainingArguments(same_colour_batches=1.5)


def test_tree_images_pairs_each_image_with_every_expression_written_for_it(tmp_path) -> None:
    """Read across every split (whose images do not come in id order), image i carries the
    expressions of the rows of its id, and its pixels are that image file's."""
    from PIL import Image

    from nemo_hf.data.load import load_refcoco
    from nemo_hf.synthetic import make_refer_dataset

    tree = make_refer_dataset(tmp_path / "refer", num_images=30, seed=4, datasets=("refcoco",), image_size=(96, 72))
    found = train_clip.tree_images(tree.root, ["refcoco_unc"], None, tmp_path / "cache")
    built = load_refcoco("refcoco_unc", tree.root, tree.image_dir, cache_dir=tmp_path / "cache")
    written: dict[int, set[str]] = {}
    for split in built.values():
        for image_id, sentences in zip(split["image_id"], split["sentences"], strict=True):
            written.setdefault(image_id, set()).update(sentences)
    image_ids = list(found.images["image_id"])
    assert image_ids == sorted(written)
    assert [set(s) for s in found.sentences] == [written[i] for i in image_ids]
    files = {im["id"]: im["file_name"] for im in json.loads((tree.root / "refcoco" / "instances.json").read_text())["images"]}
    for image_id, image in zip(image_ids, found.images["image"], strict=True):
        assert np.array_equal(np.asarray(image), np.asarray(Image.open(tree.image_dir / files[image_id])))


def test_scene_captions_name_every_object_of_their_image_and_replace_about_their_share(tmp_path) -> None:
    """A caption counts each (size, colour, category) of the image's annotations, recounted from
    instances.json; with the share at 0.5 about half the texts are captions, the images unchanged."""
    from nemo_hf.synthetic import FAIR_WORLD, make_refer_dataset
    from nemo_hf.synthetic.scenes import CATEGORIES

    tree = make_refer_dataset(tmp_path / "refer", num_images=40, seed=6, datasets=("refcoco", "refcoco+", "refcocog"),
                              image_size=(160, 120), **FAIR_WORLD)
    found = train_clip.tree_images(tree.root, train_clip.TRAIN_CONFIGS, ["train"], tmp_path / "cache")
    instances = json.loads((tree.root / "refcoco" / "instances.json").read_text())
    names = {c["id"]: c["name"] for c in instances["categories"]}
    plural = {c.name: c.plural for c in CATEGORIES}
    for image_id, caption in zip(found.images["image_id"], found.captions, strict=True):
        anns = [a for a in instances["annotations"] if a["image_id"] == image_id]
        said = caption.replace(" and ", ", ").split(", ")
        assert len(said) == len({(a["attributes"]["size"], a["attributes"]["colour"], a["category_id"]) for a in anns})
        for a in anns:
            size, colour, name = a["attributes"]["size"], a["attributes"]["colour"], names[a["category_id"]]
            same = sum((b["attributes"]["size"], b["attributes"]["colour"], b["category_id"]) ==
                       (size, colour, a["category_id"]) for b in anns)
            assert (f"a {size} {colour} {name}" if same == 1 else
                    f"{['two', 'three', 'four', 'five', 'six'][same - 2]} {size} {colour} {plural[name]}") in said
    n = len(found.sentences)
    captioned = 0
    for step in range(20):
        picked, texts = train_clip.batch_plan(1, step, n, 16, found.sentences, captions=found.captions,
                                              caption_share=0.5)
        plain_picked, plain_texts = train_clip.batch_plan(1, step, n, 16, found.sentences)
        assert (picked == plain_picked).all()
        for i, text, plain in zip(picked, texts, plain_texts, strict=True):
            assert text in (plain, found.captions[i])
            captioned += text == found.captions[i] != plain
    assert 0.35 < captioned / (20 * 16) < 0.65
    recipe = train_clip._batch_recipe(train_clip.ClipTrainingArguments(scene_captions=0.5, same_colour_batches=0.25))
    assert "50% of the expressions replaced" in recipe and "25% of the steps" in recipe  # the model card says so
    assert train_clip._batch_recipe(train_clip.ClipTrainingArguments()) == ""


def test_twin_batches_draw_whole_pairs_after_the_trees_images_and_train(tmp_path) -> None:
    """A twin step draws pairs (image numbers num_images + 2j and + 2j + 1 with pair j's two texts);
    share 0 leaves every batch as it was; a tiny run with twin batches trains and its card says so."""
    sentences = [[f"text {i}"] for i in range(40)]
    twin_texts = [(f"the red {j}", f"the blue {j}") for j in range(10)]
    twin_steps = 0
    for step in range(30):
        picked, texts = train_clip.batch_plan(2, step, 40, 8, sentences, twin_texts=twin_texts, twin_share=0.5)
        plain = train_clip.batch_plan(2, step, 40, 8, sentences)
        assert train_clip.batch_plan(2, step, 40, 8, sentences, twin_texts=twin_texts)[0].tolist() == plain[0].tolist()
        if picked.min() >= 40:
            twin_steps += 1
            pairs = (picked[0::2] - 40) // 2
            assert len(set(pairs.tolist())) == 4 and (picked[1::2] == picked[0::2] + 1).all()
            assert (picked[0::2] % 2 == 0).all()
            assert texts == [t for j in pairs for t in twin_texts[j]]
        else:
            assert picked.max() < 40 and texts == [sentences[i][0] for i in picked]
    assert 8 < twin_steps < 22, "about half the steps draw a twin batch"

    from nemo_hf.synthetic.twins import category_twins

    args = train_clip.ClipTrainingArguments(world="fair", twin_batches=0.5, twin_scenes=5)
    _, processor = train_clip.build_model(args, ["the"])
    out = torch.full((10, 3, 64, 64), float("nan"))
    texts = train_clip.write_twin_pixel_values(args, processor, out, chunk=2)  # made two pairs at a time
    whole = category_twins(5, args.data_seed, **train_clip.WORLDS["fair"])
    assert texts == [(pair.text, pair.twin_text) for pair in whole]
    expected = processor.image_processor([im for pair in whole for im in (pair.image, pair.twin)], return_tensors="pt")
    assert torch.equal(out, expected["pixel_values"])

    run = ["--num_images", "30", "--eval_images", "12", "--max_steps", "4", "--train_batch_size", "8", "--world", "fair",
           "--num_warmup_steps", "1", "--twin_batches", "0.5", "--twin_scenes", "6", "--cache_dir", str(tmp_path / "cache"),
           "--output_dir", str(tmp_path / "twins")]
    results = train_clip.main(run)
    assert results["steps"] == 4
    card = (tmp_path / "twins" / "final" / "README.md").read_text()
    assert "50% of the steps drawing counterfactual twin pairs (6 pairs)" in card
    # the card's command remakes this run: its own settings, not the shipped CLIP's config
    assert "--config train_config.yaml" in card and "synthetic_clip.yaml" not in card
    remade = yaml.safe_load((tmp_path / "twins" / "final" / "train_config.yaml").read_text())
    assert (remade["twin_batches"], remade["twin_scenes"], remade["world"]) == (0.5, 6, "fair")
    with pytest.raises(ValueError, match=r"twin_batches must be in \[0, 1\], got -0.1"):
        train_clip.ClipTrainingArguments(twin_batches=-0.1)


# ----------------------------------------------------------------------------- augmentation


def test_every_augmentation_trains_on_the_same_sentences_with_its_own_pictures() -> None:
    config = TrainingConfig.parse(["--config", str(TINY_CONFIG), "--mosaic_prob", "1.0", "--seed", "7"])
    raw = load_splits(config.data, ["train"])["train"]
    built = {}
    for name in ("none", "random", "nemo"):
        built[name] = build_train_dataset(raw, name, config.nemo, clip_model=config.augmentation.clip_model,
                                          input_size=64)
    kinds = {"none": "single", "random": "random", "nemo": "mined"}
    drawn = {}
    for epoch in (0, 1):
        rows = {}
        for name, data in built.items():
            data.set_epoch(epoch)
            rows[name] = data.dataset[:12]
            assert set(rows[name]["mosaic_kind"]) == {kinds[name]}
            assert {image.size for image in rows[name]["image"]} == {(64, 64)}
        assert rows["none"]["sentence"] == rows["random"]["sentence"] == rows["nemo"]["sentence"]
        assert rows["none"]["ref_id"] == raw[:12]["ref_id"]
        drawn[epoch] = rows["none"]["sentence"]
    assert drawn[0] != drawn[1], "each epoch draws the objects' sentences anew"


@pytest.mark.parametrize("augmentation", ["random", "nemo"])
def test_mosaic_augmentations_train(tmp_path, augmentation: str) -> None:
    out = tmp_path / augmentation
    results = train.main(["--config", str(TINY_CONFIG), "--output_dir", str(out), "--augmentation", augmentation,
                          "--report_to", "none", "--max_train_steps", "3", "--checkpointing_steps", "none",
                          "--eval_batch_size", "4", "--max_eval_samples", "8", "--mosaic_prob", "1.0"])
    assert results["augmentation"] == augmentation and results["train_steps"] == 3
    assert np.isfinite(results["train_loss"])


def test_a_learning_curve_by_steps_evaluates_every_n_steps_and_at_the_end_only(tmp_path) -> None:
    """--eval_strategy steps: the curve has a point every --eval_steps and one at the last step, none at epoch ends
    (the tiny config's epochs are 10 steps: 7 and 14 are not epoch ends, 10 is and is skipped)."""
    out = tmp_path / "run"
    results = train.main(_tiny(out, "--max_train_steps", "16", "--checkpointing_steps", "none",
                               "--eval_strategy", "steps", "--eval_steps", "7"))
    assert [point["step"] for point in results["learning_curve"]] == [7, 14, 16]
    assert results["eval"] == results["learning_curve"][-1]["eval"]  # the final figures are the last evaluation's
    logged = [json.loads(line) for line in (out / "logs" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged if "eval/val/overall_iou" in r] == [7, 14, 16]
    with pytest.raises(ValueError, match="give --eval_steps"):
        TrainingConfig.parse(["--synthetic_images", "4", "--eval_strategy", "steps"])
