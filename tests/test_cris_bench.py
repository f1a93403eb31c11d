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
def test_cris_synthetic_trains_clipseg_and_cris_with_each_pyramid_on_each_seeds_world(load, tmp_path: Path) -> None:
    script: ModuleType = load("cris_synthetic")
    output = tmp_path / "BENCHMARKS.md"
    argv = ["--quick", "--pyramid", "layers", "vitdet", "--seeds", "0", "1", "--out", str(tmp_path / "run"),
            "--output", str(output)]
    results = script.main(argv)
    assert list(results["seeds"]) == ["0", "1"]
    for seed, entry in results["seeds"].items():
        assert list(entry["segmenters"]) == ["clipseg", "cris-layers", "cris-vitdet"]
        for name, run in entry["segmenters"].items():
            folder = tmp_path / "run" / f"seed{seed}" / name
            config = json.loads((folder / "arms" / "none" / "final" / "config.json").read_text())
            assert config["model_type"] == ("clipseg" if name == "clipseg" else "nemo_cris")
            assert config.get("pyramid") == {"clipseg": None, "cris-layers": "layers", "cris-vitdet": "vitdet"}[name]
            assert run["metrics"]["count"] == entry["eval_sentences"] and run["train_seconds"] > 0
    # each seed is its own world and initialisation
    worlds, inits = ([(tmp_path / "run" / f"seed{s}" / part).read_bytes() for s in ("0", "1")]
                     for part in ("refer/refcocog/instances.json", "cris-layers/init/model.safetensors"))
    assert worlds[0] != worlds[1] and inits[0] != inits[1]
    # differences with the first run, paired on the same sentences: per seed and pooled, the pooled one over both
    vitdet = results["differences"]["cris-vitdet − clipseg"]
    assert list(vitdet) == ["0", "1", "pooled"]
    assert vitdet["pooled"]["referring_hard"]["sentences"] == sum(
        vitdet[s]["referring_hard"]["sentences"] for s in ("0", "1"))
    text = output.read_text()
    assert text.count("## CRIS vs CLIPSeg on the synthetic world") == 1 and "| cris-vitdet − clipseg | pooled |" in text
    # finished runs are read back: a second call trains nothing and gives the same numbers
    finals = sorted((tmp_path / "run").glob("seed*/*/arms/none/final/model.safetensors"))
    written = [f.stat().st_mtime_ns for f in finals]
    again = script.main([*argv, "--no-write"])
    assert [f.stat().st_mtime_ns for f in finals] == written and len(finals) == 6
    assert again["differences"] == results["differences"]
