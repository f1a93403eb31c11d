"""Short in-process runs of the training loop on the tiny config, shared by the training and Hub tests.

    >>> args = tiny_args(Path("out"), "--max_train_steps", "2")
    >>> args[:2] == ["--config", str(TINY_CONFIG)] and args[-2:] == ["--max_train_steps", "2"]
    True
"""

from __future__ import annotations

from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
TRAINING = REPO / "training"  # the scripts; run as processes, their code is nemo_hf.trainer's
TINY_CONFIG = TRAINING / "configs" / "tiny_synthetic.yaml"


def tiny_args(output_dir: Path, *extra: str, augmentation: str = "none") -> list[str]:
    """Arguments of a short tiny run: no TensorBoard, 16 sentences per eval split.

    val and testB hold at least 16 sentences in the tiny tree (testA holds 14), so every eval
    split fills whole batches of 4 on one process and of 2 x 4 on two.
    """
    return ["--config", str(TINY_CONFIG), "--output_dir", str(output_dir), "--augmentation", augmentation,
            "--report_to", "none", "--eval_splits", "val", "testB", "--eval_batch_size", "4",
            "--max_eval_samples", "16", *extra]


def final_weights(run: Path) -> dict[str, torch.Tensor]:
    """The final model's weights of the run in ``run``."""
    from safetensors.torch import load_file

    return load_file(run / "final" / "model.safetensors")


def reset_accelerate() -> None:
    """Between two in-process runs: Accelerate keeps its state per process."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()
