"""The fair world, measured: how often sentences need more than category and colour, and how
often each miner's drawn mosaics carry a wrong label.

    python -m benchmarks.fair_world_audit                      # 1,500 images, mosaics of 320 px
    python -m benchmarks.fair_world_audit --images 4500        # an eval tree: referring-hard counts per split
    python -m benchmarks.fair_world_audit --quick              # a smoke run

Writes a :data:`~nemo_hf.synthetic.FAIR_WORLD` tree (RefCOCO only), builds ``refcoco_unc``,
and prints per split the sentences, the referring-hard ones (``needs`` beyond category and
colour) and the share. Then, with the training split as the pool, each miner chooses
negatives for every training sentence — the oracle (τ on, fit judged in mosaic cells), the
oracle judging fit in each image's own frame, the oracle with τ off, the noisy oracle at
each σ of :data:`~nemo_hf.mining.oracle.NOISE_SWEEP` — and ``NeMo`` draws one mined mosaic
per sentence from those columns (random mosaics: one per sentence from the whole pool).
:func:`~nemo_hf.nemo.audit.audit_mosaics` counts the mosaics holding a false negative, an
object of the target's category, and of its category and colour, judged on a ``--size``
canvas; :func:`~nemo_hf.nemo.audit.target_sizes` the median target side and the share under
a ``--patch`` px patch. Mosaics are drawn small (which images go in which cell does not
depend on the canvas size) and judged at ``--size``. Results go to ``--out`` as JSON.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import datasets

from nemo_hf.data import load_refcoco
from nemo_hf.data.meaning import referring_hard
from nemo_hf.mining.oracle import NOISE_SWEEP, MosaicCells, oracle_negatives
from nemo_hf.nemo import NeMo
from nemo_hf.nemo.audit import GroundTruth, audit_mosaics, target_sizes
from nemo_hf.synthetic import FAIR_WORLD, make_refer_dataset

_DRAW_SIZE = 32  # plans do not depend on the canvas: draw small, judge at --size


def world_strata(ds: datasets.DatasetDict) -> dict[str, dict[str, Any]]:
    """Per split: sentences, referring-hard sentences and their share."""
    out = {}
    for split, part in ds.items():
        needs = [n for row in part["needs"] for n in row]
        hard = sum(map(referring_hard, needs))
        out[split] = {"images": len(set(part["image_id"])), "sentences": len(needs), "referring_hard": hard,
                      "share": round(hard / max(1, len(needs)), 3)}  # fmt: skip
    return out


def audit_arm(mined: datasets.Dataset, pool: datasets.Dataset, truth: GroundTruth, random_share: float,
              size: int, patch: int) -> dict[str, Any]:  # fmt: skip
    """Draw one mosaic per sentence with NeMo and audit it."""
    nemo = NeMo(pool, size=_DRAW_SIZE, mosaic_prob=1.0, random_share=random_share, top_k=20)
    rows = mined.map(nemo, batched=True, remove_columns=mined.column_names)
    audit = audit_mosaics(rows, truth, size=size)
    sizes = target_sizes(rows, truth, size=size, patch_size=patch)
    shares = {k: round(v, 4) for k, v in audit.shares().items()}
    return {**shares, "mosaics": audit.mosaics, "median_target_px": round(sizes.median_px, 1),
            f"below_patch{patch}": round(sizes.below_patch, 3)}  # fmt: skip


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--size", type=int, default=320, help="mosaic canvas the audit judges on")
    parser.add_argument("--patch", type=int, default=16)
    parser.add_argument("--top-k", type=int, default=20)
    parser.add_argument("--work", type=Path, default=None, help="folder for the tree and cache (default: temporary)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--quick", action="store_true", help="a tiny world, for a smoke run")
    args = parser.parse_args(argv)
    if args.quick:
        args.images, args.size = 60, 96
    datasets.disable_progress_bars()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        start = time.perf_counter()
        tree = make_refer_dataset(work / "refer", args.images, args.seed, datasets=("refcoco",), **FAIR_WORLD)
        built = load_refcoco("refcoco_unc", tree.root, tree.image_dir, cache_dir=work / "cache")
        result: dict[str, Any] = {"images": args.images, "seed": args.seed, "size": args.size,
                                  "world_s": round(time.perf_counter() - start, 1), "strata": world_strata(built)}  # fmt: skip
        for split, row in result["strata"].items():
            print(f"{split}: {row['images']} images, {row['sentences']} sentences, {row['referring_hard']} "
                  f"referring-hard ({row['share']:.0%})")  # fmt: skip
        train = built["train"]
        truth = GroundTruth.from_datasets(train)
        arms: dict[str, dict[str, Any]] = {
            "oracle": {"mosaic": MosaicCells(size=args.size)},
            "oracle, own frame": {"mosaic": None},
            "oracle, tau off": {"tau": None},
            **{f"noisy oracle sigma={s}": {"noise": s, "mosaic": MosaicCells(size=args.size)} for s in NOISE_SWEEP},
        }
        result["arms"] = {}
        for name, kwargs in arms.items():
            start = time.perf_counter()
            mined = oracle_negatives(train, train, top_k=args.top_k, **kwargs)
            mining_s = round(time.perf_counter() - start, 2)
            result["arms"][name] = {"mining_s": mining_s, **audit_arm(mined, train, truth, 0.0, args.size, args.patch)}
        result["arms"]["random"] = audit_arm(train, train, truth, 1.0, args.size, args.patch)
    print("\n| miner | mosaics | false negative | same category | same category + colour | mining s |")
    print("|---|---|---|---|---|---|")
    for name, row in result["arms"].items():
        print(f"| {name} | {row['mosaics']} | {row['false_negative']:.1%} | {row['same_category']:.1%} | "
              f"{row['same_category_colour']:.1%} | {row.get('mining_s', '')} |")  # fmt: skip
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
