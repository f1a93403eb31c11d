"""The fair-world audit benchmark runs end to end on a tiny world and reports every arm."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import fair_world_audit as bench


def test_quick_run_reports_every_arm(tmp_path: Path) -> None:
    result = bench.main(["--quick", "--out", str(tmp_path / "audit.json")])
    assert json.loads((tmp_path / "audit.json").read_text()) == result
    arms = result["arms"]
    assert set(arms) == {"oracle", "oracle, own frame", "oracle, tau off", "random",
                         *(f"noisy oracle sigma={s}" for s in (0.25, 0.75, 1.5))}  # fmt: skip
    assert arms["oracle"]["false_negative"] == 0.0 < arms["oracle, tau off"]["false_negative"]
    assert len({row["mosaics"] for row in arms.values()}) == 1  # one mosaic per training sentence, every arm
    assert set(result["strata"]) == {"train", "val", "testA", "testB"}
    assert all(0 <= row["referring_hard"] <= row["sentences"] for row in result["strata"].values())
