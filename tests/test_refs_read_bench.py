"""The refs-reading benchmark runs end to end on a few refs and measures both sides of its ratio."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.scripts import BENCHMARKS, load_script


def test_quick_run_measures_load_refs_with_and_without_the_check(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    # the script imports _report by name, as its neighbour; loaded here by path instead
    monkeypatch.setitem(sys.modules, "_report", load_script(BENCHMARKS / "_report.py"))
    bench = load_script(BENCHMARKS / "bench_refs_read.py")
    monkeypatch.setattr(bench, "CACHE", tmp_path)
    ratios = bench.main(["--num-refs", "40", "--rounds", "1"])
    assert set(ratios) == {"protocol 0", "protocol 2"} and all(ratio > 0 for ratio in ratios.values())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["refs_40_p0.p", "refs_40_p2.p"]
    printed = capsys.readouterr().out
    assert "| protocol 0 |" in printed and "| protocol 2 |" in printed
