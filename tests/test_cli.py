"""``nemo-hf`` as a new user meets it: a light ``--help`` that shows the defaults, and no half-minute wait offline.

(``nemo-hf predict`` on a model, and its refusals of bad inputs: tests/test_pipeline.py.)
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_HEAVY = ("torch", "transformers", "datasets", "huggingface_hub", "accelerate", "numpy", "PIL")


def _help(*words: str) -> tuple[str, list[str]]:
    """``nemo-hf <words> --help`` in a fresh interpreter: what it shows, and which heavy libraries it imported."""
    code = ("import sys\nfrom nemo_hf.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            f"print('HEAVY', [m for m in {_HEAVY!r} if m in sys.modules])")
    run = subprocess.run([sys.executable, "-c", code, *words, "--help"], cwd=REPO, capture_output=True, text=True,
                         timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert run.returncode == 0, run.stderr[-3000:]
    shown, heavy = run.stdout.rsplit("HEAVY ", 1)
    return shown, eval(heavy)


@pytest.mark.parametrize("words", [(), ("predict",)], ids=["nemo-hf", "predict"])
def test_help_imports_no_heavy_library(words) -> None:
    """It took 6 s and 350 MB: the demo's settings imported torch and transformers for any command."""
    shown, heavy = _help(*words)
    assert heavy == [] and "usage: nemo-hf" in shown


def test_help_shows_the_defaults() -> None:
    from nemo_hf.experiment.settings import ExperimentSettings

    predict, _ = _help("predict")
    assert "(default: mask.png)" in " ".join(predict.split()) and "(default: 0.5)" in " ".join(predict.split())
    assert "nemo_hf_demo/arms/nemo/final" in predict  # where the demo's models are
    demo, _ = _help("demo")
    demo = " ".join(demo.split())
    defaults = ExperimentSettings().demo()
    for shown in ("(default: nemo_hf_demo)", f"(default: {defaults.max_train_steps})",
                  f"(default: {defaults.num_images})", f"(default: {defaults.seed})", "<out>/arms/<arm>/final/"):
        assert shown in demo, shown
    assert "(default: None)" not in demo and "(default: False)" not in demo


@pytest.fixture
def hub_out_of_reach(monkeypatch):
    """The Hub at a port nothing listens on (as if the machine were offline), HF_HUB_OFFLINE unset."""
    from huggingface_hub import constants

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


@pytest.fixture
def offline_mode(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)


@pytest.mark.parametrize("condition", ["hub_out_of_reach", "offline_mode"])
def test_predict_with_a_hub_id_offline_says_what_to_use_instead_at_once(condition, request, tmp_path, monkeypatch,
                                                                       capsys) -> None:
    """It waited about 30 s for the Hub client's retries, then failed without a word of what works offline."""
    from PIL import Image

    from nemo_hf.cli import main

    request.getfixturevalue(condition)
    monkeypatch.chdir(tmp_path)
    Image.new("RGB", (40, 30), "red").save("photo.png")
    (tmp_path / "nemo_hf_demo" / "arms" / "random" / "final").mkdir(parents=True)
    (tmp_path / "nemo_hf_demo" / "arms" / "random" / "final" / "config.json").write_text("{}")
    started = time.monotonic()
    assert main(["predict", "--model", "someone/segmenter", "--image", "photo.png", "--text", "the red one"]) == 1
    assert time.monotonic() - started < 10
    shown = capsys.readouterr().err.splitlines()[0]
    why = "HF_HUB_OFFLINE is set" if condition == "offline_mode" else "no answer from 127.0.0.1:"
    assert shown.startswith("nemo-hf: error: --model someone/segmenter is a Hub id, but the Hub ") and why in shown
    assert "someone/segmenter is not in the local cache" in shown
    for suggestion in ("nemo_hf_demo/arms/<none|random|nemo>/final/", "(here: nemo_hf_demo/arms/random/final)",
                       "--model nemo_hf_demo/arms/nemo/final", "nemo-hf/synthetic-clip"):
        assert suggestion in shown, suggestion


def test_mining_without_a_clip_offline_names_the_shipped_one_at_once(offline_mode, tmp_path) -> None:
    from nemo_hf.dataset_tools import mine_negatives as mine
    from nemo_hf.pretrained import HubOutOfReachError

    started = time.monotonic()
    with pytest.raises(HubOutOfReachError, match=r"--clip openai/clip-vit-base-patch16 is a Hub id, but the Hub .* "
                                                 r"\(HF_HUB_OFFLINE is set\).*--clip nemo-hf/synthetic-clip"):
        mine.main([str(tmp_path), "--out", str(tmp_path / "mined")])
    assert time.monotonic() - started < 10


def test_a_shipped_name_a_folder_and_a_reachable_hub_pass_the_check(tmp_path) -> None:
    from nemo_hf.pretrained import check_hub_model

    for name in ("nemo-hf/synthetic-clip", str(tmp_path)):
        check_hub_model(name, flag="--model", instead="")
    check_hub_model("user/anything", flag="--model", instead="")  # the session's local Hub answers


@pytest.mark.slow
def test_the_readme_predicts_with_a_model_the_demo_leaves_where_it_says(tmp_path) -> None:
    """The README said neither where the demo's trained models are nor how to run predict on one: its commands run."""
    import re

    readme = (REPO / "README.md").read_text()
    [snippet] = [block for block in re.findall(r"```bash\n(.*?)```", readme, re.S) if "nemo_hf_demo/arms/" in block]
    cli = f"{sys.executable} -m nemo_hf.cli"
    script = f"set -e\n{cli} demo --quick\n{snippet.replace('nemo-hf ', cli + ' ')}"
    run = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                         env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)})
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip().splitlines()[-1].startswith("mask: mask.png (")
    assert (tmp_path / "mask.png").is_file() and (tmp_path / "mask_overlay.png").is_file()
