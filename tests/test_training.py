"""training/train.py and training/eval_ris.py on the CPU smoke config (a CLIPSeg on the shipped CLIP).

In-process runs load a script by its path and call ``main(argv)``; the multi-process and kill/resume runs start real
processes (``accelerate launch``, ``python training/train.py``) as a user would. Every run
reads the same synthetic tree, generated once per session in the test datasets cache.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
import yaml

from nemo_hf.training.args import TRAIN_DATACLASSES, parse_arguments, save_config
from nemo_hf.training.data import as_sentences, build_train_dataset, load_splits

REPO = Path(__file__).resolve().parents[1]
TRAINING = REPO / "training"
TINY_CONFIG = TRAINING / "configs" / "tiny_synthetic.yaml"
CONFIGS = sorted((TRAINING / "configs").glob("*.yaml"))

torch.set_num_threads(1)


def _load_script(name: str) -> ModuleType:
    """``training/<name>.py`` as a module, imported by its path: training/ is a folder of scripts."""
    spec = importlib.util.spec_from_file_location(f"training_{name}", TRAINING / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


train = _load_script("train")


@pytest.fixture(autouse=True)
def _fresh_accelerate_state():
    yield
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()


def _tiny(output_dir: Path, *extra: str, augmentation: str = "none") -> list[str]:
    """Arguments of a short tiny run: no TensorBoard, 16 sentences per eval split.

    val and testB hold at least 16 sentences in the tiny tree (testA holds 14), so every eval
    split fills whole batches of 4 on one process and of 2 x 4 on two.
    """
    return ["--config", str(TINY_CONFIG), "--output_dir", str(output_dir), "--augmentation", augmentation,
            "--report_to", "none", "--eval_splits", "val", "testB", "--eval_batch_size", "4",
            "--max_eval_samples", "16", *extra]


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(folder / "model.safetensors")


def _subprocess_env() -> dict[str, str]:
    # one thread per process: the same arithmetic in every run, and two processes fit two cores
    return {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "1", "PYTHONUNBUFFERED": "1",
            "PYTHONFAULTHANDLER": "1"}


def _initial_model():
    """The model a run of the tiny config starts from, built as train.py builds it."""
    from nemo_hf.modeling import load_referring_segmenter

    model_args, _, _, args = parse_arguments(["--config", str(TINY_CONFIG)], TRAIN_DATACLASSES)
    return load_referring_segmenter(model_args.model_name_or_path, trainable=model_args.trainable,
                                    image_size=model_args.image_size, seed=args.seed)


def _fixed_batch_loss(model, batch) -> float:
    from nemo_hf.modeling import per_sample_bce

    model.eval()
    with torch.no_grad():
        logits = model(batch["pixel_values"], batch["input_ids"], batch["attention_mask"])
    return per_sample_bce(logits, batch["labels"]).mean().item()


# ----------------------------------------------------------------------------- arguments


def test_yaml_config_is_read_and_flags_override_it(tmp_path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text("synthetic_images: 24\nlearning_rate: 1e-3\neval_splits: [val, testA]\n"
                      "verify_images: false\nmax_train_steps: 5\n")
    model, data, aug, args = parse_arguments(
        ["--config", str(config), "--learning_rate", "2e-3"], TRAIN_DATACLASSES)
    assert data.synthetic_images == 24 and data.eval_splits == ["val", "testA"] and data.verify_images is False
    assert args.learning_rate == 2e-3 and isinstance(args.max_train_steps, int) and args.max_train_steps == 5
    saved = save_config(tmp_path / "saved.yaml", model, data, aug, args)
    assert parse_arguments(["--config", str(saved)], TRAIN_DATACLASSES) == (model, data, aug, args)


def test_config_errors_name_the_file_and_the_value(tmp_path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("synthetic_images: 24\nlearning_rat: 1e-3\n")
    with pytest.raises(ValueError, match=r"bad\.yaml: unknown keys \['learning_rat'\]"):
        parse_arguments(["--config", str(config)], TRAIN_DATACLASSES)
    with pytest.raises(ValueError, match="exactly one data source"):
        parse_arguments(["--synthetic_images", "24", "--hub_dataset", "me/refcoco"],
                                   TRAIN_DATACLASSES)
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
        return (_load_script("train_clip").ClipTrainingArguments,)
    pytest.fail(f"{config} is for training/{found[1]}.py: add its argument dataclasses here")


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_parse(config: Path) -> None:
    dataclasses = _arguments_of(config)
    parsed = parse_arguments(["--config", str(config)], dataclasses)
    assert parsed[-1].output_dir.startswith("outputs/")
    if dataclasses is TRAIN_DATACLASSES:
        _, data, aug, _ = parsed
        assert data.eval_splits and aug.augmentation == "nemo"


@pytest.mark.parametrize("script", ["train", "eval_ris"])
def test_help_shows_the_script_docstring_as_written(script: str, capsys) -> None:
    module = _load_script(script)
    with pytest.raises(SystemExit):
        module.main(["--help"])
    shown = capsys.readouterr().out
    examples = [line for line in module.__doc__.splitlines() if line.startswith("    ")]
    assert examples and all(line in shown.splitlines() for line in examples)  # continuations (\) kept
    assert "--learning_rate" in shown if script == "train" else "--num_sample_predictions" in shown


# ----------------------------------------------------------------------------- in process


def test_tiny_config_trains_in_process_and_the_loss_on_a_fixed_batch_goes_down(tmp_path) -> None:
    from transformers import CLIPSegForImageSegmentation

    from nemo_hf.modeling import RISCollator, load_referring_segmenter

    out = tmp_path / "run"
    results = train.main(_tiny(out, "--max_train_steps", "30", "--checkpointing_steps", "13", "--logging_steps", "10",
                               "--report_to", "tensorboard",
                               "--lr_scheduler_type", "constant", "--num_warmup_steps", "0"))

    initial, processor = _initial_model()
    trained, _ = load_referring_segmenter(out)
    data = parse_arguments(["--config", str(TINY_CONFIG)], TRAIN_DATACLASSES)[1]
    rows = as_sentences(load_splits(data, ["train"])["train"], limit=16)
    batch = RISCollator(processor)(list(rows))
    before, after = _fixed_batch_loss(initial, batch), _fixed_batch_loss(trained, batch)
    assert after < 0.8 * before, (before, after)

    assert results["train_steps"] == 30 and results["num_processes"] == 1 and results["train_loss"] > 0
    assert results["trained_parameters"] == sum(p.numel() for p in initial.model.decoder.parameters())
    assert results["total_parameters"] == sum(p.numel() for p in initial.parameters())
    assert set(results["eval"]) == {"val", "testB"}
    assert all(r["count"] == 16 for r in results["eval"].values())
    assert json.loads((out / "all_results.json").read_text()) == json.loads(json.dumps(results))
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_13", "step_26"]
    logged = [json.loads(line) for line in (out / "logs" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged if "train/loss" in r] == [10, 20, 30]
    assert [r["step"] for r in logged if "eval/val/overall_iou" in r] == [10, 20, 30]  # 80 refs, batches of 8
    assert list((out / "logs").rglob("events.out.tfevents.*")), "no TensorBoard events"
    saved = yaml.safe_load((out / "train_config.yaml").read_text())
    assert saved["max_train_steps"] == 30 and saved["augmentation"] == "none"
    CLIPSegForImageSegmentation.from_pretrained(out)  # the final model is a plain transformers checkpoint
    card = (out / "README.md").read_text()  # the model card says what was trained and how it scored
    assert "**Trained: the CLIPSeg decoder only**" in card and "Augmentation: **none**" in card
    assert f"| val | 16 | {results['eval']['val']['overall_iou']:.4f} |" in card


def test_gradient_accumulation_matches_a_larger_batch(tmp_path, tiny_clipseg_dir) -> None:
    from tests.tiny_clipseg import tiny_clipseg

    # the random tiny model: its short sums keep float reordering near 1e-7 (the shipped CLIP's
    # wider decoder: 1e-5, which Adam carries into the weights), so the tolerance below can be tight
    common = ("--max_train_steps", "4", "--checkpointing_steps", "none", "--max_grad_norm", "0",
              "--model_name_or_path", str(tiny_clipseg_dir))
    train.main(_tiny(tmp_path / "big", "--train_batch_size", "8", *common))
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    train.main(_tiny(tmp_path / "accumulated", "--train_batch_size", "4", "--gradient_accumulation_steps", "2",
                     *common))
    big, accumulated = _weights(tmp_path / "big"), _weights(tmp_path / "accumulated")
    initial = tiny_clipseg()[0].state_dict()
    moved = max((big[k] - initial[k]).abs().max().item() for k in big)
    assert moved > 1e-3
    for name in big:
        torch.testing.assert_close(accumulated[name], big[name], rtol=1e-5, atol=1e-6, msg=name)


def test_bf16_mixed_precision_trains_on_cpu(tmp_path) -> None:
    results = train.main(_tiny(tmp_path / "bf16", "--mixed_precision", "bf16", "--max_train_steps", "3",
                               "--checkpointing_steps", "none"))
    assert results["mixed_precision"] == "bf16"
    assert np.isfinite(results["train_loss"]) and results["eval"]["val"]["count"] == 16


def test_eval_ris_script_writes_results_and_predictions(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    results = train.main(_tiny(out, "--max_train_steps", "3", "--checkpointing_steps", "none"))
    assert f"saved the model, processor, model card and all_results.json to {out} " in capsys.readouterr().out
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    evaluated = _load_script("eval_ris").main(
        ["--config", str(out / "train_config.yaml"), "--model_name_or_path", str(out),
         "--output_dir", str(tmp_path / "eval"), "--eval_splits", "val", "testB", "--num_sample_predictions", "3"])
    # the same model, data and batches as the last evaluation of the training run
    assert evaluated["eval"]["val"] == results["eval"]["val"]
    assert evaluated["eval"]["testB"] == results["eval"]["testB"]
    assert json.loads((tmp_path / "eval" / "eval_results.json").read_text())["eval"]["val"]["count"] == 16
    from PIL import Image

    assert Image.open(tmp_path / "eval" / "predictions_val.png").size[0] == 3 * 256
    assert (tmp_path / "eval" / "predictions_testB.png").is_file()
    assert capsys.readouterr().out.endswith(
        f"saved eval_results.json and predictions_<split>.png to {tmp_path / 'eval'}\n")


@pytest.mark.hub
def test_trains_from_a_dataset_pushed_to_the_hub(refer_tree, tmp_path, hub_repo_id) -> None:
    from nemo_hf import load_refcoco

    built = load_refcoco("refcoco_unc", refer_tree.root, refer_tree.image_dir, cache_dir=tmp_path / "cache")
    built.push_to_hub(hub_repo_id, config_name="refcoco_unc")
    results = train.main(_tiny(tmp_path / "run", "--synthetic_images", "0", "--hub_dataset", hub_repo_id,
                               "--cache_dir", str(tmp_path / "download"), "--max_train_steps", "2",
                               "--checkpointing_steps", "none", "--train_batch_size", "4"))
    expected = sum(len(s) for s in built["val"]["sentences"])
    assert results["eval"]["val"]["count"] == min(16, expected)
    assert results["train_samples"] == len(built["train"])  # one row per referred object


# ----------------------------------------------------------------------------- processes


def _launch(*args: str, processes: int) -> list[str]:
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--num_machines", "1",
                "--mixed_precision", "no", "--dynamo_backend", "no"]
    if processes > 1:
        # `--cpu --num_processes 2` would start ONE process; this starts two, synchronised (gloo)
        launcher += ["--multi_gpu", "--num_processes", str(processes), "--main_process_port", "0"]
    else:
        launcher += ["--cpu", "--num_processes", "1"]
    return [*launcher, *args]


def _run(command: list[str], timeout: float = 240) -> subprocess.CompletedProcess:
    """Run to completion; on a hang, dump every process's Python stack (faulthandler) and fail."""
    process = subprocess.Popen(command, cwd=REPO, env=_subprocess_env(), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGABRT)  # PYTHONFAULTHANDLER: each process prints its stack
        out, err = process.communicate()
        pytest.fail(f"{command} hung for {timeout} s; stacks:\n{err[-8000:]}")
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 0, err[-4000:]
    return subprocess.CompletedProcess(command, process.returncode, out, err)


@pytest.mark.slow
def test_two_processes_give_the_same_metrics_as_one(tmp_path, tiny_clipseg_dir) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    # the tiny model, as for gradient accumulation: DDP's averaging reorders float sums
    steps = ("--max_train_steps", "6", "--checkpointing_steps", "none", "--model_name_or_path", str(tiny_clipseg_dir))
    # NeMo mosaics: mining runs on both processes, each process draws the same mosaics as one would
    _run(_launch(str(TRAINING / "train.py"), *_tiny(one, *steps, augmentation="nemo"), processes=1))
    # eval_batch_size 8 over two processes: each evaluates batches of 4, as the single process did
    _run(_launch(str(TRAINING / "train.py"), *_tiny(two, *steps, "--eval_batch_size", "8", augmentation="nemo"),
                 processes=2))
    single = json.loads((one / "all_results.json").read_text())
    double = json.loads((two / "all_results.json").read_text())
    assert (single["num_processes"], double["num_processes"]) == (1, 2)

    # training: the same global batches, gradients averaged by DDP instead of within one batch
    for name, tensor in _weights(one).items():
        torch.testing.assert_close(_weights(two)[name], tensor, rtol=1e-4, atol=1e-6, msg=name)
    assert double["train_loss"] == pytest.approx(single["train_loss"], rel=1e-6)

    # evaluation of one checkpoint: exactly the numbers of one process, every sentence counted once
    _run(_launch(str(TRAINING / "eval_ris.py"), "--config", str(one / "train_config.yaml"),
                 "--model_name_or_path", str(one), "--output_dir", str(tmp_path / "eval2"), "--eval_batch_size", "8",
                 "--num_sample_predictions", "0", processes=2))
    evaluated = json.loads((tmp_path / "eval2" / "eval_results.json").read_text())
    assert evaluated["num_processes"] == 2
    for split, expected in single["eval"].items():
        got = evaluated["eval"][split]
        assert got["count"] == 16
        assert 0.0 < expected["overall_iou"] < 1.0  # predictions that can disagree
        assert {k: v for k, v in got.items() if k != "loss"} == {k: v for k, v in expected.items() if k != "loss"}
        assert got["loss"] == pytest.approx(expected["loss"], rel=1e-12)


@pytest.mark.slow
def test_a_killed_run_resumes_mid_epoch_and_matches_an_uninterrupted_run(tmp_path) -> None:
    """SIGKILL after the first checkpoint, resume from the latest: bit-identical on CPU.

    Tolerance: none for weights, metrics and the log (CPU arithmetic is deterministic and
    the resumed run replays the same batches, samples and RNG states); the train loss is a
    float64 sum and is compared to 1e-12.
    """
    args = ("--num_train_epochs", "6", "--checkpointing_steps", "3", "--logging_steps", "2")
    full, killed = tmp_path / "full", tmp_path / "killed"
    _run([sys.executable, str(TRAINING / "train.py"), *_tiny(full, *args, augmentation="nemo")])

    command = [sys.executable, str(TRAINING / "train.py"), *_tiny(killed, *args, augmentation="nemo")]
    process = subprocess.Popen(command, cwd=REPO, env=_subprocess_env(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    checkpoints = killed / "checkpoints"
    deadline = time.time() + 240
    while not (checkpoints.is_dir() and any(p.name.startswith("step_") for p in checkpoints.iterdir())):
        assert process.poll() is None, "the run ended before its first checkpoint"
        assert time.time() < deadline, "no checkpoint after 240 s"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    assert not (killed / "all_results.json").exists()

    _run(command + ["--resume_from_checkpoint", "latest"])
    expected = json.loads((full / "all_results.json").read_text())
    resumed = json.loads((killed / "all_results.json").read_text())
    resumed_step = int(Path(resumed["resumed_from"]).name.removeprefix("step_"))
    steps_per_epoch = expected["train_steps"] // expected["train_epochs"]
    assert resumed_step % steps_per_epoch != 0, "the test must exercise a mid-epoch resume"
    assert resumed["eval"] == expected["eval"]
    assert resumed["train_loss"] == pytest.approx(expected["train_loss"], rel=1e-12)
    for name, tensor in _weights(full).items():
        assert torch.equal(_weights(killed)[name], tensor), name

    def log(folder: Path) -> list[dict]:
        lines = (folder / "logs" / "metrics.jsonl").read_text().splitlines()
        return [{k: v for k, v in json.loads(line).items() if k != "time"} for line in lines]

    assert log(killed) == log(full)  # the killed run's lines past its checkpoint are gone


# ----------------------------------------------------------------------------- augmentation


def test_every_augmentation_trains_on_the_same_sentences_with_its_own_pictures() -> None:
    _, data, aug, _ = parse_arguments(["--config", str(TINY_CONFIG), "--mosaic_prob", "1.0"],
                                                 TRAIN_DATACLASSES)
    raw = load_splits(data, ["train"])["train"]
    built = {}
    for name in ("none", "random", "nemo"):
        aug.augmentation = name
        built[name] = build_train_dataset(raw, aug, seed=7, input_size=64)
    kinds = {"none": "single", "random": "random", "nemo": "mined"}
    drawn = {}
    for epoch in (0, 1):
        rows = {}
        for name, train in built.items():
            train.set_epoch(epoch)
            rows[name] = train.dataset[:12]
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
