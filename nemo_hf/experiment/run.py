"""Run the NeMo experiment end to end and write its report.

Steps, each printed as it runs:

1. **Worlds** — a training tree and a separate evaluation tree of the fair synthetic world
   (:mod:`nemo_hf.experiment.world`), read through the ``RefCOCO`` builder as real data would be.
2. **Mining** — each miner the arms need, once: the CLIP (``nemo``), the ground-truth
   oracle (``oracle``), the noisy oracle (``noisy-<σ>``) (:mod:`nemo_hf.experiment.miners`).
3. **Audit** — one sample per training sentence as each arm draws it, counted against the
   ground truth: wrong labels (false negatives), look-alikes, target sizes in their cells.
4. **Training** — each arm in this process, by the training loop of ``training/train.py``
   (:mod:`nemo_hf.experiment.arms`): same seed, data, initial weights and steps, a learning
   curve on a fixed subset of the evaluation world; finished arms are read back.
5. **Evaluation** — every evaluation sentence, per sentence (:mod:`nemo_hf.experiment.evaluation`):
   object accuracy and oIoU/mIoU/Prec@X overall and per stratum (referring-hard, easy,
   distractor groups), and each arm's paired difference with ``random`` and ``none``
   (:mod:`nemo_hf.experiment.statistics`).
6. **Report** — ``results.json``, ``report.md``, ``arms/<arm>/scores.npz`` and PNGs
   (:mod:`nemo_hf.experiment.report`).

Nothing is read from outside the installed package.

    >>> import inspect
    >>> list(inspect.signature(run_experiment).parameters)
    ['out', 'settings', 'pictures', 'quick']
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import datasets
from transformers import AutoConfig

from nemo_hf.experiment.arms import curve_subset, train_arm
from nemo_hf.experiment.evaluation import ArmPredictions, SentenceScores, evaluate_arm
from nemo_hf.experiment.miners import arm_rows_key, audit_arm, mine_for_arm, nemo_settings
from nemo_hf.experiment.report import hard_examples, write_report
from nemo_hf.experiment.settings import ExperimentSettings
from nemo_hf.experiment.statistics import paired_difference, paired_ratio_difference
from nemo_hf.experiment.world import load_world, referring_flags
from nemo_hf.metrics.protocol import REFERRING_HARD
from nemo_hf.nemo.audit import GroundTruth
from nemo_hf.nemo.transform import NeMo
from nemo_hf.pretrained import resolve_pretrained
from nemo_hf.viz import save_mosaic_grid

__all__ = ["compare", "run_experiment"]

BASELINES = ("random", "none")  # every other arm is compared with these, on the same sentences


def compare(a: SentenceScores, b: SentenceScores, seed: int = 0) -> dict[str, Any]:
    """``a`` − ``b`` on the same sentences: object accuracy on referring-hard and easy ones, and oIoU; with intervals."""
    hard = a.referring_hard
    return {
        "referring_hard": paired_difference(a.correct[hard], b.correct[hard], seed=seed).to_dict(),
        "easy": paired_difference(a.correct[~hard], b.correct[~hard], seed=seed).to_dict(),
        "oiou": paired_ratio_difference((a.intersection, b.intersection), (a.union, b.union), seed=seed).to_dict(),
    }


def _curve(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The learning curve as the report reads it: per evaluation, the step and the curve sentences' figures."""
    points = []
    for point in results.get("learning_curve", []):
        metrics = next(iter(point["eval"].values()))
        hard = metrics.get("objects", {}).get("groups", {}).get(REFERRING_HARD, {})
        points.append({"step": point["step"], "epoch": point["epoch"], "oiou": metrics["overall_iou"],
                       "object_accuracy": metrics.get("objects", {}).get("object_accuracy"),
                       "referring_hard_object_accuracy": hard.get("object_accuracy")})
    return points


def _patch_size(model: str) -> int:
    config = AutoConfig.from_pretrained(resolve_pretrained(model))
    vision = getattr(config, "vision_config", None) or config.clip_config.vision_config  # a CLIP, CLIPSeg or CRIS
    return int(vision.patch_size)


def _save_mosaics(rows: datasets.Dataset, train: datasets.Dataset, settings: ExperimentSettings, out: Path) -> None:
    shown = rows.select(range(min(12, len(rows))))
    drawer = NeMo(pool=train, **dataclasses.replace(nemo_settings(settings, out), mosaic_prob=1.0).to_dict())
    samples = shown.map(drawer, batched=True, remove_columns=shown.column_names, desc="NeMo mosaics")
    print(f"saved {save_mosaic_grid(samples, out / 'mosaics.png', n=8)}")


def run_experiment(
    out: str | Path, settings: ExperimentSettings = ExperimentSettings(), *, pictures: bool = True,
    quick: bool = False,
) -> dict[str, Any]:
    """Run every step (see the module docstring) into ``out``; return what ``results.json`` holds.

    ``quick`` marks a run at the toy budget: its report says the numbers mean nothing.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    world = load_world(out, settings)
    truth = GroundTruth.from_datasets(world.train)
    patch = _patch_size(settings.init_from or settings.backbone)  # the segmenter's patches: what targets must fill

    print("\n## Mining and auditing each arm's pictures")
    rows_by_miner: dict[str, datasets.Dataset] = {}
    mining: dict[str, Any] = {}
    for arm in settings.arms:
        key = arm_rows_key(arm)
        if key is not None and key not in rows_by_miner:
            rows_by_miner[key], mining[key] = mine_for_arm(arm, world.train, settings, out)
    rows = {arm: rows_by_miner.get(arm_rows_key(arm), world.train) for arm in settings.arms}
    audits = {arm: audit_arm(arm, rows[arm], world.train, truth, settings, patch) for arm in settings.arms}
    mined_arm = next((arm for arm in settings.arms if arm_rows_key(arm) is not None), None)
    if pictures and mined_arm is not None:
        _save_mosaics(rows[mined_arm], world.train, settings, out)

    curve = curve_subset(world.evaluation, settings.curve_sentences, settings.seed)
    picked = hard_examples(referring_flags(world.evaluation), 6, settings.seed) if pictures else []
    arms: dict[str, dict[str, Any]] = {}
    predictions: dict[str, ArmPredictions] = {}
    for done, arm in enumerate(settings.arms):
        results, seconds = train_arm(arm, out, world.root, settings, rows[arm], curve)
        predictions[arm] = evaluate_arm(out / "arms" / arm / "final", world.evaluation, keep=picked)
        predictions[arm].scores.save(out / "arms" / arm / "scores.npz")
        arms[arm] = {"metrics": predictions[arm].metrics, "train_seconds": round(seconds, 1),
                     "learning_curve": _curve(results)}
        hard = predictions[arm].metrics["objects"]["groups"].get(REFERRING_HARD, {})
        print(f"{arm}: object accuracy on referring-hard sentences {hard.get('object_accuracy', float('nan')):.4f}, "
              f"oIoU {predictions[arm].metrics['overall_iou']:.4f}")
        left = len(settings.arms) - done - 1
        if left:
            elapsed = time.perf_counter() - started
            print(f"{done + 1} of {len(settings.arms)} arms done in {elapsed / 60:.1f} min; about "
                  f"{elapsed / (done + 1) * left / 60:.0f} min to go")

    comparisons = {
        f"{arm} − {base}": compare(predictions[arm].scores, predictions[base].scores, seed=settings.seed)
        for base in BASELINES if base in predictions for arm in settings.arms if arm != base
    }
    results = {
        "settings": settings.to_dict(),
        "quick": quick,
        "world": world.stats,
        "mining": mining,
        "audits": audits,
        "arms": arms,
        "comparisons": comparisons,
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    write_report(out, results, world.evaluation, predictions, picked=picked, pictures=pictures)
    return results

