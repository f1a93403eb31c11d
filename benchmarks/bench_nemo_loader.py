"""DataLoader throughput of the NeMo transform with 0 and 2 workers, against plain loading.

Rows come from a RefCOCO-built synthetic tree of 640×480 JPEGs (``bench_build``'s cache).
"plain" decodes image + mask and resizes both to the output side (what a training loop
does without augmentation); "nemo" draws a 2×2 mosaic (random negatives, so no CLIP is
needed; mined negatives cost the same to draw) for every sample via ``nemo.attach``.

    python -m benchmarks.bench_nemo_loader --num-images 2500 --samples 400
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from benchmarks.bench_build import tree_for

SIZE = 480


def _plain(batch):
    images = [image.convert("RGB").resize((SIZE, SIZE)) for image in batch["image"]]
    masks = [mask.resize((SIZE, SIZE), 0) for mask in batch["mask"]]
    return {"image": images, "mask": masks, "sentence": [s[0] for s in batch["sentences"]]}


def _collate(rows):
    return len(rows)


def throughput(ds, workers: int, samples: int) -> float:
    loader = DataLoader(ds.select(range(samples)), batch_size=8, num_workers=workers, collate_fn=_collate,
                        shuffle=False)
    start = time.perf_counter()
    seen = sum(loader)
    return seen / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-images", type=int, default=2500)
    parser.add_argument("--samples", type=int, default=400)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    import datasets

    from nemo_hf.data.load import load_refcoco
    from nemo_hf.nemo.transform import NeMo

    datasets.disable_progress_bars()
    root = tree_for(args.num_images)
    train = load_refcoco("refcoco_unc", root, root / "images" / "train2014", split="train",
                         cache_dir=Path(__file__).parent / ".cache" / "hf")
    nemo = NeMo(train, size=SIZE, mosaic_prob=1.0, random_share=1.0)
    paths = {"plain": train.with_transform(_plain), "nemo": nemo.attach(train)}
    results = {(name, w): throughput(ds, w, args.samples) for name, ds in paths.items() for w in (0, 2)}
    for (name, workers), rate in results.items():
        print(f"{name:>5}, num_workers={workers}: {rate:6.1f} samples/s")
    for name in paths:
        print(f"{name}: 2 workers / 0 workers = {results[name, 2] / results[name, 0]:.2f}x")
    for workers in (0, 2):
        print(f"num_workers={workers}: nemo / plain throughput = {results['nemo', workers] / results['plain', workers]:.2f}x")


if __name__ == "__main__":
    main()
