"""Run the none / random / NeMo experiment end to end and write its report.

Steps, each printed as it runs:

1. **World** — a synthetic refer tree (:func:`nemo_hf.synthetic.make_refer_dataset`)
   read through the ``RefCOCO`` builder, exactly as real data would be.
2. **Mining** — NeMo's negatives for every training sentence, mined with the shipped
   synthetic CLIP; its difficulty report (chosen negatives' text→image scores against the
   pool's) is saved as JSON and PNG.
3. **Mosaics** — a picture of NeMo samples.
4. **Training** — ``training/train.py`` once per arm, same seed, data, initial weights and
   steps; only ``--augmentation`` differs.
5. **Evaluation** — every sentence of the evaluation split, oIoU/mIoU/Prec@X overall, per
   distractor group (0, 1, 2, 3+ and the hard stratum ≥ 2) and per object size.
6. **Report** — ``results.json``, ``report.md`` and PNGs (:mod:`nemo_hf.experiment.report`).

Training runs as a subprocess of ``training/train.py`` from a source checkout (the
scripts are not part of the wheel); pass ``training_dir`` to point elsewhere.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nemo_hf.data import load_refcoco
from nemo_hf.experiment.settings import ExperimentSettings
from nemo_hf.metrics import RISMetrics, group_labels
from nemo_hf.synthetic import make_refer_dataset

__all__ = [
    "HARD", "TRAINING_DIR", "ArmPredictions", "arm_command", "build_world", "evaluate_arm", "hard_stratum",
    "run_experiment", "train_arm",
]  # fmt: skip

TRAINING_DIR = Path(__file__).resolve().parents[2] / "training"
HARD = "distractors>=2"  # the hard stratum: at least two other objects of the target's category


def hard_stratum(distractors: int) -> list[str]:
    """Extra group labels of a sample: the hard stratum when it has ≥ 2 distractors.

    >>> hard_stratum(3), hard_stratum(1)
    (['distractors>=2'], [])
    """
    return [HARD] if distractors >= 2 else []


class ArmPredictions:
    """One arm's masks for every evaluation sentence, and the metrics they give."""

    def __init__(self, masks: list[np.ndarray], ious: list[float], metrics: dict[str, Any]) -> None:
        self.masks = masks
        self.ious = ious
        self.metrics = metrics


def evaluate_arm(model_dir: Path, sentences: Any, batch_size: int = 64) -> ArmPredictions:
    """Predict every row of ``sentences`` (per-sentence rows) with the model in ``model_dir``; score it."""
    from nemo_hf.modeling import load_referring_segmenter, predict_masks, target_mask

    model, processor = load_referring_segmenter(model_dir)
    model.eval()
    metrics = RISMetrics(sync_processes=False)
    masks: list[np.ndarray] = []
    ious: list[float] = []
    for start in range(0, len(sentences), batch_size):
        rows = sentences[start : start + batch_size]
        predicted = predict_masks(model, processor, rows["image"], rows["sentence"], batch_size=batch_size)
        truths = [target_mask(mask) for mask in rows["mask"]]
        intersections = [int((p & t).sum()) for p, t in zip(predicted, truths)]
        unions = [int((p | t).sum()) for p, t in zip(predicted, truths)]
        groups = [
            group_labels(distractors=int(d), mask_area=int(t.sum())) + hard_stratum(int(d))
            for d, t in zip(rows["distractors"], truths)
        ]
        metrics.update_counts(intersections, unions, groups=groups)
        masks.extend(predicted)
        ious.extend(i / u if u else 1.0 for i, u in zip(intersections, unions))
    return ArmPredictions(masks, ious, metrics.compute())


def build_world(out: Path, settings: ExperimentSettings) -> Path:
    """The tree (made once per settings: a changed world gets a fresh folder) and the dataset."""
    world = {k: settings.to_dict()[k] for k in ("num_images", "scene_size", "object_scale", "distractor_levels", "seed")}
    tag = json.dumps(world, sort_keys=True)
    root = out / "refer"
    stamp = out / "refer.json"
    if not (root.exists() and stamp.exists() and stamp.read_text() == tag):
        if root.exists():
            shutil.rmtree(root)
        print(f"writing a synthetic refer tree: {settings.num_images} scenes of {settings.scene_size[0]}×"
              f"{settings.scene_size[1]}, distractor levels {settings.distractor_levels}, seed {settings.seed}")
        make_refer_dataset(
            root, num_images=settings.num_images, seed=settings.seed, image_size=settings.scene_size,
            distractor_levels=settings.distractor_levels, object_scale=settings.object_scale, show_progress=True,
        )
        stamp.write_text(tag)
    else:
        print(f"reusing the synthetic refer tree in {root}")
    return root


def arm_command(
    arm: str, out: Path, root: Path, settings: ExperimentSettings, training_dir: Path = TRAINING_DIR
) -> list[str]:
    """The ``training/train.py`` command line that trains ``arm`` into ``out/arms/<arm>`` on the tree at ``root``."""
    config = training_dir / "configs" / "synthetic_experiment.yaml"
    command = [
        sys.executable, str(training_dir / "train.py"), "--config", str(config),
        "--dataset_name", settings.dataset, "--data_dir", str(root), "--image_dir", str(root / "images" / "train2014"),
        "--synthetic_images", "0", "--cache_dir", str(out / "cache"), "--output_dir", str(out / "arms" / arm),
        "--augmentation", arm, "--seed", str(settings.seed), "--clip_model", settings.clip,
        "--model_name_or_path", settings.clip, "--model_type", settings.segmenter, "--image_size", str(settings.input_size),
        "--max_train_steps", str(settings.max_train_steps), "--train_batch_size", str(settings.train_batch_size),
        "--learning_rate", str(settings.learning_rate),
        "--text_encoder_learning_rate", str(settings.encoder_learning_rate),
        "--mosaic_prob", str(settings.mosaic_prob), "--top_k", str(settings.top_k),
        "--eval_splits", settings.eval_split, "--max_eval_samples", "64",
        "--checkpointing_steps", "none", "--report_to", "none", "--overwrite_output_dir",
    ]
    # every threshold is passed, "none" included: train.py's own defaults must not fill in for "off"
    for name in ("tau_image", "tau_text", "tau_own"):
        command += [f"--{name}", str(getattr(settings, name)).lower()]
    return [*command, "--max_train_samples", str(settings.max_train_samples).lower()]


def train_arm(arm: str, out: Path, root: Path, settings: ExperimentSettings, training_dir: Path = TRAINING_DIR) -> float:
    """Train one arm with training/train.py (:func:`arm_command`); return its wall time in seconds."""
    command = arm_command(arm, out, root, settings, training_dir)
    print(f"\n## Training arm {arm!r}: {settings.max_train_steps} steps of {settings.train_batch_size}")
    started = time.perf_counter()
    subprocess.run(command, check=True)
    return time.perf_counter() - started


def run_experiment(
    out: str | Path, settings: ExperimentSettings = ExperimentSettings(), *, training_dir: Path = TRAINING_DIR,
    pictures: bool = True,
) -> dict[str, Any]:
    """Run every step (see the module docstring) into ``out``; return what ``results.json`` holds."""
    from nemo_hf import NeMo, per_sentence
    from nemo_hf.experiment.report import write_report
    from nemo_hf.viz import save_mosaic_grid

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if not (training_dir / "train.py").is_file():
        raise FileNotFoundError(
            f"{training_dir / 'train.py'} not found: the experiment trains with the scripts of a source checkout "
            "of nemo_hf (git clone, then pip install -e .)"
        )
    started = time.perf_counter()
    root = build_world(out, settings)
    built = load_refcoco(settings.dataset, root, root / "images" / "train2014", cache_dir=out / "cache")
    train, evaluation = built["train"], per_sentence(built[settings.eval_split])
    print(f"{settings.dataset}: {len(train)} training objects, {len(evaluation)} {settings.eval_split} sentences")

    print(f"\n## Mining negatives with {settings.clip}")
    nemo = NeMo(
        pool=train, clip=settings.clip, top_k=settings.top_k, tau_image=settings.tau_image, tau_text=settings.tau_text,
        tau_own=settings.tau_own, mosaic_prob=1.0, size=max(settings.input_size, 160), seed=settings.seed, cache_dir=str(out / "mining_cache"),
    )
    mined = nemo.mine(train, report_dir=out)
    report = nemo.last_report
    if pictures:
        shown = mined.select(range(min(12, len(mined))))
        samples = shown.map(nemo, batched=True, remove_columns=shown.column_names, desc="NeMo mosaics")
        print(f"saved {save_mosaic_grid(samples, out / 'mosaics.png', n=8)}")

    arms: dict[str, dict[str, Any]] = {}
    predictions: dict[str, ArmPredictions] = {}
    for arm in settings.arms:
        seconds = train_arm(arm, out, root, settings, training_dir)
        predictions[arm] = evaluate_arm(out / "arms" / arm / "final", evaluation)
        arms[arm] = {"metrics": predictions[arm].metrics, "train_seconds": round(seconds, 1)}
        overall = predictions[arm].metrics
        hard = overall["groups"].get(HARD, {})
        print(f"{arm}: oIoU {overall['overall_iou']:.4f}, hard stratum oIoU {hard.get('overall_iou', float('nan')):.4f}")

    results = {
        "settings": settings.to_dict(),
        "mining": {
            "clip": settings.clip,
            "chosen_text_quantiles": report.chosen_text_quantiles,
            "candidate_text_quantiles": report.candidate_text_quantiles,
            "fallback_sentences": report.n_fallback,
            "sentences": report.n_sentences,
        },
        "arms": arms,
        "eval_sentences": len(evaluation),
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    write_report(out, results, evaluation, predictions, pictures=pictures)
    return results


def main_table(results: dict[str, Any], groups: Sequence[str] = ("distractors=0", "distractors=1", HARD)) -> str:
    """The console table: oIoU overall and per group, one row per arm.

    >>> fake = {"arms": {"none": {"metrics": {"overall_iou": 0.5, "mean_iou": 0.4, "groups": {HARD: {"overall_iou": 0.3}}}}}}
    >>> print(main_table(fake, groups=(HARD,)))
    | arm | oIoU | mIoU | oIoU distractors>=2 |
    |---|---|---|---|
    | none | 0.5000 | 0.4000 | 0.3000 |
    """
    header = "| arm | oIoU | mIoU | " + " | ".join(f"oIoU {g}" for g in groups) + " |"
    lines = [header, "|" + "---|" * (3 + len(groups))]
    for arm, entry in results["arms"].items():
        metrics = entry["metrics"]
        cells = [f"{metrics['groups'].get(g, {}).get('overall_iou', float('nan')):.4f}" for g in groups]
        lines.append(f"| {arm} | {metrics['overall_iou']:.4f} | {metrics['mean_iou']:.4f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
