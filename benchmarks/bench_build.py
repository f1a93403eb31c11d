"""Build a RefCOCO-sized synthetic tree and compare the build with its floor.

Floor: decoding the same masks (union of polygon parts) with pycocotools alone, inputs
already in memory. The build itself never decodes a mask to bytes (it turns the RLE runs
straight into PNG rows, see ``nemo_hf.data.masks.MaskRuns``), so it can come in under the
floor. Each measurement runs in its own process, which reports its own peak RSS. The
synthetic tree is generated once into ``benchmarks/.cache``.

    python -m benchmarks.bench_build                       # ≈ 20k images, 50k refs; ~10 minutes
    python -m benchmarks.bench_build --num-images 2000 --rounds 1    # quick look
    python -m benchmarks.bench_build --instances           # the cost of the ``instances`` column

Prints a Markdown table for the "Build" section of BENCHMARKS.md: per tree and ``num_proc``,
the median over rounds of each round's build/floor. With ``--instances`` it compares instead
builds with and without the ``instances`` column (every object of each image as RLE,
``with_instances=False`` leaves it null): time and Arrow bytes on disk, each round's
with/without ratio from neighbouring builds.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import report

CACHE = Path(__file__).parent / ".cache"


def _peak_rss_mb() -> float:
    """Peak RSS of this process or of its largest worker (num_proc), in MB (Linux reports KiB)."""
    return max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)) / 1024


def tree_for(num_images: int) -> Path:
    from nemo_hf.synthetic.tree import make_refer_dataset

    root = CACHE / f"refer_{num_images}"
    if not root.exists():
        print(f"generating a synthetic tree of {num_images} images in {root} (once)", flush=True)
        make_refer_dataset(root, num_images=num_images, seed=0, image_size=(640, 480),
                           datasets=("refcoco",), show_progress=True)
    return root


def child_build(root: Path, num_proc: int | None, with_instances: bool = True) -> dict:
    import datasets

    from nemo_hf.data.load import load_refcoco

    datasets.disable_progress_bars()
    with tempfile.TemporaryDirectory() as cache:
        start, cpu_start = time.perf_counter(), time.process_time()
        ds = load_refcoco("refcoco_unc", root, root / "images" / "train2014", cache_dir=cache,
                          num_proc=num_proc, with_instances=with_instances)
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
        refs = sum(len(part) for part in ds.values())
        sentences = sum(len(s) for part in ds.values() for s in part["sentences"])
        arrow_bytes = sum(path.stat().st_size for path in Path(cache).rglob("*.arrow"))
        # a Parquet copy (push_to_hub, write_parquet) embeds each row's JPEG instead of its path
        image_bytes = sum(os.path.getsize(image["path"]) for part in ds.values()
                          for image in part.cast_column("image", datasets.Image(decode=False))["image"])
    return {"seconds": seconds, "cpu_seconds": cpu_seconds, "refs": refs, "sentences": sentences,
            "peak_rss_mb": _peak_rss_mb(), "arrow_bytes": arrow_bytes, "image_bytes": image_bytes}


def child_floor(root: Path) -> dict:
    from pycocotools import mask as mask_utils

    instances = json.loads((root / "refcoco" / "instances.json").read_text())
    refs = pickle.loads((root / "refcoco" / "refs(unc).p").read_bytes())
    annotations = {a["id"]: a for a in instances["annotations"]}
    sizes = {i["id"]: (i["height"], i["width"]) for i in instances["images"]}
    start = time.perf_counter()
    for ref in refs:
        ann = annotations[ref["ann_id"]]
        height, width = sizes[ann["image_id"]]
        segmentation = ann["segmentation"]
        if isinstance(segmentation, list):
            rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width), intersect=False)
        elif isinstance(segmentation["counts"], list):
            rle = mask_utils.frPyObjects(segmentation, height, width)
        else:
            rle = {"size": segmentation["size"], "counts": segmentation["counts"].encode()}
        mask_utils.decode(rle)
    return {"seconds": time.perf_counter() - start, "peak_rss_mb": _peak_rss_mb()}


def run_child(kind: str, root: Path, num_proc: int = 1, with_instances: bool = True) -> dict:
    out = subprocess.run([sys.executable, "-m", "benchmarks.bench_build", "--child", kind, "--root", str(root),
                          "--num-proc", str(num_proc), "--with-instances", str(int(with_instances))],
                         check=True, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    return json.loads(out.stdout.strip().splitlines()[-1])


def instances_cost(trees: list[int], rounds: int) -> None:
    """Builds with and without the ``instances`` column, interleaved; prints a Markdown table."""
    rows = []
    for n in trees:
        root = tree_for(n)
        objects = json.loads((root / "refcoco" / "instances.json").read_text())
        per_image = len(objects["annotations"]) / len(objects["images"])
        pairs = []
        for r in range(rounds):
            # the order alternates, so a slow spell of the shared machine hits both arms alike
            arms = (True, False) if r % 2 == 0 else (False, True)
            result = {arm: run_child("build", root, 1, with_instances=arm) for arm in arms}
            pairs.append((result[True], result[False]))
            print(f"round {r + 1}: {n:>6} images: with {result[True]['seconds']:.1f} s "
                  f"({result[True]['cpu_seconds']:.1f} s CPU), without {result[False]['seconds']:.1f} s "
                  f"({result[False]['cpu_seconds']:.1f} s CPU)", flush=True)
        ratios = sorted(w["seconds"] / wo["seconds"] for w, wo in pairs)
        # CPU time of the build process: less disturbed than wall time when the machine is shared
        cpu_ratios = sorted(w["cpu_seconds"] / wo["cpu_seconds"] for w, wo in pairs)
        with_, without = pairs[0]
        disk_ratio = with_["arrow_bytes"] / without["arrow_bytes"]
        extra = with_["arrow_bytes"] - without["arrow_bytes"]
        extra_per_ref = extra / with_["refs"]
        embedded_share = extra / (without["arrow_bytes"] + without["image_bytes"])
        rows.append(
            f"| {n:,} images ({with_['refs']:,} refs, {per_image:.1f} objects/image) | "
            f"{min(w['seconds'] for w, _ in pairs):.1f} s | {min(wo['seconds'] for _, wo in pairs):.1f} s | "
            f"{statistics.median(ratios):.2f}× ({ratios[0]:.2f}–{ratios[-1]:.2f}) | "
            f"**{statistics.median(cpu_ratios):.2f}×** ({cpu_ratios[0]:.2f}–{cpu_ratios[-1]:.2f}) | "
            f"{with_['arrow_bytes'] / 2**20:,.1f} MB | {without['arrow_bytes'] / 2**20:,.1f} MB | "
            f"**{disk_ratio:.2f}×** (+{extra_per_ref / 1024:.2f} KB/ref) | +{embedded_share:.1%} | "
            f"{max(w['peak_rss_mb'] for w, _ in pairs):,.0f} / {max(wo['peak_rss_mb'] for _, wo in pairs):,.0f} MB |")
    print("\n| tree | build with instances (fastest) | without | wall time with / without: median (range) "
          "| CPU time with / without | Arrow with | without | disk with / without | with images embedded "
          "| peak RSS with / without |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print(f"\n{rounds} rounds, num_proc=1; {report.cpu_name()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-images", type=int, default=20000)
    parser.add_argument("--child", choices=["build", "floor"])
    parser.add_argument("--root", type=Path)
    parser.add_argument("--num-proc", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of floor and builds")
    parser.add_argument("--instances", action="store_true",
                        help="compare builds with and without the instances column instead of build and floor")
    parser.add_argument("--with-instances", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        result = child_build(args.root, args.num_proc if args.num_proc > 1 else None, bool(args.with_instances)) \
            if args.child == "build" else child_floor(args.root)
        print(json.dumps(result))
        return

    small_images = max(200, args.num_images // 8)
    if args.instances:
        instances_cost(sorted({small_images, args.num_images}), args.rounds)
        return
    rows = []
    for n in sorted({small_images, args.num_images}):
        root = tree_for(n)
        # rounds interleave the floor and the builds, so a busy spell slows all of them alike;
        # each round's build/floor is a ratio of neighbours
        rounds: dict[int, list[tuple[dict, dict]]] = {1: [], 2: []}
        for r in range(args.rounds):
            floor = run_child("floor", root)
            for num_proc in rounds:
                build = run_child("build", root, num_proc)
                rounds[num_proc].append((build, floor))
                print(f"round {r + 1}: {n:>6} images, num_proc={num_proc}: build {build['seconds']:.1f} s, "
                      f"floor {floor['seconds']:.1f} s, build/floor = {build['seconds'] / floor['seconds']:.2f}x",
                      flush=True)
        for num_proc, pairs in rounds.items():
            ratios = sorted(b["seconds"] / f["seconds"] for b, f in pairs)
            build = min((b for b, _ in pairs), key=lambda b: b["seconds"])
            floor = statistics.median(f["seconds"] for _, f in pairs)
            rows.append(f"| {n:,} images ({build['refs']:,} refs) | {num_proc} | {build['seconds']:.1f} s | "
                        f"{build['refs'] / build['seconds']:,.0f} | {max(b['peak_rss_mb'] for b, _ in pairs):,.0f} MB "
                        f"| {floor:.1f} s | **{statistics.median(ratios):.2f}×** ({ratios[0]:.2f}–{ratios[-1]:.2f}) |")
        if n == small_images:
            small_rss, small_refs = rounds[1][0][0]["peak_rss_mb"], rounds[1][0][0]["refs"]
    large = rounds[1][0][0]
    print("\n| tree | num_proc | fastest build | refs/s | peak RSS | floor (median) | build / floor: median (range) |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print(f"\n{args.rounds} interleaved rounds; peak RSS large/small = {large['peak_rss_mb'] / small_rss:.2f}x "
          f"for {large['refs'] / small_refs:.1f}x the refs; {report.cpu_name()}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()}")


if __name__ == "__main__":
    main()
