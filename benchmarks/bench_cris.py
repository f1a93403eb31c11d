"""CRIS-R50 against CRIS's own training loop, CRIS-ViT-B/16 and CLIPSeg: parameters, and the time of a training step.

Every model is built from its configuration with random weights — nothing is downloaded —
and sees random images, tokens and masks, 17-token expressions (CRIS's RefCOCO word length):

- **CRIS-R50** (``nemo_hf.modeling.CRISForReferringSegmentation`` on OpenAI's RN50 CLIP's
  architecture, ``CRISConfig(backbone="clip_resnet")``) at CRIS's 416², twice: stepped as
  ``training/train.py`` steps it (the segmenter's own loss on block-averaged labels, AdamW over
  ``parameter_groups``), and the same model stepped as CRIS.pytorch's ``engine/engine.py``
  composes a step (forward to logits, masks resized by nearest neighbour, per-pixel BCE,
  ``zero_grad``, backward, Adam with the backbone at 0.1× and the position embeddings at 1×).
  With ``--original PATH`` (a checkout of github.com/DerrickWang005/CRIS.pytorch, MIT, which
  this project does not ship) a third: CRIS.pytorch's own modules at the same sizes, stepped by
  its own ``CRIS.forward`` (which computes the BCE) as its loop does. The goal: CRIS-R50 here
  at most 1.0× that.
- **CRIS-ViT-B/16** on ``openai/clip-vit-base-patch16``'s shapes (values written out below) at
  416², trained whole;
- **CLIPSeg** (``CIDAS/clipseg-rd64-refined``'s configuration) at its 352², decoder only (as
  this project trains it by default) and whole.

A step: forward, per-pixel BCE, backward, optimizer step. After warm-up steps, rounds take one
step of each model in turn, so a busy machine slows all alike; the tables give the median step
time, the samples per second it means, the median of the per-round ratios to the first model
timed and, for the CRIS-R50 rows, to the reference loop (CRIS.pytorch's with ``--original``,
else this model in CRIS's loop), and CRIS-R50's parameters part by part. Writes the "CRIS vs
CLIPSeg" section of BENCHMARKS.md.

    OMP_NUM_THREADS=1 python -m benchmarks.bench_cris                       # CPU: tens of minutes
    python -m benchmarks.bench_cris --models cris-r50 cris-r50-loop --original ../CRIS.pytorch
    python -m benchmarks.bench_cris --device cuda --batch-size 32 --bf16 --no-write
    python -m benchmarks.bench_cris --quick --no-write                       # tiny towers: a smoke run
"""

from __future__ import annotations

import argparse
import copy
import importlib
import logging
import os
import platform
import statistics
import sys
import time
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from transformers import CLIPConfig, CLIPSegConfig, CLIPSegForImageSegmentation

from benchmarks import report
from nemo_hf.modeling.clipseg import CLIPSegReferringSegmenter
from nemo_hf.modeling.cris.clip_resnet import CLIPResNetConfig
from nemo_hf.modeling.cris.configuration import CRISConfig
from nemo_hf.modeling.cris.model import CRISForReferringSegmentation
from nemo_hf.modeling.cris.segmenter import CRISReferringSegmenter
from nemo_hf.trainer.args import TrainArguments
from nemo_hf.trainer.segmenter_training import parameter_groups

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
TINY_RESNET = {"vision_layers": [1, 1, 1, 1], "vision_width": 8, "image_size": 64, "projection_dim": 16}
# CRIS's recipe: base_lr 1e-4, backbone lr_multi 0.1 (config/refcoco/cris_r50.yaml)
HEAD_RATE, BACKBONE_RATE = 1e-4, 1e-5
MODELS = ("clipseg", "clipseg-all", "cris-vit", "cris-r50", "cris-r50-loop", "cris-r50-original")
REFERENCE = "cris-r50-original"  # with --original; else the CRIS-R50 in CRIS's loop


@dataclass
class Candidate:
    """A model to time: its module, input side, how one step runs, and the parameter counts of its parts."""

    key: str
    name: str
    module: torch.nn.Module
    side: int
    backbone: int
    new: int
    step: Callable[[dict[str, torch.Tensor], bool], torch.Tensor]
    optimizer: Callable[[], torch.optim.Optimizer]
    parts: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(p.numel() for p in self.module.parameters())

    @property
    def trained(self) -> int:
        return sum(p.numel() for p in self.module.parameters() if p.requires_grad)


def _count(modules: Sequence[torch.nn.Module]) -> int:
    return sum(p.numel() for module in modules for p in module.parameters())


def _segmenter_step(segmenter: Any) -> Callable[[dict[str, torch.Tensor], bool], torch.Tensor]:
    """``training/train.py``'s step: the segmenter's own loss (labels at the input's size, block-averaged)."""

    def step(batch: dict[str, torch.Tensor], bf16: bool) -> torch.Tensor:
        with torch.autocast(batch["pixel_values"].device.type, dtype=torch.bfloat16, enabled=bf16):
            return segmenter(batch["pixel_values"], batch["input_ids"], batch["attention_mask"],
                             labels=batch["labels"]).loss
    return step


def _cris_loop_step(model: CRISForReferringSegmentation) -> Callable[[dict[str, torch.Tensor], bool], torch.Tensor]:
    """CRIS.pytorch's step on this model: logits, masks resized by nearest neighbour, per-pixel BCE."""

    def step(batch: dict[str, torch.Tensor], bf16: bool) -> torch.Tensor:
        with torch.autocast(batch["pixel_values"].device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(pixel_values=batch["pixel_values"], input_ids=batch["input_ids"],
                           attention_mask=batch["attention_mask"]).logits[:, None]
            mask = F.interpolate(batch["labels"][:, None], logits.shape[-2:], mode="nearest")
            return F.binary_cross_entropy_with_logits(logits, mask)
    return step


def _cris_groups(named: Sequence[tuple[str, torch.nn.Parameter]], backbone_prefixes: tuple[str, ...]
                 ) -> list[dict[str, Any]]:
    """CRIS's ``build_segmenter`` groups: the backbone at 0.1× the rate but its ``positional_embedding``s."""
    backbone = [p for n, p in named if n.startswith(backbone_prefixes) and "position" not in n]
    head = [p for n, p in named if not (n.startswith(backbone_prefixes) and "position" not in n)]
    return [{"params": backbone, "lr": BACKBONE_RATE}, {"params": head, "lr": HEAD_RATE}]


def cris_r50_config(quick: bool) -> CRISConfig:
    """CRIS-R50 (OpenAI's RN50 CLIP and CRIS's sizes), or its tiny counterpart."""
    if quick:
        text = {**TINY_TOWER, "intermediate_size": 128, "vocab_size": 100,  # CLIP's FFN: 4x the width
                "bos_token_id": 0, "eos_token_id": 99, "pad_token_id": 1}
        return CRISConfig(clip_config=CLIPResNetConfig(text_config=text, **TINY_RESNET), decoder_attention_heads=2)
    return CRISConfig(clip_config=CLIPResNetConfig.openai("RN50"))


def load_original(path: Path) -> types.ModuleType:
    """CRIS.pytorch's ``model`` package from a checkout (its ``model/__init__.py`` logs with loguru: stubbed if absent)."""
    if not (path / "model" / "segmenter.py").is_file():
        raise SystemExit(f"--original {path}: not a CRIS.pytorch checkout (no model/segmenter.py)")
    if importlib.util.find_spec("loguru") is None:
        sys.modules["loguru"] = types.SimpleNamespace(logger=logging.getLogger("loguru"))  # type: ignore[assignment]
    sys.path.insert(0, str(path))
    try:
        return importlib.import_module("model.segmenter")
    finally:
        sys.path.remove(str(path))


def original_cris(path: Path, config: CRISConfig, seed: int) -> torch.nn.Module:
    """CRIS.pytorch's ``CRIS`` at ``config``'s sizes, its modules built directly (its ``__init__`` loads a JIT file)."""
    segmenter = load_original(path)
    clip_module, layers = sys.modules["model.clip"], sys.modules["model.layers"]
    clip, text = config.clip_config, config.clip_config.text_config
    torch.manual_seed(seed)
    model = segmenter.CRIS.__new__(segmenter.CRIS)
    torch.nn.Module.__init__(model)
    model.backbone = clip_module.CLIP(clip.projection_dim, clip.image_size, tuple(clip.vision_layers), clip.vision_width,
                                      None, text.max_position_embeddings, TEXT_LENGTH, text.vocab_size,
                                      text.hidden_size, text.num_attention_heads, text.num_hidden_layers).float()
    _, c3, c4, _ = clip.stage_widths
    model.neck = layers.FPN(in_channels=[c3, c4, clip.projection_dim], out_channels=config.neck_channels)
    model.decoder = layers.TransformerDecoder(num_layers=config.decoder_layers, d_model=config.text_width,
                                              nhead=config.decoder_attention_heads, dim_ffn=config.decoder_ffn_dim,
                                              dropout=config.decoder_dropout, return_intermediate=False)
    model.proj = layers.Projector(clip.projection_dim, config.text_width // 2, config.projector_kernel_size)
    return model


def _original_step(model: torch.nn.Module) -> Callable[[dict[str, torch.Tensor], bool], torch.Tensor]:
    """CRIS.pytorch's ``engine.train`` step: ``pred, target, loss = model(image, text, target)``."""

    def step(batch: dict[str, torch.Tensor], bf16: bool) -> torch.Tensor:
        with torch.autocast(batch["pixel_values"].device.type, dtype=torch.bfloat16, enabled=bf16):
            return model(batch["pixel_values"], batch["input_ids"], batch["labels"][:, None])[2]
    return step


def _r50_parts(model: CRISForReferringSegmentation) -> dict[str, int]:
    return {"CLIP ResNet (with its attention pool)": _count([model.vision_model]),
            "C5 residual branch": _count([model.pyramid]),
            "CLIP text tower + projection": _count([model.text_model, model.text_projection]),
            "neck": _count([model.neck]), "decoder": _count([model.decoder]), "projector": _count([model.projector])}


def _original_parts(model: torch.nn.Module) -> dict[str, int]:
    visual, connect = model.backbone.visual, model.backbone.visual.attnpool.connect
    return {"CLIP ResNet (with its attention pool)": _count([visual]) - _count([connect]),
            "C5 residual branch": _count([connect]),
            "CLIP text tower + projection": _count([model.backbone]) - _count([visual]) - 1,
            "neck": _count([model.neck]), "decoder": _count([model.decoder]), "projector": _count([model.proj]),
            "logit_scale (unused)": 1}


def candidates(quick: bool, models: Sequence[str] = MODELS[:-1], original: Path | None = None) -> list[Candidate]:
    """The models asked for, random weights from fixed seeds (see the module docstring)."""
    text = {**TINY_TOWER, "vocab_size": 100} if quick else VIT_B16_TEXT
    vision = {**TINY_TOWER, "patch_size": 16, "image_size": 32} if quick else VIT_B16_VISION
    projection = 16 if quick else VIT_B16_PROJECTION
    clipseg_side, cris_side = (64, 64) if quick else (352, 416)
    adamw = lambda module: lambda: torch.optim.AdamW(  # noqa: E731
        [p for p in module.parameters() if p.requires_grad], lr=BACKBONE_RATE)
    built = []
    if "clipseg" in models or "clipseg-all" in models:
        torch.manual_seed(0)
        clipseg = CLIPSegForImageSegmentation(CLIPSegConfig(
            text_config=text, vision_config=vision, projection_dim=projection,
            extract_layers=(1, 2, 3) if quick else (3, 6, 9), reduce_dim=16 if quick else 64,
            use_complex_transposed_convolution=True))  # "rd64-refined"
        for key, trainable in (("clipseg", "decoder"), ("clipseg-all", "all")):
            if key in models:
                model = copy.deepcopy(clipseg)  # one model each: own gradients
                segmenter = CLIPSegReferringSegmenter(model, trainable)
                built.append(Candidate(key, f"CLIPSeg rd64-refined, {trainable} trained", segmenter, clipseg_side,
                                       _count([model.clip]), _count([model.decoder]), _segmenter_step(segmenter),
                                       adamw(segmenter)))
    if "cris-vit" in models:
        torch.manual_seed(0)
        cris = CRISForReferringSegmentation(CRISConfig(
            clip_config=CLIPConfig(text_config=text, vision_config=vision, projection_dim=projection).to_dict(),
            **({"decoder_attention_heads": 2} if quick else {})))
        segmenter = CRISReferringSegmenter(cris, "all")
        new = _count(cris.new_modules())
        built.append(Candidate("cris-vit", "CRIS-ViT-B/16, all trained", segmenter, cris_side, _count([cris]) - new,
                               new, _segmenter_step(segmenter), adamw(segmenter)))
    config = cris_r50_config(quick)
    args = TrainArguments(learning_rate=HEAD_RATE, text_encoder_learning_rate=BACKBONE_RATE,
                          vision_encoder_learning_rate=BACKBONE_RATE, weight_decay=0.0)
    for key in ("cris-r50", "cris-r50-loop"):
        if key not in models:
            continue
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            cris = CRISForReferringSegmentation(config)
        new = _count([cris.neck, cris.decoder, cris.projector])
        if key == "cris-r50":
            segmenter = CRISReferringSegmenter(cris, "all")
            built.append(Candidate(key, "CRIS-R50, train.py's step", segmenter, cris_side, _count([cris]) - new, new,
                                   _segmenter_step(segmenter),
                                   lambda s=segmenter: torch.optim.AdamW(parameter_groups(s, args)),
                                   _r50_parts(cris)))
        else:
            built.append(Candidate(key, "CRIS-R50 in CRIS.pytorch's loop", cris, cris_side, _count([cris]) - new, new,
                                   _cris_loop_step(cris),
                                   lambda m=cris: torch.optim.Adam(_cris_groups(
                                       list(m.named_parameters()), ("text_", "vision_", "pyramid.")), weight_decay=0.0),
                                   _r50_parts(cris)))
    if original is not None:
        theirs = original_cris(original, config, seed=0)
        new = _count([theirs.neck, theirs.decoder, theirs.proj])
        built.append(Candidate(REFERENCE, "CRIS-R50, CRIS.pytorch's own modules and loop", theirs, cris_side,
                               _count([theirs]) - new, new, _original_step(theirs),
                               lambda m=theirs: torch.optim.Adam(_cris_groups(list(m.named_parameters()), ("backbone",)),
                                                                 weight_decay=0.0),
                               _original_parts(theirs)))
    return built


def make_batch(batch_size: int, side: int, device: torch.device, generator: torch.Generator,
               quick: bool) -> dict[str, torch.Tensor]:
    """Random pixels, 17-token expressions (start, words, end; no padding) and masks at the input side."""
    ids = torch.randint(3, 90 if quick else 49_000, (batch_size, TEXT_LENGTH), generator=generator)
    ids[:, 0], ids[:, -1] = (0, 99) if quick else (49_406, 49_407)  # the end token the highest id, as CRIS reads it
    return {
        "pixel_values": torch.randn(batch_size, 3, side, side, generator=generator).to(device),
        "input_ids": ids.to(device),
        "attention_mask": torch.ones_like(ids).to(device),
        "labels": (torch.rand(batch_size, side, side, generator=generator) > 0.8).float().to(device),
    }


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_step(candidate: Candidate, optimizer: torch.optim.Optimizer, batch: dict[str, torch.Tensor],
               bf16: bool) -> tuple[float, float]:
    """Wall and process-CPU seconds of one training step (forward with its loss, backward, optimizer step).

    The device is drained before and after. On a CPU shared with other work, the process's
    CPU time counts the work done, where wall time also counts the waits for a core.
    """
    device = batch["pixel_values"].device
    _sync(device)
    start, cpu_start = time.perf_counter(), time.process_time()
    loss = candidate.step(batch, bf16)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    _sync(device)
    return time.perf_counter() - start, time.process_time() - cpu_start


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1, …")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per model first")
    parser.add_argument("--rounds", type=int, default=3, help="timed steps per model, interleaved")
    parser.add_argument("--bf16", action="store_true", help="autocast the forward pass to bfloat16")
    parser.add_argument("--models", nargs="+", choices=MODELS[:-1], default=list(MODELS[:-1]),
                        help="the models to time (the first of them in this list is the ratios' baseline)")
    parser.add_argument("--original", type=Path, default=None,
                        help="a checkout of CRIS.pytorch: also time its own CRIS-R50, the CRIS-R50 rows' reference")
    parser.add_argument("--quick", action="store_true", help="tiny towers at 64 px: checks the script, not the models")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    if args.batch_size < 2:
        raise SystemExit("--batch-size must be at least 2: CRIS's batch norm needs two samples to train")
    device = torch.device(args.device)
    generator = torch.Generator().manual_seed(0)
    models = candidates(args.quick, args.models, args.original)
    runs = []
    for candidate in models:
        candidate.module.to(device).train()
        batch = make_batch(args.batch_size, candidate.side, device, generator, args.quick)
        runs.append((candidate, candidate.optimizer(), batch))
        for _ in range(args.warmup):
            timed_step(candidate, runs[-1][1], batch, args.bf16)
    wall: dict[str, list[float]] = {c.key: [] for c in models}
    cpu: dict[str, list[float]] = {c.key: [] for c in models}
    for round_ in range(args.rounds):
        for candidate, optimizer, batch in runs:
            seconds, cpu_seconds = timed_step(candidate, optimizer, batch, args.bf16)
            wall[candidate.key].append(seconds)
            cpu[candidate.key].append(cpu_seconds)
            print(f"round {round_ + 1} {candidate.name}: {seconds:.3f} s ({cpu_seconds:.3f} s of CPU)")
    clock = cpu if device.type == "cpu" else wall  # ratios: the work on a (shared) CPU, the time on a GPU
    baseline = models[0].key
    reference = next((key for key in (REFERENCE, "cris-r50-loop") if key in wall), None)

    def ratio(key: str, to: str) -> float:
        return statistics.median(t / b for t, b in zip(clock[key], clock[to]))

    results = {
        c.key: {
            "name": c.name, "side": c.side, "total": c.total, "backbone": c.backbone, "new": c.new,
            "trained": c.trained, "parts": c.parts,
            "step_s": statistics.median(wall[c.key]), "cpu_s": statistics.median(cpu[c.key]),
            "samples_per_s": args.batch_size / statistics.median(wall[c.key]),
            "ratio": ratio(c.key, baseline),
            "vs_reference": ratio(c.key, reference) if reference and c.key.startswith("cris-r50") else None,
            "rounds": {"wall_s": wall[c.key], "cpu_s": cpu[c.key]},
        }
        for c in models
    }
    section = render(args, results, device, reference)
    print(section)
    if not args.no_write:
        write_section(args.output, section)
        print(f"wrote the {SECTION} section of {args.output}")
    return results


def render(args: argparse.Namespace, results: dict[str, dict[str, Any]], device: torch.device,
           reference: str | None = None) -> str:
    """The Markdown section: step times and ratios, then CRIS-R50's parameters part by part."""
    if device.type == "cuda":
        where = f"{torch.cuda.get_device_name(device)}{', bf16 autocast' if args.bf16 else ', float32'}"
    else:
        threads = os.environ.get("OMP_NUM_THREADS", "unset")
        where = f"{report.machine()}; {torch.get_num_threads()} torch thread(s) (OMP_NUM_THREADS={threads})"
    first = next(iter(results.values()))["name"]
    reference_name = results[reference]["name"] if reference else None
    reference_column = "CRIS.pytorch" if reference == REFERENCE else "CRIS-R50 in CRIS.pytorch's loop"
    lines = [
        f"## {SECTION}",
        "",
        ("`python -m benchmarks.bench_cris`: CRIS-R50 (OpenAI's RN50 CLIP's architecture, CRIS's sizes) and "
         "CRIS-ViT-B/16 (`openai/clip-vit-base-patch16`'s shapes) at CRIS's 416² input, CLIPSeg with "
         "`CIDAS/clipseg-rd64-refined`'s configuration at its 352²; random weights, 17-token expressions. Backbone = "
         "the CLIP towers and their projections (with CRIS's C5 residual branch on the ResNet); new = the layers each "
         "adds. A step = forward, BCE, backward, optimizer step on a batch of "
         f"{args.batch_size}, median of {args.rounds} interleaved rounds after {args.warmup} warm-up step(s) per "
         f"model; ratios are medians of per-round ratios of {'CPU' if device.type == 'cpu' else 'wall'} time, "
         f"to {first} and, for CRIS-R50, to {reference_name or 'the reference (not timed)'}. \"train.py's step\" is "
         "the segmenter's own loss and AdamW over `parameter_groups`; \"CRIS.pytorch's loop\" is logits, "
         "nearest-resized masks, BCE and Adam with CRIS's groups, as its `engine/engine.py` composes a step."
         + (" **Tiny towers (`--quick`): a smoke run, not these models' figures.**" if args.quick else "")),
        "",
        (f"| model | input | parameters | backbone | new | trained | s / step | CPU s / step | samples / s | "
         f"vs {first} | vs {reference_column} |"),
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results.values():
        versus = "–" if r["vs_reference"] is None else f"{r['vs_reference']:.2f}×"
        lines.append(
            f"| {r['name']} | {r['side']}² | {r['total'] / 1e6:.2f} M | {r['backbone'] / 1e6:.2f} M | "
            f"{r['new'] / 1e6:.2f} M | {r['trained'] / 1e6:.2f} M | {r['step_s']:.2f} | {r['cpu_s']:.2f} | "
            f"{r['samples_per_s']:.2f} | "
            f"{r['ratio']:.2f}× | {versus} |"
        )
    with_parts = [r for r in results.values() if r["parts"]]
    if with_parts:
        names = list(dict.fromkeys(part for r in with_parts for part in r["parts"]))
        lines += ["", "| CRIS-R50 part | " + " | ".join(r["name"] for r in with_parts) + " |",
                  "|---|" + "---|" * len(with_parts)]
        lines += [f"| {part} | " + " | ".join(f"{r['parts'][part]:,}" if part in r["parts"] else "–"
                                                for r in with_parts) + " |" for part in names]
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
