"""The mining benchmark runs end to end (tiny sizes) and writes only its own section."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

import pytest


@pytest.fixture
def bench() -> ModuleType:
    return importlib.import_module("benchmarks.bench_mining")


@pytest.mark.slow
def test_quick_run_reports_every_figure(bench) -> None:
    result = bench.main(["--quick"])
    embedding = result["embedding"]
    # the ratio is the two measured rates' (the bare forward over the whole pipeline), not any positive number
    assert embedding["ratio"] == pytest.approx(embedding["pipeline_images_per_s"] / embedding["bare_images_per_s"])
    assert 0.05 < embedding["ratio"] < 20 and 0.05 < embedding["cpu_ratio"] < 20
    cases = result["selection"]["cases"]
    assert {"defaults (tau_image=0.9)", "filters biting (tau_text=0.16, tau_image=0.15)"} <= set(cases)
    assert all(case["rss_gb"] > 0 and case["seconds"] > 0 for case in cases.values())
    # every case is timed against the same bare search: seconds / ratio is one number
    bare_seconds = {round(case["seconds"] / case["ratio"], 9) for case in cases.values()}
    assert len(bare_seconds) == 1 and next(iter(bare_seconds)) > 0


def test_write_section_replaces_only_the_mining_section(bench, tmp_path: Path) -> None:
    path = tmp_path / "BENCHMARKS.md"
    path.write_text("# Benchmarks\n\n## Mosaic\n\nmosaic figures\n\n## Mining\n\nold\n\n## Training\n\nkept\n")
    bench.write_section(path, "## Mining\n\nnew figures\n")
    text = path.read_text()
    assert "old" not in text and "new figures" in text
    assert "mosaic figures" in text and "## Training\n\nkept" in text
    fresh = tmp_path / "NEW.md"
    bench.write_section(fresh, "## Mining\n\nfigures\n")
    assert fresh.read_text() == "# Benchmarks\n\n## Mining\n\nfigures\n"
