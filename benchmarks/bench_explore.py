"""How responsive ``nemo-hf explore`` stays as the pool grows: one slider move against opening the split.

A synthetic RefCOCO (unc) train split of ``--images`` scenes (several sizes: one row each) is opened by the
explorer's logic (``nemo_hf.explore.session``, what the page calls) with the shipped CLIP: once with an empty
mining cache (every pool image and expression embedded), once more from the cache. Then
``--moves`` slider moves, each a new (K, τ_image) on a new expression: the ranking, the
thumbnails of the candidates listed, and four mosaics, as the page draws them. It prints,
and writes to the "Explorer" section of BENCHMARKS.md, the median wall time of a move, the
pictures it decoded (against the pool's size) and the two opening times, for each pool size.

    python -m benchmarks.bench_explore                 # two pools, a few minutes on two cores
    python -m benchmarks.bench_explore --images 300 --no-write
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import PIL
import PIL.Image

from benchmarks import report
from nemo_hf.data.load import load_refcoco
from nemo_hf.explore.session import MiningExplorer
from nemo_hf.nemo.settings import NeMoSettings
from nemo_hf.synthetic import make_refer_dataset

SECTION = "Explorer"
DEFAULT_OUTPUT = Path(__file__).resolve().parent.parent / "BENCHMARKS.md"


def measure(images: int, moves: int) -> dict[str, float]:
    """Open a synthetic split of ``images`` scenes twice, then time ``moves`` slider moves (module docstring)."""
    work = Path(tempfile.mkdtemp(prefix="bench_explore-"))
    tree = make_refer_dataset(work / "tree", num_images=images, seed=0, datasets=("refcoco",))
    train = load_refcoco("refcoco_unc", tree.root, tree.image_dir, split="train", cache_dir=work / "build")
    start = time.perf_counter()
    MiningExplorer(train, cache_dir=str(work / "mining"))
    first_open = time.perf_counter() - start
    start = time.perf_counter()
    explorer = MiningExplorer(train, cache_dir=str(work / "mining"))
    cached_open = time.perf_counter() - start

    opened: list[int] = []
    real_open = PIL.Image.open

    def counting_open(*a, **k):
        opened.append(1)
        return real_open(*a, **k)

    PIL.Image.open = counting_open
    times, decodes = [], []
    try:
        for move in range(moves):
            settings = NeMoSettings(top_k=3 + move % 20, tau_image=0.8 + 0.01 * (move % 10))
            index = (move * 37) % len(explorer.sentences)
            opened.clear()
            start = time.perf_counter()
            ranking = explorer.ranking(index, settings)
            for candidate in ranking.candidates:
                explorer.thumbnail(candidate.image_id)
            explorer.query_image(index)
            explorer.mosaics(index, settings, count=4)
            times.append(time.perf_counter() - start)
            decodes.append(len(opened))
    finally:
        PIL.Image.open = real_open
    return {"pool_images": len(explorer.embeddings.pool_ids), "sentences": len(explorer.sentences),
            "move_ms": statistics.median(times) * 1e3, "decodes": statistics.median(decodes),
            "first_open_s": first_open, "cached_open_s": cached_open}


def main(argv: Sequence[str] | None = None) -> list[dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, nargs="+", default=[600, 2000],
                        help="synthetic scenes, one measurement each (the train split gets about 70%%)")
    parser.add_argument("--moves", type=int, default=20, help="slider moves timed")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    results = [measure(images, args.moves) for images in args.images]
    rows = [f"| {r['pool_images']:.0f} images, {r['sentences']:.0f} expressions | {r['move_ms']:.0f} ms | "
            f"{r['decodes']:.0f} | {r['first_open_s']:.1f} s | {r['cached_open_s']:.2f} s |" for r in results]
    section = "\n".join([
        f"## {SECTION}",
        "",
        "`python -m benchmarks.bench_explore`: the explorer's logic on synthetic RefCOCO (unc) train splits with the "
        "shipped CLIP. A slider move = the ranking, the thumbnails of the candidates listed, the query picture and "
        "four mosaics (what the page redraws); goal: a move decodes only what it shows, whatever the pool's size. "
        "Opening embeds the pool and every expression once; opening again reads mining's cache (no CLIP loaded).",
        "",
        f"| pool | one slider move (median of {args.moves}) | pictures decoded per move (median) | opening, empty "
        "cache | opening again |",
        "|---|---|---|---|---|",
        *rows,
        "",
        f"Python {platform.python_version()}, Pillow {PIL.__version__}, {report.cpu_name()}; wall time on a machine "
        "shared with other work. Thumbnails already shown are not decoded again.",
    ])
    print(section)
    if not args.no_write:
        report.write_section(args.output, SECTION, section)
    return results


if __name__ == "__main__":
    main()
