"""benchmarks/clip_miner_audit.py: every filter reaches the miner, and the rows are the audits of what was drawn."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import clip_miner_audit as bench


@pytest.mark.slow
def test_each_filter_reaches_the_miner_and_the_oracle_draws_no_false_negative(tmp_path: Path, monkeypatch) -> None:
    # tau_text -1 drops every candidate, so every sentence falls back; a filter that never reached the miner would not
    monkeypatch.setitem(bench.FILTERS, "drop every candidate", {"tau_text": -1.0})
    rows = bench.main(["--seeds", "0", "--num-images", "40", "--out", str(tmp_path),
                       "--filters", "tau_image 0.9 (the default)", "drop every candidate"])
    by = {(row["miner"], row["filter"]): row for row in rows}
    assert set(by) == {("random", "—"), ("oracle", "—"), ("nemo-hf/synthetic-clip", "tau_image 0.9 (the default)"),
                       ("nemo-hf/synthetic-clip", "drop every candidate")}
    assert by["oracle", "—"]["false_negative"] == 0.0
    assert by["nemo-hf/synthetic-clip", "drop every candidate"]["fallback"] == 1.0
    assert by["nemo-hf/synthetic-clip", "tau_image 0.9 (the default)"]["fallback"] < 1.0
    for row in rows:
        assert all(0.0 <= row[key] <= 1.0 for key in bench.AUDITED)
    section = bench.render(rows, "note.")
    assert section.count("\n| 0 |") == len(rows) and section.startswith(f"## {bench.SECTION}")
