"""What NeMo on the fly costs a training step: time spent waiting for data, with and without mosaics.

Runs the training step of ``training/train.py`` — the same function,
:func:`nemo_hf.trainer.segmenter_training.training_step`: forward with labels (the model's
own loss), backward, AdamW — on the tiny config's model and data (``training/configs/tiny_synthetic.yaml``, with a
larger synthetic tree so that an epoch is more than a few steps) in one process. Each
augmentation gets its training set from the same glue the training script uses
(:func:`nemo_hf.trainer.data.build_train_dataset`) and the same DataLoader settings (batch size,
persistent workers, collator). Rounds are interleaved (none, nemo, none, nemo, …) so a
busy machine slows both alike; each round starts a fresh DataLoader iterator and discards
its first steps. Per step it records the time spent in the DataLoader's
``__next__`` (waiting for data) and the whole step.

Reports per augmentation: ms per step, ms waiting per step, the share of the step spent
waiting, and the time per step relative to no augmentation (goal: NeMo ≤ 1.05×). NeMo's
one-off mining and pool shrinking happen before the rounds and are not counted. Writes the "Training" section
of BENCHMARKS.md.

    python -m benchmarks.bench_train                  # a few minutes
    python -m benchmarks.bench_train --no-write       # print only
    python -m benchmarks.bench_train --workers 0      # data in the training process
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from benchmarks import report
from accelerate import Accelerator

from nemo_hf.modeling.inputs import RISCollator
from nemo_hf.modeling.loading import load_referring_segmenter
from nemo_hf.trainer.args import TrainingConfig
from nemo_hf.trainer.data import build_train_dataset, load_splits
from nemo_hf.trainer.segmenter_training import training_step

ROOT = Path(__file__).resolve().parent.parent
SECTION = "Training"
CONFIG = ROOT / "training" / "configs" / "tiny_synthetic.yaml"
DEFAULT_OUTPUT = ROOT / "BENCHMARKS.md"


def _forever(loader: DataLoader, set_epoch) -> Iterator[dict]:
    epoch = 0
    while True:
        set_epoch(epoch)
        yield from loader
        epoch += 1


def measure(loader: DataLoader, set_epoch, model, optimizer, scheduler, accelerator: Accelerator, warmup: int,
            steps: int) -> tuple[float, float]:
    """``(seconds waiting for data, seconds in total)`` over ``steps`` training steps after ``warmup``."""
    batches = _forever(loader, set_epoch)
    waited = total = 0.0
    model.train()
    for step in range(warmup + steps):
        start = time.perf_counter()
        batch = next(batches)
        fetched = time.perf_counter()
        with accelerator.accumulate(model):
            training_step(model, batch, optimizer, scheduler, accelerator, max_grad_norm=1.0)
        done = time.perf_counter()
        if step >= warmup:
            waited += fetched - start
            total += done - start
    del batches  # stops the workers
    return waited, total


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--augmentations", nargs="+", default=["none", "nemo"], choices=["none", "random", "nemo"])
    parser.add_argument("--steps", type=int, default=100, help="measured steps per round")
    parser.add_argument("--synthetic-images", type=int, default=200,
                        help="images of the synthetic tree (the config's 40 make 10-step epochs)")
    parser.add_argument("--warmup", type=int, default=5, help="discarded steps at the start of each round")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers (the same for every augmentation)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--mosaic-prob", type=float, default=0.5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the training process")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    config = TrainingConfig.parse(["--config", str(CONFIG), "--mosaic_prob", str(args.mosaic_prob),
                                   "--synthetic_images", str(args.synthetic_images)])
    raw_train = load_splits(config.data, [config.data.train_split])[config.data.train_split]
    model, processor = load_referring_segmenter(config.model.model_name_or_path, trainable=config.model.trainable)
    accelerator = Accelerator(cpu=True)
    optimizer = torch.optim.AdamW([p for ps in model.trainable_parameters().values() for p in ps], lr=1e-4)
    model, optimizer = accelerator.prepare(model, optimizer)
    scheduler = torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0)

    loaders = {}
    for augmentation in args.augmentations:
        train = build_train_dataset(raw_train, augmentation, config.nemo, clip_model=config.augmentation.clip_model,
                                    input_size=int(processor.image_processor.size["height"]))
        loader = DataLoader(train.dataset, batch_size=args.batch_size, shuffle=True, drop_last=True,
                            collate_fn=RISCollator(processor), num_workers=args.workers,
                            persistent_workers=args.workers > 0)
        loaders[augmentation] = (loader, train.set_epoch)

    rounds: dict[str, list[tuple[float, float]]] = {a: [] for a in args.augmentations}
    load_before = os.getloadavg()[0]
    for r in range(args.rounds):
        for augmentation, (loader, set_epoch) in loaders.items():
            waited, total = measure(loader, set_epoch, model, optimizer, scheduler, accelerator, args.warmup, args.steps)
            rounds[augmentation].append((waited, total))
            print(f"round {r + 1} {augmentation:>6}: {1e3 * total / args.steps:7.1f} ms/step, "
                  f"{1e3 * waited / args.steps:7.1f} ms waiting ({waited / total:.0%})")

    section = render(args, rounds, len(raw_train), (load_before, os.getloadavg()[0]))
    print(section)
    if not args.no_write:
        write_section(args.output, section)
        print(f"wrote the {SECTION} section of {args.output}")


def render(args: argparse.Namespace, rounds: dict[str, list[tuple[float, float]]], refs: int,
           load: tuple[float, float]) -> str:
    """The Markdown section: medians over rounds, NeMo/none paired per round, and the verdict."""
    per_step = {a: statistics.median(t for _, t in rs) / args.steps for a, rs in rounds.items()}
    waiting = {a: statistics.median(w for w, _ in rs) / args.steps for a, rs in rounds.items()}
    share = {a: statistics.median(w / t for w, t in rs) for a, rs in rounds.items()}
    # rounds run back to back, so a ratio within a round shares the machine's load of the moment
    paired = {a: sorted(t / base for (_, t), (_, base) in zip(rs, rounds["none"]))
              for a, rs in rounds.items() if "none" in rounds}
    lines = [
        f"## {SECTION}",
        "",
        (
            "`python -m benchmarks.bench_train`: the training step of `training/train.py` (`training_step`: "
            "forward with the model's own loss, backward, clipping, AdamW) on the tiny config (`training/configs/tiny_synthetic.yaml`: a CLIPSeg on nemo-hf/synthetic-clip, "
            f"64² input; a synthetic RefCOCO tree of {refs} training refs, 320×240 JPEGs), one process, "
            f"{args.threads} torch thread(s), batch {args.batch_size}, {args.workers} persistent DataLoader "
            f"workers (as `train.py` uses them) for every augmentation, mosaic probability "
            f"{args.mosaic_prob}. Waiting = time in the DataLoader's `__next__`; computing = the rest of the "
            "step. Goal: NeMo adds ≤ 5% to the time per step."
        ),
        "",
        ("| augmentation | ms / step | ms waiting for data | ms computing | share of the step waiting "
         "| time per step vs none, per round: median (range) |"),
        "|---|---|---|---|---|---|",
    ]
    for augmentation in rounds:
        ratios = paired.get(augmentation)
        ratio = (f"{statistics.median(ratios):.2f}× ({ratios[0]:.2f}–{ratios[-1]:.2f})" if ratios else "–")
        lines.append(
            f"| {augmentation} | {1e3 * per_step[augmentation]:.1f} | {1e3 * waiting[augmentation]:.1f} | "
            f"{1e3 * (per_step[augmentation] - waiting[augmentation]):.1f} | {share[augmentation]:.0%} | {ratio} |"
        )
    lines += [
        "",
        (f"Medians of {args.rounds} interleaved rounds of {args.steps} steps (after {args.warmup} discarded "
         f"each); torch {torch.__version__}, Python {platform.python_version()}, {report.cpu_name()}, "
         f"{os.cpu_count()} CPU cores shared by the training process and the workers (and other jobs: load "
         f"average {load[0]:.1f} before, {load[1]:.1f} after)."),
    ]
    if "nemo" in paired:
        added = statistics.median(paired["nemo"]) - 1
        # the whole run's time, every round counted: a check on the median that no single round sways
        overall = sum(t for _, t in rounds["nemo"]) / sum(t for _, t in rounds["none"]) - 1
        verdict = "met" if max(added, overall) <= 0.05 else "not met"
        computing = {a: per_step[a] - waiting[a] for a in ("none", "nemo")}
        note = (
            f"NeMo adds {added:+.1%} to the time per step here (median of the per-round ratios; "
            f"{overall:+.1%} over the whole run's steps): the goal is {verdict}. Waiting for data goes from {1e3 * waiting['none']:.1f} to {1e3 * waiting['nemo']:.1f} ms "
            f"and computing from {1e3 * computing['none']:.1f} to {1e3 * computing['nemo']:.1f} ms."
        )
        if computing["nemo"] > 1.05 * computing["none"]:
            note += (
                f" With {os.cpu_count()} cores the workers' decoding competes with the training process for "
                "the same CPU, so extra data work shows in both columns."
            )
        note += (
            " A mosaic draws four images where a plain sample draws one; what keeps that off the step: "
            "the cells decode from copies of the pool images shrunk to the cell size (`thumbnail_cells`), the "
            "collator normalises images already at the input size directly instead of through the "
            "processor, and persistent workers follow `set_epoch` instead of restarting every epoch. The "
            "spread of the per-round ratios is the noise of a shared machine. A GPU run, where the model "
            "sets the pace and the workers have cores of their own, was not measured here."
        )
        lines += ["", note]
    return "\n".join(lines) + "\n"


def write_section(path: Path, section: str) -> None:
    """Replace (or append) this benchmark's section of BENCHMARKS.md."""
    report.write_section(path, SECTION, section)


if __name__ == "__main__":
    main()
