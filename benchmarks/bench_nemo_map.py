"""What ``train.map(nemo, batched=True)`` spends writing mosaics, against drawing them alone.

Rows come from a RefCOCO-built synthetic tree of 640×480 JPEGs (``bench_build``'s cache);
every sample is a 2×2 mosaic with random negatives (no CLIP needed; mined negatives cost
the same to draw) at output side 480. Three paths over the same rows, interleaved over
rounds (median of each round's ratios):

- "draw": ``nemo(batch)`` on the rows in memory, nothing stored: the floor;
- "map": ``ds.map(nemo, batched=True)`` writing an Arrow file, as shipped (the mosaic's
  PNG written at zlib level 1);
- "map, default PNG level": the same with the mosaic saved at zlib's default level, as
  ``datasets`` encodes a plain PIL image (what NeMo did before).

    python -m benchmarks.bench_nemo_map --rows 48 --rounds 3
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks import report
from benchmarks.bench_build import tree_for

SIZE = 480


class _DefaultLevel:
    """NeMo with its output images saved as datasets saves a plain PIL image."""

    def __init__(self, nemo):
        self.nemo = nemo

    def __call__(self, batch):
        out = self.nemo(batch)
        for image in out["image"]:
            del image.encoderinfo
        return out


def _timed(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-images", type=int, default=2500)
    parser.add_argument("--rows", type=int, default=48, help="referred objects mapped per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)

    import datasets

    from nemo_hf.data.load import load_refcoco
    from nemo_hf.nemo.transform import NeMo

    datasets.disable_progress_bars()
    root = tree_for(args.num_images)
    train = load_refcoco("refcoco_unc", root, root / "images" / "train2014", split="train",
                         cache_dir=Path(__file__).parent / ".cache" / "hf")
    rows = train.select(range(args.rows))
    nemo = NeMo(train, size=SIZE, mosaic_prob=1.0, random_share=1.0)
    in_memory = rows[:]
    samples = len(nemo(in_memory)["image"])  # also makes the pool's shrunk copies, outside the timing

    def mapped(function) -> float:
        with tempfile.TemporaryDirectory() as folder:
            return _timed(lambda: rows.map(function, batched=True, batch_size=16, remove_columns=rows.column_names,
                                           cache_file_name=str(Path(folder) / "out.arrow")))

    times: dict[str, list[float]] = {"draw": [], "map": [], "map, default PNG level": []}
    for r in range(args.rounds):
        times["draw"].append(_timed(lambda: nemo(rows[:])))
        times["map"].append(mapped(nemo))
        times["map, default PNG level"].append(mapped(_DefaultLevel(nemo)))
        print(f"round {r + 1}: " + ", ".join(f"{k} {1e3 * v[-1] / samples:.1f} ms/sample" for k, v in times.items()),
              flush=True)

    print("\n| path | ms / sample (median) | × draw: median of rounds |\n|---|---|---|")
    for name, values in times.items():
        ratio = statistics.median(v / d for v, d in zip(values, times["draw"]))
        print(f"| {name} | {1e3 * statistics.median(values) / samples:.1f} | {ratio:.2f}× |")
    speedup = statistics.median(old / new for old, new in zip(times["map, default PNG level"], times["map"]))
    print(f"\n{samples} samples from {args.rows} refs, {args.rounds} interleaved rounds, output {SIZE}²; "
          f"{report.cpu_name()}. map at the default PNG level / as shipped = {speedup:.2f}×")


if __name__ == "__main__":
    main()
