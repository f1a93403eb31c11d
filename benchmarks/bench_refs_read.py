"""Reading a RefCOCO-sized refs pickle with and without the bounds check, in one run.

``load_refs`` reads a refs pickle through the restricted unpickler after
:func:`nemo_hf.data.pickle_bounds.check_pickle_bounds` has walked its opcodes (memo indices
and lengths that would make the C unpickler reserve memory the file cannot need). This
measures what that walk costs: ``load_refs`` of the same bytes with the check ("after")
and with it replaced by a no-op ("before"), interleaved over rounds, and prints the median
of each round's after/before. The refs are RefCOCO-sized (50,653 refs, ~142k sentences,
one string object per token as a Python-2 ``refer`` export has them) and pickled by the
standard pickler, with its memo, at protocol 0 (Python 2's default) and 2.

With ``--build-images N`` it also builds ``refcoco_unc`` from the synthetic tree of N images
(``benchmarks/bench_build.py``'s, generated once into ``benchmarks/.cache``) in child
processes, with and without the check, interleaved, and prints the build's ratio.

    python -m benchmarks.bench_refs_read                      # ~1 minute
    python -m benchmarks.bench_refs_read --build-images 2500  # and the build, ~5 minutes the first time
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import pickle
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import report

CACHE = Path(__file__).parent / ".cache"
_WORDS = ("left", "right", "man", "woman", "red", "blue", "shirt", "the", "on", "guy", "in", "with", "table", "dog",
          "cat", "car", "white", "black", "front", "back", "middle", "person", "small", "big", "far", "near")


def refcoco_sized_refs(num_refs: int = 50653, seed: int = 0) -> list[dict]:
    """Refs shaped like RefCOCO's (unc): fields, sentence counts and lengths of the release."""
    rng = random.Random(seed)
    refs, sent_id = [], 0
    for ref_id in range(num_refs):
        sentences = []
        for _ in range(rng.choice((2, 3, 3, 3, 4))):
            # "".join: a distinct string per token, as the release's (the pickler memoizes by identity)
            tokens = ["".join(rng.choice(_WORDS)) for _ in range(rng.randint(1, 7))]
            sentences.append({"tokens": tokens, "raw": " ".join(tokens).capitalize(), "sent_id": sent_id,
                              "sent": " ".join(tokens)})
            sent_id += 1
        image_id = 100000 + ref_id // 3
        refs.append({"sent_ids": [s["sent_id"] for s in sentences],
                     "file_name": f"COCO_train2014_{image_id:012d}_{ref_id}.jpg", "ann_id": 1_000_000 + ref_id,
                     "ref_id": ref_id, "image_id": image_id, "split": rng.choice(("train",) * 8 + ("val", "testA")),
                     "sentences": sentences, "category_id": rng.randint(1, 90)})
    return refs


def refs_file(protocol: int, num_refs: int) -> Path:
    path = CACHE / f"refs_{num_refs}_p{protocol}.p"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        path.write_bytes(pickle.dumps(refcoco_sized_refs(num_refs), protocol=protocol))
    return path


def time_load_refs(path: Path, checked: bool) -> float:
    from nemo_hf.data import refer_files, safe_pickle

    real = safe_pickle.check_pickle_bounds
    safe_pickle.check_pickle_bounds = real if checked else (lambda data: None)
    try:
        gc.collect()
        start = time.perf_counter()
        refs = refer_files.load_refs(path)
        seconds = time.perf_counter() - start
    finally:
        safe_pickle.check_pickle_bounds = real
    del refs
    return seconds


def child_build(root: Path, checked: bool) -> dict:
    import datasets

    from nemo_hf import load_refcoco
    from nemo_hf.data import safe_pickle

    if not checked:
        safe_pickle.check_pickle_bounds = lambda data: None
    datasets.disable_progress_bars()
    with tempfile.TemporaryDirectory() as cache:
        start = time.perf_counter()
        load_refcoco("refcoco_unc", root, root / "images" / "train2014", cache_dir=cache)
        return {"seconds": time.perf_counter() - start}


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Print the table (and the build's line); return each measured after/before (median of rounds)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--num-refs", type=int, default=50653, help="refs in the pickles (RefCOCO unc: 50,653)")
    parser.add_argument("--build-images", type=int, default=0, help="also time builds of this synthetic tree")
    parser.add_argument("--child-build", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--unchecked", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_build:
        print(json.dumps(child_build(args.child_build, checked=not args.unchecked)))
        return {}

    from nemo_hf.data.pickle_bounds import check_pickle_bounds

    ratios_by_case: dict[str, float] = {}
    print("| refs pickle | size | load_refs before | after | check alone | after / before: median (range) |")
    print("|---|---|---|---|---|---|")
    for protocol in (0, 2):
        path = refs_file(protocol, args.num_refs)
        data = path.read_bytes()
        pairs = []
        for _ in range(args.rounds):  # interleaved: a busy spell slows both alike
            pairs.append((time_load_refs(path, checked=False), time_load_refs(path, checked=True)))
        alone = min(_timed(check_pickle_bounds, data) for _ in range(args.rounds))
        ratios = sorted(after / before for before, after in pairs)
        before = statistics.median(b for b, _ in pairs)
        after = statistics.median(a for _, a in pairs)
        ratios_by_case[f"protocol {protocol}"] = statistics.median(ratios)
        print(f"| protocol {protocol} | {len(data) / 1e6:.1f} MB | {before:.2f} s | {after:.2f} s | {alone:.2f} s | "
              f"**{statistics.median(ratios):.2f}×** ({ratios[0]:.2f}–{ratios[-1]:.2f}) |", flush=True)

    if args.build_images:
        from benchmarks.bench_build import tree_for

        root = tree_for(args.build_images)
        pairs = []
        for _ in range(args.rounds):
            pairs.append(tuple(_child_build(root, checked) for checked in (False, True)))
        ratios = sorted(after / before for before, after in pairs)
        ratios_by_case["build"] = statistics.median(ratios)
        before, after = statistics.median(b for b, _ in pairs), statistics.median(a for _, a in pairs)
        print(f"\nbuild of refcoco_unc ({args.build_images:,} images): before {before:.2f} s, after {after:.2f} s; "
              "after / before: median "
              f"**{statistics.median(ratios):.3f}×** ({ratios[0]:.3f}–{ratios[-1]:.3f})")
    print(f"\n{args.rounds} interleaved rounds; {report.cpu_name()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}")
    return ratios_by_case


def _timed(function, *args) -> float:
    start = time.perf_counter()
    function(*args)
    return time.perf_counter() - start


def _child_build(root: Path, checked: bool) -> float:
    command = [sys.executable, __file__, "--child-build", str(root)] + ([] if checked else ["--unchecked"])
    out = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["seconds"]


if __name__ == "__main__":
    main()
