"""Mining benchmarks: the CLIP embedding pipeline and the search + τ/top-K selection.

1. Embedding throughput. ``embed_images`` over a saved (memory-mapped) Arrow dataset of
   COCO-sized JPEGs — fetch, decode, CLIP preprocessing, forward, normalisation — against
   the bare forward of a real-size ViT-B/16 CLIP image tower (random weights) on ready
   pixel tensors of the same batch size. Goal: throughput ratio ≥ 0.85.
2. Search + selection at RefCOCO scale: 120,624 sentences × 16,994 pool images, d = 512,
   random unit embeddings, sentences spread over the pool images, against a bare chunked
   matmul + top-k with the same chunk size and k. Goal: time ≤ 1.2× and peak RSS < 3 GB.
   Each run is a fresh process (its peak RSS is its own). With faiss installed, the
   FAISS backend is timed too.

Each figure is the best of interleaved rounds (the machine is shared: other jobs only
add time); CPU-time ratios are shown beside the wall-time ones. Ratios are measured in
one run and written to the "Mining" section of BENCHMARKS.md.

    python -m benchmarks.bench_mining            # several minutes on 2 CPU cores
    python -m benchmarks.bench_mining --quick    # smoke run, prints only
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import resource
import subprocess
import sys
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import datasets
import numpy as np
import torch
from PIL import Image
from transformers import CLIPConfig, CLIPModel, CLIPProcessor
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

from benchmarks import report
from nemo_hf.mining.embed import decode_image, embed_images
from nemo_hf.mining.search import auto_chunk_size, faiss_available
from nemo_hf.mining.selection import select_negatives
from nemo_hf.synthetic import word_tokenizer

SECTION = "Mining"
DEFAULT_OUTPUT = Path(__file__).resolve().parent.parent / "BENCHMARKS.md"
REFCOCO_SENTENCES, REFCOCO_IMAGES, DIM = 120_624, 16_994, 512


# ----------------------------------------------------------------------------- embedding


def photo_jpeg(rng: np.random.Generator, width: int = 640, height: int = 480) -> bytes:
    """A 640×480 JPEG with smooth structure and fine texture, about a COCO file's size."""
    coarse = rng.normal(size=(height // 32 + 1, width // 32 + 1, 3))
    smooth = np.asarray(
        Image.fromarray(((coarse - coarse.min()) / np.ptp(coarse) * 255).astype(np.uint8)).resize(
            (width, height), Image.Resampling.BICUBIC
        ),
        dtype=np.float32,
    )
    pixels = np.clip(smooth + rng.normal(0, 18, size=smooth.shape), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def vit_b16_clip() -> tuple[CLIPModel, CLIPProcessor]:
    """Real-size CLIP ViT-B/16 (random weights) with the standard 224-pixel preprocessing."""
    config = CLIPConfig(
        vision_config={"patch_size": 16, "image_size": 224, "hidden_size": 768, "num_hidden_layers": 12,
                       "num_attention_heads": 12, "intermediate_size": 3072},
        text_config={"num_hidden_layers": 1},  # unused here; kept small to build quickly
        projection_dim=512,
    )  # fmt: skip
    torch.manual_seed(0)
    model = CLIPModel(config).eval()
    # the tokenizer only completes the processor (images are all this embeds): bytes, no words, no download
    return model, CLIPProcessor(image_processor=CLIPImageProcessorPil(), tokenizer=word_tokenizer([]))


def _timed(work: Any) -> tuple[float, float]:
    """(wall, CPU) seconds of ``work()`` in this process."""
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    return time.perf_counter() - wall, time.process_time() - cpu


def bench_embedding(batch_size: int, batches: int, repeats: int) -> dict[str, Any]:
    model, processor = vit_b16_clip()
    rng = np.random.default_rng(0)
    n = batch_size * batches
    rows = {"image": [{"bytes": photo_jpeg(rng), "path": None} for _ in range(n)], "image_id": list(range(n))}
    features = datasets.Features({"image": datasets.Image(), "image_id": datasets.Value("int64")})
    with TemporaryDirectory() as folder:
        datasets.Dataset.from_dict(rows, features=features).save_to_disk(folder)
        ds = datasets.load_from_disk(folder)
        images = [decode_image(value, i) for i, value in enumerate(rows["image"])]
        ready = [
            processor.image_processor(images=images[i : i + batch_size], return_tensors="pt")["pixel_values"]
            for i in range(0, n, batch_size)
        ]

        def bare() -> None:
            with torch.inference_mode():
                for pixels in ready:
                    model.get_image_features(pixel_values=pixels)

        def pipeline() -> None:
            embed_images(model, processor, ds, batch_size=batch_size, device="cpu")

        with torch.inference_mode():
            model.get_image_features(pixel_values=ready[0])  # warm-up
        # Interleaved, best of each: transient load from other jobs only ever adds time.
        bare_runs, pipeline_runs = [], []
        for _ in range(repeats):
            bare_runs.append(_timed(bare))
            pipeline_runs.append(_timed(pipeline))
    bare_wall, bare_cpu = (min(t[i] for t in bare_runs) for i in (0, 1))
    pipe_wall, pipe_cpu = (min(t[i] for t in pipeline_runs) for i in (0, 1))
    return {
        "images": n,
        "batch_size": batch_size,
        "repeats": repeats,
        "jpeg_kb": round(float(np.mean([len(r["bytes"]) for r in rows["image"]])) / 1024, 1),
        "bare_images_per_s": n / bare_wall,
        "pipeline_images_per_s": n / pipe_wall,
        "ratio": bare_wall / pipe_wall,
        "cpu_ratio": bare_cpu / pipe_cpu,
    }


# ------------------------------------------------------------------------------ selection


def _problem(n: int, n_pool: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    text = torch.nn.functional.normalize(torch.randn(n, DIM, generator=generator), dim=1)
    pool = torch.nn.functional.normalize(torch.randn(n_pool, DIM, generator=generator), dim=1)
    # Every pool image is some sentences' own image, sentences of an image adjacent.
    image_of_sentence = torch.sort(torch.randint(0, n_pool, (n,), generator=generator)).values
    return text, pool, image_of_sentence


def _peak_rss_bytes() -> int:
    """This process's peak RSS. VmHWM restarts at exec (ru_maxrss would include the parent's)."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _run_case(case: str, n: int, n_pool: int, top_k: int, settings: dict[str, Any]) -> tuple[float, float, int]:
    """``(wall seconds, CPU seconds, peak RSS bytes)`` of one case, in this process."""
    text, pool, image = _problem(n, n_pool)

    def bare() -> None:
        chunk = auto_chunk_size(n_pool)
        block = torch.empty(chunk, n_pool)
        for first in range(0, n, chunk):
            queries = text[first : first + chunk]
            scores = torch.matmul(queries, pool.T, out=block[: len(queries)])
            torch.topk(scores, top_k, dim=1)

    def selection() -> None:
        select_negatives(text, pool, image, pool, image, top_k=top_k, needed=3, device="cpu", **settings)

    wall, cpu = _timed(bare if case == "bare" else selection)
    return wall, cpu, _peak_rss_bytes()


def _in_fresh_process(case: str, n: int, n_pool: int, top_k: int, settings: dict[str, Any]) -> tuple[float, float, int]:
    """:func:`_run_case` in a new interpreter running this file (``--child``), so the peak RSS is the case's own."""
    child = json.dumps({"case": case, "n": n, "n_pool": n_pool, "top_k": top_k, "settings": settings})
    out = subprocess.run([sys.executable, "-m", "benchmarks.bench_mining", "--child", child], check=True, stdout=subprocess.PIPE, text=True,
                         cwd=Path(__file__).resolve().parents[1])
    wall, cpu, rss = json.loads(out.stdout.strip().splitlines()[-1])
    return wall, cpu, rss


def bench_selection(n: int, n_pool: int, top_k: int, repeats: int) -> dict[str, Any]:
    cases: dict[str, dict[str, Any]] = {
        "defaults (tau_image=0.9)": {"tau_image": 0.9, "backend": "exact"},
        "filters biting (tau_text=0.16, tau_image=0.15)": {"tau_text": 0.16, "tau_image": 0.15, "backend": "exact"},
    }
    runs: dict[str, list[tuple[float, float, int]]] = {"bare": [], **{name: [] for name in cases}}
    for _ in range(repeats):  # interleaved rounds; each case keeps its best round
        runs["bare"].append(_in_fresh_process("bare", n, n_pool, top_k, {}))
        for name, settings in cases.items():
            runs[name].append(_in_fresh_process("select", n, n_pool, top_k, settings))
    if faiss_available():  # informative only (why "auto" means "exact"): one round
        name = "defaults, FAISS flat index"
        runs[name] = [_in_fresh_process("select", n, n_pool, top_k, {"tau_image": 0.9, "backend": "faiss"})]
    best = {
        name: {
            "seconds": min(r[0] for r in rs),
            "cpu_seconds": min(r[1] for r in rs),
            "rss_gb": max(r[2] for r in rs) / 1e9,
        }
        for name, rs in runs.items()
    }
    bare = best.pop("bare")
    for case in best.values():
        case["ratio"] = case["seconds"] / bare["seconds"]
        case["cpu_ratio"] = case["cpu_seconds"] / bare["cpu_seconds"]
    return {
        "sentences": n,
        "pool": n_pool,
        "top_k": top_k,
        "repeats": repeats,
        "chunk": auto_chunk_size(n_pool),
        "bare": bare,
        "cases": best,
    }


# -------------------------------------------------------------------------------- report


def _paragraph(text: str) -> str:
    return textwrap.fill(" ".join(text.split()), width=92)


def render(embedding: dict[str, Any], selection: dict[str, Any]) -> str:
    bare = selection["bare"]
    pipeline = (
        f"| pipeline from the Arrow dataset | {embedding['pipeline_images_per_s']:.2f} img/s | "
        f"{embedding['ratio']:.2f} | {embedding['cpu_ratio']:.2f} |"
    )
    rows = "\n".join(
        f"| search + selection, {name} | {c['ratio']:.2f}× | {c['seconds']:.1f} s | {c['cpu_ratio']:.2f}× | "
        f"{c['rss_gb']:.2f} GB |"
        for name, c in selection["cases"].items()
    )
    machine = _paragraph(
        f"""Machine: 2-core CPU ({report.cpu_name()}, {os.cpu_count()} logical cores), torch {torch.__version__}
        with {torch.get_num_threads()} threads, Python {platform.python_version()}. The machine is shared
        with other jobs, so each figure is the best of interleaved rounds (load from others only adds
        time) and ratios still move by several percent between runs. `python -m benchmarks.bench_mining`;
        all ratios measured in one run."""
    )
    embedding_text = _paragraph(
        f"""**1. Embedding pipeline** (goal ≥ 0.85): `embed_images` over a memory-mapped Arrow dataset of
        {embedding["images"]} JPEGs (640×480, {embedding["jpeg_kb"]} KB mean) — fetch, decode, CLIP
        preprocessing (PIL backend), forward, normalisation, all in this process — against the bare
        forward of the same real-size ViT-B/16 image tower (random weights) on ready tensors, batch
        {embedding["batch_size"]}, best of {embedding["repeats"]} interleaved rounds."""
    )
    selection_text = _paragraph(
        f"""**2. Search + selection** (goal ≤ 1.2× wall time, peak RSS < 3 GB): {selection["sentences"]:,}
        sentences × {selection["pool"]:,} pool images, d = {DIM}, random unit embeddings, top_k =
        {selection["top_k"]}, chunks of {selection["chunk"]:,} sentences. Every run is a fresh process
        whose peak RSS counts everything (interpreter, torch, the
        {selection["sentences"] * DIM * 4 / 1e6:.0f} MB of sentence embeddings); best of
        {selection["repeats"]} interleaved rounds (FAISS: one)."""
    )
    closing = _paragraph(
        """The selection's extra work per chunk: a top-(k + margin) instead of a top-k, the
        image→image check of the kept pairs only (a sampled sparse product), the full-row redo of
        the few rows the short list cannot settle, and the report's histograms on 1,024 sampled
        sentences. The FAISS row is why `search_backend="auto"` means "exact"."""
    )
    return f"""## {SECTION}

{machine}

{embedding_text}

| path | throughput | ratio (wall) | ratio (CPU time) |
|---|---|---|---|
| bare forward on ready tensors | {embedding["bare_images_per_s"]:.2f} img/s | 1.00 | 1.00 |
{pipeline}

{selection_text}

| case | × bare (wall) | wall time | × bare (CPU time) | peak RSS |
|---|---|---|---|---|
| bare chunked matmul + top-{selection["top_k"]} | 1.00× | {bare["seconds"]:.1f} s | 1.00× | {bare["rss_gb"]:.2f} GB |
{rows}

{closing}
"""


def write_section(path: Path, section: str) -> None:
    """Replace (or append) this benchmark's section of BENCHMARKS.md."""
    report.write_section(path, SECTION, section)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, print only")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sentences", type=int, default=REFCOCO_SENTENCES)
    parser.add_argument("--pool", type=int, default=REFCOCO_IMAGES)
    parser.add_argument("--top-k", type=int, default=20)
    parser.add_argument("--skip-embedding", action="store_true")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--child", help=argparse.SUPPRESS)  # one selection case, as JSON (_in_fresh_process)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_run_case(**json.loads(args.child))))
        return {}
    if args.quick:
        args.batch_size, args.batches, args.repeats = 2, 1, 1
        args.sentences, args.pool, args.no_write = 3_000, 2_000, True

    embedding = None
    if not args.skip_embedding:
        embedding = bench_embedding(args.batch_size, args.batches, args.repeats)
        print(
            f"embedding: pipeline {embedding['pipeline_images_per_s']:.2f} img/s, bare forward "
            f"{embedding['bare_images_per_s']:.2f} img/s: ratio {embedding['ratio']:.2f} (goal >= 0.85; "
            f"CPU-time ratio {embedding['cpu_ratio']:.2f})"
        )
    selection = bench_selection(args.sentences, args.pool, args.top_k, args.repeats)
    bare = selection["bare"]
    print(f"bare chunked matmul + top-k: {bare['seconds']:.1f} s, peak RSS {bare['rss_gb']:.2f} GB")
    for name, case in selection["cases"].items():
        print(
            f"selection, {name}: {case['seconds']:.1f} s = {case['ratio']:.2f}x bare (goal <= 1.2; CPU-time "
            f"{case['cpu_ratio']:.2f}x), peak RSS {case['rss_gb']:.2f} GB (goal < 3)"
        )
    if not args.no_write and embedding is not None:
        write_section(args.output, render(embedding, selection))
        print(f"wrote the {SECTION} section of {args.output}")
    return {"embedding": embedding, "selection": selection}


if __name__ == "__main__":
    main()
