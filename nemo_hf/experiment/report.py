"""The experiment's report: ``results.json``, ``report.md`` and the pictures a person looks at.

- ``object_accuracy_by_stratum.png`` — object accuracy (the prediction chose the target) per
  stratum: referring-hard, easy, and each distractor group; one colour per arm;
- ``learning_curves.png`` — referring-hard object accuracy on the curve's sentences against
  the training step, one line per arm: whether the runs finished learning;
- ``predictions_hard.png`` — the same referring-hard sentences (drawn with a fixed seed,
  not picked by result) side by side: the image with its ground truth, then each arm's
  prediction and what it chose;
- ``mosaics.png`` — samples of a mined arm, drawn at the size the arms train on.

The tables name each metric in full; a one-seed report says it is one seed, and a run at
the ``--quick`` budget says its numbers mean nothing.

    >>> _cell({"groups": {"referring=hard": {"object_accuracy": 0.71234, "count": 12}}}, "referring=hard")
    '0.7123 (12)'
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from nemo_hf.experiment.clip_gate import GATES, READING_NAMES
from nemo_hf.experiment.evaluation import PRIMARY, ArmPredictions
from nemo_hf.metrics.objects import OUTCOMES
from nemo_hf.metrics.protocol import REFERRING_EASY
from nemo_hf.modeling.inputs import target_mask
from nemo_hf.viz import caption_tile, save_tile_sheet

__all__ = ["STRATA", "hard_examples", "main_table", "write_report"]

STRATA = (PRIMARY, REFERRING_EASY, "distractors=0", "distractors=1", "distractors=2", "distractors=3+")
_QUICK_NOTE = ("**`--quick`: a toy budget that checks the pipeline runs. Its numbers mean nothing; do not read an "
               "order of the arms into them.**")


def _objects(metrics: dict[str, Any], group: str | None) -> dict[str, Any]:
    objects = metrics["objects"]
    return objects if group is None else objects["groups"].get(group, {})


def _cell(objects: dict[str, Any], group: str) -> str:
    """``object accuracy (sentences)`` of a group, or a dash when the evaluation has none of it."""
    entry = objects["groups"].get(group)
    return "–" if not entry else f"{entry['object_accuracy']:.4f} ({entry['count']})"


def main_table(results: dict[str, Any]) -> str:
    """The console table: object accuracy on referring-hard and easy sentences, oIoU, mIoU; one row per arm."""
    lines = ["| arm | object accuracy, referring-hard | object accuracy, easy | wrong-object rate, referring-hard "
             "| oIoU (all) | mIoU (all) |", "|---|---|---|---|---|---|"]
    for arm, entry in results["arms"].items():
        metrics = entry["metrics"]
        hard = _objects(metrics, PRIMARY)
        lines.append(f"| {arm} | {_cell(metrics['objects'], PRIMARY)} | {_cell(metrics['objects'], REFERRING_EASY)} | "
                     f"{hard.get('wrong_object_rate', float('nan')):.4f} | {metrics['overall_iou']:.4f} | "
                     f"{metrics['mean_iou']:.4f} |")
    return "\n".join(lines)


def _comparisons_table(results: dict[str, Any]) -> str:
    lines = ["| comparison | referring-hard object accuracy, points [95% interval] | easy | oIoU (all), points |",
             "|---|---|---|---|"]
    for name, entry in results.get("comparisons", {}).items():
        lines.append(f"| {name} | {_points(entry['referring_hard'])} | {_points(entry['easy'])} | "
                     f"{_points(entry['oiou'])} |")
    return "\n".join(lines)


def _points(difference: dict[str, float]) -> str:
    return (f"{100 * difference['value']:+.2f} [{100 * difference['low']:+.2f}, {100 * difference['high']:+.2f}]")


def _auc_text(value: float | None) -> str:
    """An AUC for a table; a dash where the pool gave no sentence that reading."""
    return "—" if value is None else f"{value:.3f}"


def _plot(path: Path, draw: Any, size: tuple[float, float] = (8, 3.6)) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=size, dpi=110)
    draw(ax)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _plot_strata(results: dict[str, Any], path: Path) -> Path:
    def draw(ax: Any) -> None:
        arms = list(results["arms"])
        width = 0.8 / max(len(arms), 1)
        for k, arm in enumerate(arms):
            objects = results["arms"][arm]["metrics"]["objects"]
            values = [objects["groups"].get(g, {}).get("object_accuracy", float("nan")) for g in STRATA]
            ax.bar(np.arange(len(STRATA)) + (k - (len(arms) - 1) / 2) * width, values, width, label=arm)
        ax.set_xticks(np.arange(len(STRATA)), [s.replace("distractors", "d").replace("referring=", "") for s in STRATA])
        ax.set_ylabel("object accuracy")
        ax.set_ylim(0, 1)
        ax.set_title("Object accuracy by stratum (the prediction overlaps the target most)")
        ax.legend(loc="lower left", fontsize=7, ncol=2)

    return _plot(path, draw)


def _plot_curves(results: dict[str, Any], path: Path) -> Path | None:
    curves = {arm: entry.get("learning_curve") or [] for arm, entry in results["arms"].items()}
    if not any(curves.values()):
        return None

    def draw(ax: Any) -> None:
        for arm, curve in curves.items():
            points = [(p["step"], p["referring_hard_object_accuracy"]) for p in curve
                      if p.get("referring_hard_object_accuracy") is not None]
            if points:
                ax.plot(*zip(*points), marker=".", label=arm)
        ax.set_xlabel("training step")
        ax.set_ylabel("object accuracy, referring-hard")
        ax.set_title("Learning curves (the curve's evaluation sentences)")
        ax.legend(fontsize=7)

    return _plot(path, draw)


def hard_examples(referring: np.ndarray, count: int, seed: int) -> list[int]:
    """``count`` referring-hard sentences drawn with ``seed`` (not picked by result), in order."""
    hard = np.flatnonzero(referring)
    rng = np.random.default_rng(seed)
    return sorted(rng.choice(hard, size=min(count, hard.size), replace=False).tolist()) if hard.size else []


def _save_predictions(evaluation: Any, predictions: dict[str, ArmPredictions], picked: list[int],
                      path: Path) -> Path | None:
    if not picked:
        return None
    tiles = []
    for i in picked:
        row = evaluation[i]
        tiles.append(caption_tile(row["image"], target_mask(row["mask"]), f'"{row["sentence"]}" (truth)'))
        for arm, arm_predictions in predictions.items():
            code = int(arm_predictions.scores.outcome[i])
            chose = OUTCOMES[code] if code >= 0 else "no target"
            tiles.append(caption_tile(row["image"], arm_predictions.kept_masks[i], f"{arm}: chose {chose}"))
    return save_tile_sheet(tiles, path, columns=1 + len(predictions))


def _miners_table(results: dict[str, Any]) -> list[str]:
    lines = ["| arm | mosaics holding a false negative | … an object of the target's category | … of its category "
             "and colour | median target side in its cell (px) | targets under one patch |", "|---|---|---|---|---|---|"]
    for arm, audit in results["audits"].items():
        if "false_negative" in audit:
            lines.append(f"| {arm} | {audit['false_negative']:.1%} | {audit['same_category']:.1%} | "
                         f"{audit['same_category_colour']:.1%} | {audit['median_target_px']:.1f} | "
                         f"{audit['targets_below_one_patch']:.1%} |")
        else:
            lines.append(f"| {arm} (single images) | – | – | – | {audit['median_target_px']:.1f} | "
                         f"{audit['targets_below_one_patch']:.1%} |")
    return lines


def write_report(out: Path, results: dict[str, Any], evaluation: Any, predictions: dict[str, ArmPredictions], *,
                 picked: list[int] = (), pictures: bool = True) -> None:  # type: ignore[assignment]
    """Write ``results.json``, ``report.md`` and (``pictures``) the PNGs into ``out``; print the main table."""
    (out / "results.json").write_text(json.dumps(results, indent=2))
    images = []
    if pictures:
        images.append(("Object accuracy by stratum", _plot_strata(results, out / "object_accuracy_by_stratum.png")))
        if (curves := _plot_curves(results, out / "learning_curves.png")) is not None:
            images.append(("Learning curves", curves))
        if (shown := _save_predictions(evaluation, predictions, list(picked), out / "predictions_hard.png")):
            images.append(("The same referring-hard sentences, each arm", shown))
        if (out / "mosaics.png").exists():
            images.append(("Mined mosaics, at the trained size", out / "mosaics.png"))
    settings, world = results["settings"], results["world"]
    nemo = settings["nemo"]
    lines = [
        "# NeMo on the synthetic referring world",
        "",
        *([_QUICK_NOTE, ""] if results.get("quick") else []),
        f"World: {settings['num_images']} scenes (seed {settings['seed']}) read as {settings['dataset']}: "
        f"{world['train_objects']} training objects, {world['train_sentences']} sentences, "
        f"{world['train_referring_hard']} of them referring-hard (they need size, position or a relation, not "
        f"only category and colour). Evaluation: {world['eval_sentences']} sentences of {settings['eval_images']} "
        f"other scenes (seed {settings['eval_seed']}), {world['eval_referring_hard']} referring-hard; never mined "
        "or trained on.",
        "",
        f"Each arm: the segmenter on `{settings['init_from'] or settings['backbone']}`, trained whole for "
        f"{settings['max_train_steps']} steps of {settings['train_batch_size']} at {settings['input_size']} px with the "
        f"same seed, initial weights and data order; only the pictures differ (mosaic probability "
        f"{nemo['mosaic_prob']}, top_k {nemo['top_k']}, tau_image {nemo['tau_image']}, tau_text {nemo['tau_text']}, "
        f"oracle tau {settings['oracle_tau']}, warm-up epochs {nemo['warmup_epochs']}).",
        "",
        "**Object accuracy**: the share of sentences whose predicted mask overlaps the target more than any other "
        "annotated object of the image; the wrong-object rate is the share that chose another object.",
        "",
        main_table(results),
        "",
        "Paired differences on the same sentences (sentence bootstrap, 95%):",
        "",
        _comparisons_table(results),
        "",
        "One seed: the benchmark (`python -m benchmarks.nemo_effect`) runs several and applies the criteria in "
        "BENCHMARKS.md.",
        "",
        "## What each arm's pictures hold (one sample per training sentence, judged on the ground truth)",
        "",
        *_miners_table(results),
        "",
    ]
    if gate := results.get("mining", {}).get("clip", {}).get("clip_gate"):
        lines += ["## The mining CLIP, on this world's mining pool", "",
                  "Per training sentence, the ROC AUC of its text→image cosines for the pool images that hold what it "
                  "states, averaged; the fair test's gate beside each (BENCHMARKS.md). A `nemo` arm mined by a CLIP "
                  "that fails a gate does not test NeMo as the paper means it.", "",
                  "| reading | AUC | gate | passes |", "|---|---|---|---|",
                  *(f"| {READING_NAMES[name]} | {_auc_text(gate.get(name))} | {least:g} | "
                    f"{'yes' if gate['gates'][name] else '**no**'} |" for name, least in GATES.items()),
                  ""]
        if gate.get("own_image_r1") is not None:  # None when no sentence's own image is in the pool
            lines += [f"Own-image R@1 {gate['own_image_r1']:.4f} (chance {gate['chance_r1']:.4f}).", ""]
    for name, path in images:
        lines += [f"![{name}]({Path(path).name})", ""]
    lines.append(f"Wall time: {results['wall_seconds']:.0f} s; training per arm: "
                 + ", ".join(f"{arm} {entry['train_seconds']:.0f} s" for arm, entry in results["arms"].items()) + ".")
    (out / "report.md").write_text("\n".join(lines) + "\n")
    print("\n" + (_QUICK_NOTE + "\n\n" if results.get("quick") else "") + main_table(results)
          + f"\n\nsaved {out / 'report.md'}, {out / 'results.json'}")
