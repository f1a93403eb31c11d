"""The command-line tools end on an error they name with its message and status 1, not a traceback.

``nemo-hf``, ``training/*.py`` and ``dataset_scripts/*.py`` are run as a user runs them (a
process); ``NEMO_HF_DEBUG=1`` brings the traceback back.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nemo_hf.command_line import DEBUG_VARIABLE, run_command

REPO = Path(__file__).resolve().parents[1]


def _tool(*command: str, debug: bool = False, cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    env.pop(DEBUG_VARIABLE, None)
    if debug:
        env[DEBUG_VARIABLE] = "1"
    return subprocess.run([sys.executable, *command], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(
    ("script", "arguments", "message"),
    [
        ("training/train.py", ["--config", "missing.yaml"], "train.py: error: config file missing.yaml does not exist"),
        ("training/eval_ris.py", ["--synthetic_images", "4", "--hub_dataset", "me/refcoco"],
         "eval_ris.py: error: give exactly one data source"),
        ("dataset_scripts/build_refcoco.py", ["refcoco_unc", "--data-dir", "nowhere", "--image-dir", "nowhere",
                                              "--out", "out"], "build_refcoco.py: error: "),
    ],
    ids=["train", "eval_ris", "build_refcoco"],
)
def test_a_named_error_is_its_message_and_status_1(script: str, arguments: list[str], message: str,
                                                    tmp_path) -> None:
    run = _tool(str(REPO / script), *arguments, cwd=tmp_path)
    assert run.returncode == 1, run.stderr[-3000:]
    lines = run.stderr.strip().splitlines()
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    assert lines[-2].startswith(message), lines[-2:]
    assert lines[-1] == f"(the traceback: run again with {DEBUG_VARIABLE}=1)"


def test_the_debug_variable_brings_the_traceback_back(tmp_path) -> None:
    run = _tool(str(REPO / "training" / "train.py"), "--config", "missing.yaml", debug=True, cwd=tmp_path)
    assert run.returncode == 1
    assert "Traceback (most recent call last)" in run.stderr
    assert run.stderr.strip().splitlines()[-1] == "FileNotFoundError: config file missing.yaml does not exist"


def test_a_bug_keeps_its_traceback_and_a_status_is_passed_on() -> None:
    def buggy() -> None:
        raise KeyError("labels")

    with pytest.raises(KeyError):
        run_command(buggy, stream=io.StringIO())
    assert run_command(lambda: 3, stream=io.StringIO()) == 3
    assert run_command(lambda: None, stream=io.StringIO()) == 0


def test_the_projects_own_errors_are_named_errors() -> None:
    from nemo_hf.hub.model_repos import HubPushError

    def failing_push() -> None:
        raise HubPushError("pushing out/final to me/model failed: 500")

    shown = io.StringIO()
    assert run_command(failing_push, prog="train.py", stream=shown) == 1
    assert shown.getvalue().splitlines()[0] == "train.py: error: pushing out/final to me/model failed: 500"


def test_ctrl_c_is_one_line_and_status_130() -> None:
    def interrupted() -> None:
        raise KeyboardInterrupt

    shown = io.StringIO()
    assert run_command(interrupted, prog="nemo-hf", stream=shown) == 130
    assert shown.getvalue().strip() == "nemo-hf: interrupted"
