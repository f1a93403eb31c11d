"""The explorer's benchmark runs end to end on a tiny pool and rewrites only its own section."""

from __future__ import annotations

import importlib
from pathlib import Path


def test_benchmark_runs_and_keeps_other_sections(tmp_path: Path) -> None:
    bench = importlib.import_module("benchmarks.bench_explore")
    output = tmp_path / "BENCHMARKS.md"
    output.write_text("# Benchmarks\n\n## Mining\n\nkeep me\n\n## Explorer\n\nstale\n")
    [result] = bench.main(["--images", "24", "--moves", "2", "--output", str(output)])
    assert result["decodes"] > 0 and result["move_ms"] > 0  # a pool this small is shown whole
    text = output.read_text()
    assert "stale" not in text and "## Mining\n\nkeep me\n" in text and text.count("## Explorer") == 1
    assert f"| {result['pool_images']} images, " in text
