"""CRIS-ViT-B/16 against CLIPSeg rd64-refined: parameters, and the time of a training step on one machine.

Both models are built from their configurations with random weights — nothing is
downloaded: CRIS (``nemo_hf.modeling.CRISForReferringSegmentation``) on the towers of
``openai/clip-vit-base-patch16`` (its ``CLIPConfig`` values written out below) at CRIS's
input, 416², with 17-token expressions (CRIS's RefCOCO word length); CLIPSeg
(``CLIPSegForImageSegmentation`` with ``CIDAS/clipseg-rd64-refined``'s configuration) at
its 352², with the same expressions. CLIPSeg is timed as this project trains it by default
(decoder only: ``transformers`` runs its CLIP without gradients) and whole
(``trainable="all"``); CRIS whole, as CRIS trains.

A training step is what ``training/train.py`` does per batch: forward, per-pixel BCE,
backward, AdamW step, on random images, tokens and masks. After warm-up steps, rounds
take one step of each model in turn, so a busy machine slows all alike; the table gives
the median step time, the samples per second it means, and the median of the per-round
ratios to CLIPSeg's default. Writes the "CRIS vs CLIPSeg" section of BENCHMARKS.md.

    OMP_NUM_THREADS=1 python -m benchmarks.bench_cris               # CPU: minutes
    python -m benchmarks.bench_cris --device cuda --batch-size 32 --bf16 --no-write
    python -m benchmarks.bench_cris --quick --no-write               # tiny towers: a smoke run
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import CLIPConfig, CLIPSegConfig, CLIPSegForImageSegmentation

from benchmarks import report
from nemo_hf.modeling.clipseg import CLIPSegReferringSegmenter
from nemo_hf.modeling.cris.configuration import CRISConfig
from nemo_hf.modeling.cris.model import CRISForReferringSegmentation
from nemo_hf.modeling.cris.segmenter import CRISReferringSegmenter
from nemo_hf.modeling.parts import PartwiseSegmenter

SECTION = "CRIS vs CLIPSeg"
DEFAULT_OUTPUT = Path(__file__).resolve().parent.parent / "BENCHMARKS.md"
TEXT_LENGTH = 17  # CRIS's word_len on RefCOCO

# openai/clip-vit-base-patch16's config.json, the values that set the towers' shapes
VIT_B16_TEXT = {"hidden_size": 512, "intermediate_size": 2048, "num_attention_heads": 8, "num_hidden_layers": 12,
                "max_position_embeddings": 77, "vocab_size": 49408, "hidden_act": "quick_gelu"}
VIT_B16_VISION = {"hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12, "num_hidden_layers": 12,
                  "patch_size": 16, "image_size": 224, "hidden_act": "quick_gelu"}
VIT_B16_PROJECTION = 512
# --quick: towers a thousand times smaller, the same code paths
TINY_TOWER = {"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 2, "num_hidden_layers": 4}


@dataclass
class Candidate:
    """A model to time: its segmenter, input side and the parameter counts of its parts."""

    name: str
    segmenter: PartwiseSegmenter
    side: int
    backbone: int
    new: int

    @property
    def total(self) -> int:
        return sum(p.numel() for p in self.segmenter.parameters())

    @property
    def trained(self) -> int:
        return sum(p.numel() for p in self.segmenter.parameters() if p.requires_grad)


def _count(modules: Sequence[torch.nn.Module]) -> int:
    return sum(p.numel() for module in modules for p in module.parameters())


def candidates(quick: bool) -> list[Candidate]:
    """CLIPSeg (decoder trained, all trained) and CRIS (all trained), random weights from fixed seeds."""
    text = {**TINY_TOWER, "vocab_size": 100} if quick else VIT_B16_TEXT
    vision = {**TINY_TOWER, "patch_size": 16, "image_size": 32} if quick else VIT_B16_VISION
    projection = 16 if quick else VIT_B16_PROJECTION
    clipseg_side, cris_side = (64, 64) if quick else (352, 416)
    torch.manual_seed(0)
    clipseg = CLIPSegForImageSegmentation(CLIPSegConfig(
        text_config=text, vision_config=vision, projection_dim=projection, extract_layers=(1, 2, 3) if quick else (3, 6, 9),
        reduce_dim=16 if quick else 64, use_complex_transposed_convolution=True))  # "rd64-refined"
    cris = CRISForReferringSegmentation(CRISConfig(
        clip_config=CLIPConfig(text_config=text, vision_config=vision, projection_dim=projection).to_dict(),
        **({"decoder_attention_heads": 2} if quick else {})))
    built = []
    for trainable, model in (("decoder", clipseg), ("all", copy.deepcopy(clipseg))):  # one model each: own grads
        built.append(Candidate(f"CLIPSeg rd64-refined, {trainable} trained", CLIPSegReferringSegmenter(model, trainable),
                               clipseg_side, _count([model.clip]), _count([model.decoder])))
    new = _count(cris.new_modules())
    built.append(Candidate("CRIS-ViT-B/16, all trained", CRISReferringSegmenter(cris, "all"), cris_side,
                           _count([cris]) - new, new))
    return built


def make_batch(batch_size: int, side: int, device: torch.device, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Random pixels, 17-token expressions (start, words, end) and masks at the input side."""
    ids = torch.randint(1, 90 if side == 64 else 49_000, (batch_size, TEXT_LENGTH), generator=generator)
    ids[:, 0], ids[:, -1] = 0 if side == 64 else 49_406, 2 if side == 64 else 49_407
    return {
        "pixel_values": torch.randn(batch_size, 3, side, side, generator=generator).to(device),
        "input_ids": ids.to(device),
        "attention_mask": torch.ones_like(ids).to(device),
        "labels": (torch.rand(batch_size, side, side, generator=generator) > 0.8).float().to(device),
    }


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_step(segmenter: PartwiseSegmenter, optimizer: torch.optim.Optimizer, batch: dict[str, torch.Tensor],
               bf16: bool) -> float:
    """Seconds of one training step (forward with the model's own loss, backward, AdamW), the device drained."""
    device = batch["pixel_values"].device
    _sync(device)
    start = time.perf_counter()
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        loss = segmenter(batch["pixel_values"], batch["input_ids"], batch["attention_mask"], labels=batch["labels"]).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    _sync(device)
    return time.perf_counter() - start


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1, …")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per model first")
    parser.add_argument("--rounds", type=int, default=3, help="timed steps per model, interleaved")
    parser.add_argument("--bf16", action="store_true", help="autocast the forward pass to bfloat16")
    parser.add_argument("--quick", action="store_true", help="tiny towers at 64 px: checks the script, not the models")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    if args.batch_size < 2:
        raise SystemExit("--batch-size must be at least 2: CRIS's batch norm needs two samples to train")
    device = torch.device(args.device)
    generator = torch.Generator().manual_seed(0)
    models = candidates(args.quick)
    runs = []
    for candidate in models:
        candidate.segmenter.to(device).train()
        params = [p for p in candidate.segmenter.parameters() if p.requires_grad]
        batch = make_batch(args.batch_size, candidate.side, device, generator)
        runs.append((candidate, torch.optim.AdamW(params, lr=1e-5), batch))
        for _ in range(args.warmup):
            timed_step(candidate.segmenter, runs[-1][1], batch, args.bf16)
    seconds: dict[str, list[float]] = {c.name: [] for c in models}
    for round_ in range(args.rounds):
        for candidate, optimizer, batch in runs:
            seconds[candidate.name].append(timed_step(candidate.segmenter, optimizer, batch, args.bf16))
            print(f"round {round_ + 1} {candidate.name}: {seconds[candidate.name][-1]:.3f} s")
    baseline = models[0].name
    results = {
        c.name: {
            "side": c.side, "total": c.total, "backbone": c.backbone, "new": c.new, "trained": c.trained,
            "step_s": statistics.median(seconds[c.name]),
            "samples_per_s": args.batch_size / statistics.median(seconds[c.name]),
            "ratio": statistics.median(t / b for t, b in zip(seconds[c.name], seconds[baseline])),
        }
        for c in models
    }
    section = render(args, results, device)
    print(section)
    if not args.no_write:
        write_section(args.output, section)
        print(f"wrote the {SECTION} section of {args.output}")
    return results


def render(args: argparse.Namespace, results: dict[str, dict[str, Any]], device: torch.device) -> str:
    """The Markdown section: parameter counts, then step time, samples/s and the ratio to CLIPSeg's default."""
    if device.type == "cuda":
        where = f"{torch.cuda.get_device_name(device)}{', bf16 autocast' if args.bf16 else ', float32'}"
    else:
        threads = os.environ.get("OMP_NUM_THREADS", "unset")
        where = f"{report.machine()}; {torch.get_num_threads()} torch thread(s) (OMP_NUM_THREADS={threads})"
    lines = [
        f"## {SECTION}",
        "",
        ("`python -m benchmarks.bench_cris`: CRIS on CLIP ViT-B/16 (`openai/clip-vit-base-patch16`'s shapes) at "
         "CRIS's 416² input against CLIPSeg with `CIDAS/clipseg-rd64-refined`'s configuration at its 352², random "
         f"weights, {TEXT_LENGTH}-token expressions. Backbone = the CLIP towers and their projections; new = the "
         "layers each adds (CLIPSeg's decoder; CRIS's feature pyramid, neck, decoder and projector). A step = "
         f"forward, BCE, backward, AdamW on a batch of {args.batch_size}, median of {args.rounds} interleaved "
         f"rounds after {args.warmup} warm-up step(s) per model; the ratio is the median of the per-round ratios "
         "to CLIPSeg as this project trains it by default (decoder only)."
         + (" **Tiny towers (`--quick`): a smoke run, not these models' figures.**" if args.quick else "")),
        "",
        "| model | input | parameters | backbone | new | trained | s / step | samples / s | step time vs CLIPSeg (decoder) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['side']}² | {r['total'] / 1e6:.2f} M | {r['backbone'] / 1e6:.2f} M | {r['new'] / 1e6:.2f} M "
            f"| {r['trained'] / 1e6:.2f} M | {r['step_s']:.2f} | {r['samples_per_s']:.2f} | {r['ratio']:.2f}× |"
        )
    lines += [
        "",
        f"Device: {device.type} ({where}); torch {torch.__version__}, Python {platform.python_version()}, "
        f"load average {os.getloadavg()[0]:.1f} at the end."
        + ("" if device.type == "cuda" else " On a GPU, `--device cuda --batch-size 32 --bf16` gives its samples/s."),
    ]
    return "\n".join(lines) + "\n"


def write_section(path: Path, section: str) -> None:
    """Replace (or append) this benchmark's section of BENCHMARKS.md."""
    report.write_section(path, SECTION, section)


if __name__ == "__main__":
    main()
