"""benchmarks/nemo_effect.py: finished runs are read back (never retrained), the sweep is summarised and drawn.

Results files are written here by hand, in the schema ``run_experiment`` saves, so the
script's bookkeeping is checked in seconds; the experiment itself is tested end to end in
test_experiment.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from nemo_hf.experiment import ExperimentSettings
from benchmarks import nemo_effect as bench

STEPS = 7


def fake_results(settings: ExperimentSettings, hard: dict[str, float], median: float) -> dict:
    """What results.json holds, with the given hard-stratum oIoU per arm."""
    groups = ("distractors=0", "distractors=1", "distractors=2", "distractors=3+", "distractors>=2", "size=small")
    return {
        "settings": settings.to_dict(),
        "mining": {"chosen_text_quantiles": {"50%": median}},
        "arms": {
            arm: {"metrics": {"overall_iou": value - 0.01, "groups": {g: {"overall_iou": value} for g in groups}}}
            for arm, value in hard.items()
        },
    }


def write(folder: Path, results: dict) -> None:
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps(results))


@pytest.fixture
def finished(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Two seeds of the main runs and one sweep point, all finished; training would fail the test."""
    base = ExperimentSettings(max_train_steps=STEPS)
    for seed, shift in ((0, 0.0), (1, 0.02)):
        write(tmp_path / f"seed{seed}",
              fake_results(base.replace(seed=seed), {"none": 0.60 + shift, "random": 0.62 + shift, "nemo": 0.65 + shift}, 0.38))
        write(tmp_path / "tau_own=0.0" / f"seed{seed}",
              fake_results(base.replace(seed=seed, arms=("nemo",), tau_own=0.0), {"nemo": 0.70 + shift}, 0.30))

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(bench, "run_experiment", no_training)
    return tmp_path


def test_finished_runs_are_summarised_and_the_sweep_drawn(finished: Path, capsys) -> None:
    bench.main(["--out", str(finished), "--steps", str(STEPS), "--seeds", "0", "1", "--sweep", "tau_own=0.0"])
    printed = capsys.readouterr().out
    assert "hard stratum nemo − random: +0.0300 oIoU" in printed
    summary = json.loads((finished / "summary.json").read_text())
    assert summary["summary"]["nemo"]["distractors>=2"] == pytest.approx([0.66, 0.0141421], abs=1e-6)
    (point,) = summary["sweep"]["tau_own"]
    assert point["value"] == 0.0 and point["hard_oiou"] == pytest.approx([0.71, 0.0141421], abs=1e-6)
    assert point["chosen_text_median"] == pytest.approx(0.30)
    assert point["seeds"] == [0, 1] and point["gap_vs_default"] == pytest.approx([0.05, 0.0], abs=1e-6)
    with Image.open(finished / "sweep.png") as picture:
        assert picture.width > 600


def test_runs_saved_before_a_setting_existed_are_reused(finished: Path) -> None:
    """A run saved with NeMo's knobs at the top level and without ``tau_own`` (added later, off by default) or
    ``max_train_samples`` is the same run."""
    saved = json.loads((finished / "seed0" / "results.json").read_text())
    nemo = saved["settings"].pop("nemo")
    saved["settings"].update({k: nemo[k] for k in ("mosaic_prob", "top_k", "tau_image", "tau_text")})
    del saved["settings"]["max_train_samples"]
    (finished / "seed0" / "results.json").write_text(json.dumps(saved))
    settings = ExperimentSettings(max_train_steps=STEPS, seed=0)
    assert bench.run_or_reuse(finished / "seed0", settings)["arms"]["nemo"]["metrics"]["overall_iou"] == 0.64
    with pytest.raises(AssertionError, match="trained again"):  # other settings: not the same run
        bench.run_or_reuse(finished / "seed0", settings.replace(tau_own=0.0))


def test_sweep_specs_are_parsed_and_checked() -> None:
    assert bench.parse_sweep(["tau_image=none,0.8", "top_k=5"]) == {"tau_image": (None, 0.8), "top_k": (5,)}
    with pytest.raises(SystemExit, match="KNOB=V1,V2"):
        bench.parse_sweep(["mosaic_size=3"])


def test_finished_only_summarises_what_is_there_and_trains_nothing(finished: Path, capsys) -> None:
    """Seed 2 and the top_k point were never run: they are left out, not trained."""
    bench.main(["--out", str(finished), "--steps", str(STEPS), "--seeds", "0", "1", "2", "--finished-only",
                "--sweep", "tau_own=0.0", "top_k=5"])
    summary = json.loads((finished / "summary.json").read_text())
    assert summary["summary"]["none"]["all"] == pytest.approx([0.60, 0.0141421], abs=1e-6)
    assert list(summary["sweep"]) == ["tau_own"] and summary["sweep"]["tau_own"][0]["seeds"] == [0, 1]
