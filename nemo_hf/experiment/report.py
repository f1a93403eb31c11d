"""The experiment's report: ``results.json``, ``report.md`` and the pictures a person looks at.

- ``oiou_by_group.png`` — oIoU per distractor group (0, 1, 2, 3+, the hard stratum ≥ 2,
  all) as bars, one colour per arm;
- ``predictions_hard.png`` — the same hard samples (≥ 2 distractors, drawn with a fixed
  seed, not picked by result) side by side: the image with its ground truth, then each
  arm's prediction with its IoU;
- ``mosaics.png`` and ``mining_report.png`` are written by the run itself.

Groups are read from the evaluation's group labels; a group the split lacks shows as a dash:

    >>> metrics = {"groups": {"distractors=0": {"overall_iou": 0.71234, "count": 12}}}
    >>> _cell(metrics, "distractors=0"), _cell(metrics, "distractors=3+")
    ('0.7123 (12)', '–')
"""

from __future__ import annotations

import json
from pathlib import Path
from collections.abc import Sequence
from typing import Any

import numpy as np

from nemo_hf.experiment.evaluation import HARD, ArmPredictions
from nemo_hf.modeling.inputs import target_mask
from nemo_hf.modeling.registry import architecture
from nemo_hf.viz import caption_tile, save_tile_sheet

__all__ = ["GROUPS", "main_table", "write_report"]

GROUPS = ("distractors=0", "distractors=1", "distractors=2", "distractors=3+", HARD)
_PAPER = (
    "Paper (CRIS on G-Ref umd val, oIoU): no augmentation 55.91, random 4-image mosaics 56.22, NeMo 58.47; "
    "the gain grows with the number of distractors."
)


def _group_value(metrics: dict[str, Any], group: str, key: str = "overall_iou") -> float:
    return float(metrics["groups"].get(group, {}).get(key, float("nan")))


def _cell(metrics: dict[str, Any], group: str) -> str:
    """``oIoU (sentences)`` of a group, or a dash when the split has none of it."""
    entry = metrics["groups"].get(group)
    return "–" if entry is None else f"{entry['overall_iou']:.4f} ({entry['count']})"


def _plot_groups(results: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [*GROUPS, "all"]
    arms = list(results["arms"])
    fig, ax = plt.subplots(figsize=(8, 3.6), dpi=110)
    width = 0.8 / max(len(arms), 1)
    for k, arm in enumerate(arms):
        metrics = results["arms"][arm]["metrics"]
        values = [_group_value(metrics, g) for g in GROUPS] + [metrics["overall_iou"]]
        ax.bar(np.arange(len(labels)) + (k - (len(arms) - 1) / 2) * width, values, width, label=arm)
    ax.set_xticks(np.arange(len(labels)), [label.replace("distractors", "d") for label in labels])
    ax.set_ylabel("oIoU")
    ax.set_ylim(0, 1)
    ax.set_title(f"oIoU by distractor group ({results['settings']['dataset']} {results['settings']['eval_split']})")
    ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _hard_examples(evaluation: Any, count: int, seed: int) -> list[int]:
    hard = [i for i, d in enumerate(evaluation["distractors"]) if d >= 2]
    rng = np.random.default_rng(seed)
    return sorted(rng.choice(hard, size=min(count, len(hard)), replace=False).tolist()) if hard else []


def _save_predictions(evaluation: Any, predictions: dict[str, ArmPredictions], path: Path, seed: int) -> Path | None:
    picked = _hard_examples(evaluation, 6, seed)
    if not picked:
        return None
    tiles = []
    for i in picked:
        row = evaluation[i]
        tiles.append(caption_tile(row["image"], target_mask(row["mask"]), f'"{row["sentence"]}" (truth)'))
        for arm, arm_predictions in predictions.items():
            tiles.append(caption_tile(row["image"], arm_predictions.masks[i], f"{arm}: IoU {arm_predictions.ious[i]:.2f}"))
    return save_tile_sheet(tiles, path, columns=1 + len(predictions))


def _verdict(results: dict[str, Any]) -> str:
    arms = results["arms"]
    hard = {arm: _group_value(entry["metrics"], HARD) for arm, entry in arms.items()}
    order = sorted(hard, key=lambda arm: -hard[arm])
    ranking = " > ".join(f"{arm} ({hard[arm]:.4f})" for arm in order)
    expected = [arm for arm in ("nemo", "random", "none") if arm in hard]
    agrees = order == expected
    return (
        f"Hard stratum (≥ 2 distractors) oIoU: {ranking}. "
        + ("This is the paper's order. " if agrees else "This is **not** the paper's order (NeMo > random > none). ")
        + "One seed only: differences smaller than the seed-to-seed spread in BENCHMARKS.md "
        "(benchmarks/nemo_effect.py, 3 seeds) are noise."
    )


def write_report(
    out: Path, results: dict[str, Any], evaluation: Any, predictions: dict[str, ArmPredictions], *, pictures: bool = True
) -> None:
    """Write ``results.json``, ``report.md`` and (``pictures``) the PNGs into ``out``; print the table."""
    results["verdict"] = _verdict(results)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    images = []
    if pictures:
        images.append(("oIoU by distractor group", _plot_groups(results, out / "oiou_by_group.png")))
        shown = _save_predictions(evaluation, predictions, out / "predictions_hard.png", results["settings"]["seed"])
        if shown is not None:
            images.append(("The same hard samples, each arm", shown))
        images += [(name, out / f) for name, f in (("NeMo mosaics", "mosaics.png"), ("Mining", "mining_report.png"))
                   if (out / f).exists()]
    settings, mining = results["settings"], results["mining"]
    groups = "\n".join(
        f"| {arm} | " + " | ".join(_cell(entry["metrics"], g) for g in GROUPS) + " |"
        for arm, entry in results["arms"].items()
    )
    lines = [
        "# NeMo on the synthetic referring world: none / random / NeMo",
        "",
        f"{settings['dataset']} ({settings['eval_split']}, {results['eval_sentences']} sentences) from "
        f"{settings['num_images']} synthetic scenes, distractor levels {settings['distractor_levels']}, seed "
        f"{settings['seed']}. Each arm: a {architecture(settings['segmenter']).display_name} on the towers of "
        f"`{settings['clip']}`, trained whole for "
        f"{settings['max_train_steps']} steps of {settings['train_batch_size']} at {settings['input_size']} px, same "
        "initial weights and data order; only the augmentation differs (mosaic probability "
        f"{settings['nemo']['mosaic_prob']}, top_k {settings['nemo']['top_k']}, tau_image {settings['nemo']['tau_image']}, "
        f"tau_text {settings['nemo']['tau_text']}, tau_own {settings['nemo']['tau_own']}).",
        "",
        main_table(results),
        "",
        "oIoU per distractor group (sentences in brackets):",
        "",
        "| arm | " + " | ".join(GROUPS) + " |",
        "|---|" + "---|" * len(GROUPS),
        groups,
        "",
        results["verdict"],
        "",
        _PAPER,
        "",
        "## Mining",
        "",
        f"Text→image cosine of the chosen negatives (quantiles {mining['chosen_text_quantiles']}) against all "
        f"candidates ({mining['candidate_text_quantiles']}); {mining['fallback_sentences']} of "
        f"{mining['sentences']} sentences fell back to the least similar candidates.",
        "",
    ]
    for name, path in images:
        lines += [f"![{name}]({Path(path).name})", ""]
    lines.append(f"Wall time: {results['wall_seconds']:.0f} s; per arm: "
                 + ", ".join(f"{arm} {entry['train_seconds']:.0f} s" for arm, entry in results["arms"].items()) + ".")
    (out / "report.md").write_text("\n".join(lines) + "\n")
    print("\n" + main_table(results) + "\n\n" + results["verdict"] + f"\n\nsaved {out / 'report.md'}, {out / 'results.json'}")


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
