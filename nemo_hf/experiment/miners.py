"""Each arm's training rows and what its pictures hold, counted against the world's ground truth.

An arm's rows are the training split, with negatives for the mined arms: the CLIP's
(:meth:`~nemo_hf.nemo.transform.NeMo.mine`, ``nemo``), or the ground truth's
(:func:`~nemo_hf.mining.oracle.oracle_negatives`: ``oracle``, and ``noisy-<σ>`` with noise),
all handed to NeMo's transform through the same mined-rows path. Each miner mines once; arms
share it.

The audit draws one sample per training sentence as the arm would (every sample a mosaic
for the mosaic arms, the single image for ``none``) and counts, in the mosaic's own frame,
the mosaics holding a **false negative** (an object in a negative cell that the whole
expression fits: a wrong label), those holding an object of the target's category and of
its category and colour, and how large the targets are at the trained size: the median
longer side of a target in its cell and the share under one ViT patch.

    >>> arm_rows_key("noisy-0.75"), arm_rows_key("random")
    ('noisy-0.75', None)
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import datasets

from nemo_hf.experiment.clip_gate import clip_reading, gate_line
from nemo_hf.experiment.settings import ExperimentSettings, arm_miner
from nemo_hf.mining.oracle import MosaicCells, oracle_negatives
from nemo_hf.nemo.audit import GroundTruth, audit_mosaics, target_sizes
from nemo_hf.nemo.settings import NeMoSettings
from nemo_hf.nemo.transform import NeMo

__all__ = ["arm_rows_key", "audit_arm", "mine_for_arm", "nemo_settings"]

_DRAW_SIZE = 32  # a sample's plan (which images, which cell) does not depend on the canvas: draw small, judge at size


def nemo_settings(settings: ExperimentSettings, out: Path) -> NeMoSettings:
    """NeMo's settings as every arm uses them: the experiment's seed and cache, pictures at the input size."""
    return dataclasses.replace(settings.nemo, seed=settings.seed, cache_dir=str(out / "cache"),
                               size=settings.nemo.size or settings.input_size)


def arm_rows_key(arm: str) -> str | None:
    """The miner whose negatives ``arm`` trains with (``"clip"``, ``"oracle"``, ``"noisy-<σ>"``), or None."""
    _, miner, noise = arm_miner(arm)
    if miner is None:
        return None
    return "clip" if miner == "clip" else (arm if noise else "oracle")


def mine_for_arm(
    arm: str, train: datasets.Dataset, settings: ExperimentSettings, out: Path
) -> tuple[datasets.Dataset, dict[str, Any]]:
    """The rows ``arm`` trains on (with negatives for the mined arms) and a summary of the mining."""
    _, miner, noise = arm_miner(arm)
    nemo = nemo_settings(settings, out)
    if miner is None:
        return train, {}
    if miner == "clip":
        transform = NeMo(pool=train, clip=settings.clip, **nemo.to_dict())
        mined = transform.mine(train, report_dir=out / "mining")
        report = transform.last_report
        # the instrument before the result: what this CLIP reads on the pool it just mined (its cached embeddings)
        gate = clip_reading(train, settings.clip, cache_dir=nemo.cache_dir)
        print(gate_line(gate))
        return mined, {"miner": f"CLIP {settings.clip}", "fallback_sentences": report.n_fallback,
                       "sentences": report.n_sentences, "chosen_text_quantiles": report.chosen_text_quantiles,
                       "candidate_text_quantiles": report.candidate_text_quantiles, "clip_gate": gate}
    cells = MosaicCells(grid=nemo.grid, size=nemo.size, resize=nemo.resize, cross_point_jitter=nemo.cross_point_jitter)
    mined = oracle_negatives(train, train, top_k=nemo.top_k, needed=nemo.negatives_needed, tau=settings.oracle_tau,
                             noise=noise, seed=settings.seed, mosaic=cells)
    fallback = [flag for row in mined["negative_fallback"] for flag in row]
    return mined, {"miner": f"oracle, noise σ={noise:g}, tau {settings.oracle_tau}", "sentences": len(fallback),
                   "fallback_sentences": int(sum(fallback))}


def audit_arm(arm: str, rows: datasets.Dataset, train: datasets.Dataset, truth: GroundTruth,
              settings: ExperimentSettings, patch_size: int) -> dict[str, Any]:
    """One sample per training sentence, drawn as ``arm`` draws them, counted against the ground truth."""
    augmentation, _, _ = arm_miner(arm)
    nemo = nemo_settings(settings, Path("."))
    drawer = NeMo(pool=train, **dataclasses.replace(
        nemo, size=_DRAW_SIZE, mosaic_prob=0.0 if augmentation == "none" else 1.0,
        random_share=1.0 if augmentation == "random" else 0.0, warmup_epochs=0, thumbnail_cells=False,
        cache_dir=None).to_dict())
    drawn = rows.map(drawer, batched=True, remove_columns=rows.column_names, desc=f"auditing {arm}'s samples")
    sizes = target_sizes(drawn, truth, size=settings.input_size, patch_size=patch_size, resize=nemo.resize)
    audit: dict[str, Any] = {"median_target_px": round(sizes.median_px, 2),
                             "targets_below_one_patch": round(sizes.below_patch, 4), "patch_size": patch_size}
    if augmentation != "none":
        counted = audit_mosaics(drawn, truth, size=settings.input_size, resize=nemo.resize)
        audit |= {"mosaics": counted.mosaics, **{k: round(v, 4) for k, v in counted.shares().items()}}
    return audit
