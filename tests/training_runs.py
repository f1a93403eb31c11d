"""Runs of the training loop on the tiny config, shared by the training and Hub tests.

In-process runs take :func:`tiny_args`; runs as real processes (one, or several started by
``accelerate launch``, as a user starts them) take :func:`launch` and :func:`run_to_completion`.

    >>> args = tiny_args(Path("out"), "--max_train_steps", "2")
    >>> args[:2] == ["--config", str(TINY_CONFIG)] and args[-2:] == ["--max_train_steps", "2"]
    True
    >>> launch("train.py", processes=2)[-5:-2]
    ['--num_processes', '2', '--main_process_port']
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
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


def subprocess_env() -> dict[str, str]:
    """The environment of a run started as a process: CPU, one thread, unbuffered, stacks dumped on SIGABRT."""
    # one thread per process: the same arithmetic in every run, and two processes fit two cores
    return {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "1", "PYTHONUNBUFFERED": "1",
            "PYTHONFAULTHANDLER": "1"}


def launch(*args: str, processes: int) -> list[str]:
    """The ``accelerate launch`` command that runs ``args`` (a script, its flags) in ``processes`` CPU processes."""
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--num_machines", "1",
                "--mixed_precision", "no", "--dynamo_backend", "no"]
    if processes > 1:
        # `--cpu --num_processes 2` would start ONE process; this starts two, synchronised (gloo)
        launcher += ["--multi_gpu", "--num_processes", str(processes), "--main_process_port", "0"]
    else:
        launcher += ["--cpu", "--num_processes", "1"]
    return [*launcher, *args]


def _signal_all(pids: set[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def run_to_completion(command: list[str], timeout: float = 240, **env: str) -> subprocess.CompletedProcess:
    """Run to completion; on a hang, dump every process's Python stack (faulthandler) and fail.

    The launcher's workers are watched while it runs: torch's launcher starts them in
    sessions of their own, and one it leaves orphaned still holds the output pipes.
    """
    import psutil

    process = subprocess.Popen(command, cwd=REPO, env={**subprocess_env(), **env}, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline, seen = time.monotonic() + timeout, {process.pid}
    try:
        while True:
            try:
                out, err = process.communicate(timeout=2)
                break
            except subprocess.TimeoutExpired:
                try:
                    seen |= {child.pid for child in psutil.Process(process.pid).children(recursive=True)}
                except psutil.Error:
                    pass
                if time.monotonic() < deadline:
                    continue
                _signal_all(seen, signal.SIGABRT)  # PYTHONFAULTHANDLER: each process prints its stack
                try:
                    out, err = process.communicate(timeout=30)
                except subprocess.TimeoutExpired:
                    _signal_all(seen, signal.SIGKILL)
                    out, err = process.communicate(timeout=30)
                pytest.fail(f"{command} hung for {timeout} s; stacks:\n{err[-8000:]}")
    finally:
        _signal_all({pid for pid in seen if psutil.pid_exists(pid) and pid != process.pid}, signal.SIGKILL)
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 0, err[-4000:]
    return subprocess.CompletedProcess(command, process.returncode, out, err)
