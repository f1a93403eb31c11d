"""The mosaic benchmark runs end to end on a tiny setting and rewrites only its own section."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

import pytest


@pytest.fixture
def bench() -> ModuleType:
    return importlib.import_module("benchmarks.bench_mosaic")


def test_benchmark_runs_and_keeps_other_sections(bench: ModuleType, tmp_path: Path) -> None:
    output = tmp_path / "BENCHMARKS.md"
    output.write_text("# Benchmarks\n\n## Mining\n\nkeep me\n\n## Mosaic\n\nstale\n\n## Training\n\nkeep me too\n")
    ratios = bench.main(["--images", "5", "--samples", "2", "--rounds", "1", "--output", str(output)])
    assert ratios[bench.FLOOR] == 1.0 and all(ratio > 0 for ratio in ratios.values())
    text = output.read_text()
    assert "stale" not in text and text.count("## Mosaic") == 1
    assert "## Mining\n\nkeep me\n" in text and text.endswith("## Training\n\nkeep me too\n")
    assert f"| {bench.STRETCH} | {ratios[bench.STRETCH]:.2f}× |" in text


def test_benchmark_creates_the_file(bench: ModuleType, tmp_path: Path) -> None:
    output = tmp_path / "BENCHMARKS.md"
    bench.write_section(output, "## Mosaic\n\nfigures\n")
    bench.write_section(output, "## Mosaic\n\nnew figures\n")
    assert output.read_text() == "# Benchmarks\n\n## Mosaic\n\nnew figures\n"
