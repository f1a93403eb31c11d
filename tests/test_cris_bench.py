"""The CRIS benchmarks run end to end on tiny settings and rewrite only their own sections."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from types import ModuleType

import pytest


@pytest.fixture
def load():
    return lambda name: importlib.import_module(f"benchmarks.{name}")


def test_bench_cris_counts_every_part_and_times_each_model_against_clipseg_and_cris_loop(load, tmp_path: Path) -> None:
    bench: ModuleType = load("bench_cris")
    output = tmp_path / "BENCHMARKS.md"
    output.write_text("# Benchmarks\n\n## Training\n\nkeep me\n\n## CRIS vs CLIPSeg\n\nstale\n")
    results = bench.main(["--quick", "--rounds", "2", "--output", str(output)])
    assert list(results) == ["clipseg", "clipseg-all", "cris-vit", "cris-r50", "cris-r50-loop"]
    for r in results.values():
        assert r["total"] == r["backbone"] + r["new"] and r["samples_per_s"] == pytest.approx(2 / r["step_s"])
    clipseg, clipseg_all, cris = results["clipseg"], results["clipseg-all"], results["cris-vit"]
    assert clipseg["trained"] == clipseg["new"] and cris["trained"] == cris["total"]  # each model's recipe
    assert clipseg_all["trained"] > clipseg["trained"] and clipseg["ratio"] == 1.0
    ours, loop = results["cris-r50"], results["cris-r50-loop"]
    assert loop["vs_reference"] == 1.0 and ours["vs_reference"] > 0 and cris["vs_reference"] is None
    assert sum(ours["parts"].values()) == ours["total"] == loop["total"]  # one architecture, stepped two ways
    text = output.read_text()
    assert "stale" not in text and "## Training\n\nkeep me\n" in text and "(`--quick`): a smoke run" in text
    assert f"| {ours['vs_reference']:.2f}× |" in text and "| C5 residual branch |" in text
    with pytest.raises(SystemExit, match="at least 2"):
        bench.main(["--quick", "--batch-size", "1", "--no-write"])
    with pytest.raises(SystemExit, match="not a CRIS.pytorch checkout"):
        bench.main(["--quick", "--models", "cris-r50", "--original", str(tmp_path), "--no-write"])


@pytest.mark.slow
def test_cris_synthetic_trains_clipseg_and_cris_with_each_pyramid_on_one_world(load, tmp_path: Path) -> None:
    script: ModuleType = load("cris_synthetic")
    output = tmp_path / "BENCHMARKS.md"
    results = script.main(["--quick", "--pyramid", "layers", "vitdet", "--out", str(tmp_path / "run"),
                           "--output", str(output)])
    assert list(results["segmenters"]) == ["clipseg", "cris-layers", "cris-vitdet"]
    for name, entry in results["segmenters"].items():
        config = json.loads((tmp_path / "run" / name / "arms" / "none" / "final" / "config.json").read_text())
        assert config["model_type"] == ("clipseg" if name == "clipseg" else "nemo_cris")
        assert config.get("pyramid") == {"clipseg": None, "cris-layers": "layers", "cris-vitdet": "vitdet"}[name]
        assert entry["metrics"]["count"] == results["eval_sentences"] and entry["train_seconds"] > 0
    assert output.read_text().count("## CRIS vs CLIPSeg on the synthetic world") == 1
