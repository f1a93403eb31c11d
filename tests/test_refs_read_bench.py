"""The refs-reading benchmark runs end to end on a few refs and measures both sides of its ratio."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import bench_refs_read as bench


def test_quick_run_measures_load_refs_with_and_without_the_check(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(bench, "CACHE", tmp_path)
    ratios = bench.main(["--num-refs", "40", "--rounds", "1"])
    assert set(ratios) == {"protocol 0", "protocol 2"} and all(ratio > 0 for ratio in ratios.values())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["refs_40_p0.p", "refs_40_p2.p"]
    printed = capsys.readouterr().out
    assert "| protocol 0 |" in printed and "| protocol 2 |" in printed
