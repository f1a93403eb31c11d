"""What a non-editable install ships: every data file the package reads at run time, card templates included."""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _package_data() -> dict[str, list[str]]:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]


def test_package_data_covers_every_non_python_file_in_the_package():
    patterns = _package_data()["nemo_hf"]
    shipped = {path for pattern in patterns for path in (ROOT / "nemo_hf").glob(pattern)}
    data_files = {
        path for path in (ROOT / "nemo_hf").rglob("*")
        if path.is_file() and path.suffix not in {".py", ".pyc"} and "__pycache__" not in path.parts
    }
    assert data_files, "the package has data files (the shipped CLIP at least)"
    assert data_files <= shipped, f"not in package-data: {sorted(str(p.relative_to(ROOT)) for p in data_files - shipped)}"
    templates = {path for pattern in _package_data()["nemo_hf.model_cards"] for path in (ROOT / "model_cards").glob(pattern)}
    assert templates == set((ROOT / "model_cards").iterdir()) and templates, "model_cards/ holds files the wheel omits"


_RENDER = """
import nemo_hf, nemo_hf.hub.cards
from nemo_hf.hub.cards import render_dataset_card, render_model_card
results = {"model": "nemo-hf/synthetic-clip", "trainable": "decoder", "trained_parameters": 1, "total_parameters": 2,
           "augmentation": "none", "train_samples": 8, "train_epochs": 1.0, "train_steps": 2, "num_processes": 1,
           "mixed_precision": "no", "eval": {"val": {"count": 4, "overall_iou": 0.5, "mean_iou": 0.4}}}
config = {"dataset_name": "refcoco_unc", "synthetic_images": 40, "seed": 0}
print(nemo_hf.__file__)
print("MODEL CARD OK" if 'model="me/tiny"' in render_model_card(results, config, model_id="me/tiny") else "no card")
card = render_dataset_card(repo_id="me/refcoco", config_name="refcoco_unc", stats={"refcoco_unc": "| x |"},
                           pretty_name="p", summary="s", published="", license="l", citation="c", generalized=False)
print("DATASET CARD OK" if 'load_dataset("me/refcoco", "refcoco_unc")' in card else "no card")
"""


@pytest.mark.slow
def test_an_installed_wheel_renders_model_and_dataset_cards(tmp_path):
    """Build the wheel offline from a copy of the sources, install it alone, render both cards from it."""
    wheel = _wheel(tmp_path)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    target = tmp_path / "site"
    subprocess.run([*pip, "install", "--no-deps", "--no-index", "--target", str(target), str(wheel)], check=True,
                   capture_output=True, timeout=300)
    assert sorted(p.name for p in (target / "nemo_hf" / "model_cards").iterdir()) == sorted(
        p.name for p in (ROOT / "model_cards").iterdir())

    elsewhere = tmp_path / "elsewhere"  # no checkout in sight: the templates can only come from the wheel
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target), "HF_HUB_OFFLINE": "1"}
    run = subprocess.run([sys.executable, "-c", _RENDER], cwd=elsewhere, env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    location, model_card, dataset_card = run.stdout.strip().splitlines()[-3:]
    assert Path(location).is_relative_to(target)
    assert (model_card, dataset_card) == ("MODEL CARD OK", "DATASET CARD OK")


def _wheel(tmp_path: Path) -> Path:
    """The wheel built offline from a copy of the sources (no training/, benchmarks/ or tests/ beside it)."""
    pytest.importorskip("setuptools", minversion="70.1")  # the dev extra; the build must not download one
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    for folder in ("nemo_hf", "model_cards"):
        shutil.copytree(ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    subprocess.run([*pip, "wheel", "--no-build-isolation", "--no-deps", "--no-index", "-w", str(tmp_path / "dist"),
                    str(source)], check=True, capture_output=True, timeout=300)
    [wheel] = (tmp_path / "dist").glob("nemo_hf-*.whl")
    return wheel


@pytest.mark.slow
def test_the_demo_runs_from_an_installed_wheel_in_a_fresh_virtualenv(tmp_path):
    """`nemo-hf demo --quick` from a folder outside the source tree, with only the wheel's files: the experiment
    trains in-process with the package's own training loop, no training/ script in sight."""
    wheel = _wheel(tmp_path)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python, cli = venv / "bin" / "python", venv / "bin" / "nemo-hf"
    # the dependencies (torch, transformers, …) come from this environment's site-packages, put on the new one's
    # path by a plain .pth line (whose own .pth files, this checkout's editable install among them, are not run);
    # nemo_hf itself comes only from the wheel
    new_site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              capture_output=True, text=True, check=True).stdout.strip()
    Path(new_site, "dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run([str(python), "-m", "pip", "--disable-pip-version-check", "install", "--no-deps", "--no-index",
                    str(wheel)], check=True, capture_output=True, timeout=300)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"), OMP_NUM_THREADS="1")
    where = subprocess.run([str(python), "-c", "import nemo_hf; print(nemo_hf.__file__)"], cwd=elsewhere, env=env,
                           capture_output=True, text=True, timeout=120, check=True).stdout.strip()
    assert Path(where).is_relative_to(venv), where  # the wheel's copy, not the checkout's
    run = subprocess.run([str(cli), "demo", "--quick", "--out", str(elsewhere / "demo")], cwd=elsewhere, env=env,
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    results = json.loads((elsewhere / "demo" / "results.json").read_text())
    assert list(results["arms"]) == ["none", "random", "nemo"]
    assert all((elsewhere / "demo" / "arms" / arm / "final" / "model.safetensors").is_file() for arm in results["arms"])
