"""benchmarks/nemo_effect.py: finished seeds are read back (never retrained), summarised, and judged by the criteria.

The runs are written by hand with known per-sentence outcomes, so every figure the summary
prints can be checked against arithmetic done here.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks import nemo_effect as bench
from nemo_hf.experiment.evaluation import SentenceScores, metrics_of

ARMS = ("none", "random", "oracle")
N = 400  # sentences per seed: the first 300 referring-hard


def _scores(correct_hard: int, correct_easy: int) -> SentenceScores:
    hard = np.arange(N) < 300
    outcome = np.ones(N, dtype=int)  # same_category unless correct
    outcome[:correct_hard] = 0
    outcome[300 : 300 + correct_easy] = 0
    inter = np.where(outcome == 0, 8, 1)
    return SentenceScores(inter, np.full(N, 10), outcome, hard, np.full(N, 2), np.full(N, 50))


def _write_seed(folder: Path, accuracy: dict[str, tuple[int, int]], curve_move: float = 0.0,
                moving: tuple[str, ...] = ARMS, settings: dict | None = None) -> None:
    results = {"arms": {}, "audits": {}, "comparisons": {}, "world": {"train_sentences": 123}}
    if settings is not None:
        results["settings"] = {"seed": 0, "arms": list(accuracy), **settings}
    scores = {arm: _scores(*accuracy[arm]) for arm in accuracy}
    for arm, arm_scores in scores.items():
        (folder / "arms" / arm).mkdir(parents=True)
        arm_scores.save(folder / "arms" / arm / "scores.npz")
        move = curve_move if arm in moving else 0.0
        curve = [{"step": step, "referring_hard_object_accuracy": 0.5 + (move if step > 75 else 0.0)}
                 for step in (25, 50, 60, 70, 80, 90, 100)]
        results["arms"][arm] = {"metrics": metrics_of(arm_scores), "learning_curve": curve, "train_seconds": 1.0}
        results["audits"][arm] = {"median_target_px": 12.0, "targets_below_one_patch": 0.1}
    from nemo_hf.experiment.run import compare

    for base in ("random", "none"):
        for arm in scores:
            if arm != base and base in scores:
                results["comparisons"][f"{arm} − {base}"] = compare(scores[arm], scores[base])
    (folder / "results.json").write_text(json.dumps(results))


@pytest.fixture
def no_training(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args, **kwargs):
        raise AssertionError("a finished seed was trained again")

    monkeypatch.setattr(bench, "run_experiment", fail)


def _main(out: Path, *extra: str) -> dict:
    return bench.main(["--out", str(out), "--seeds", "0", "1", "--arms", *ARMS, "--steps", "100", *extra])


def test_a_clear_gain_in_every_seed_is_confirmed(tmp_path: Path, no_training) -> None:
    # oracle 240/300 hard correct, random 200, none 195; easy: 90/100 everywhere
    for seed in (0, 1):
        _write_seed(tmp_path / f"seed{seed}", {"oracle": (240, 90), "random": (200, 90), "none": (195, 90)})
    summary = _main(tmp_path)
    assert summary["arms"]["oracle"]["referring_hard"] == pytest.approx([0.8, 0.0])
    assert summary["comparisons"]["oracle − random"]["hard"]["value"] == pytest.approx(40 / 300)
    assert summary["verdict"]["verdict"] == "confirmed"
    assert all(c["converged"] for c in summary["convergence"].values())
    assert json.loads((tmp_path / "summary.json").read_text())["verdict"]["verdict"] == "confirmed"


def test_no_gain_with_a_tight_interval_is_refuted(tmp_path: Path, no_training) -> None:
    for seed in (0, 1):
        _write_seed(tmp_path / f"seed{seed}", {"oracle": (200, 90), "random": (200, 90), "none": (200, 90)})
    assert _main(tmp_path)["verdict"]["verdict"] == "refuted"


def test_a_gain_in_one_seed_only_is_inconclusive_and_an_easy_loss_blocks_confirmation(tmp_path: Path,
                                                                                       no_training) -> None:
    _write_seed(tmp_path / "seed0", {"oracle": (240, 90), "random": (200, 90), "none": (195, 90)})
    _write_seed(tmp_path / "seed1", {"oracle": (203, 90), "random": (200, 90), "none": (195, 90)})
    assert _main(tmp_path)["verdict"]["verdict"] == "inconclusive: add seeds"
    for seed in (0, 1):  # a clear hard gain, but the easy sentences lose 5 points
        _write_seed(tmp_path / "easy_loss" / f"seed{seed}", {"oracle": (240, 85), "random": (200, 90),
                                                              "none": (195, 90)})
    summary = _main(tmp_path / "easy_loss")
    assert summary["verdict"]["checks"]["easy: oracle − none ≥ −1.0 point (mean)"] is False
    assert summary["verdict"]["verdict"] == "inconclusive: add seeds"


def test_a_curve_still_moving_is_not_converged(tmp_path: Path, no_training) -> None:
    for seed in (0, 1):
        _write_seed(tmp_path / f"seed{seed}", {"oracle": (240, 90), "random": (200, 90), "none": (195, 90)},
                    curve_move=0.03)
    summary = _main(tmp_path)
    assert [c["converged"] for c in summary["convergence"].values()] == [False, False]
    assert summary["convergence"][0]["move"] == pytest.approx(0.03)
    # a clear gain, but the rule says train longer first: no verdict, and the differences are still there
    assert summary["verdict"]["verdict"].startswith("not judged: seed(s) [0, 1] fail the convergence rule")
    assert summary["comparisons"]["oracle − random"]["hard"]["value"] == pytest.approx(40 / 300)


def test_a_mosaic_arm_still_moving_withholds_the_verdict_though_the_none_arm_has_settled(
        tmp_path: Path, no_training, capsys: pytest.CaptureFixture[str]) -> None:
    for seed in (0, 1):
        _write_seed(tmp_path / f"seed{seed}", {"oracle": (240, 90), "random": (200, 90), "none": (195, 90)},
                    curve_move=0.03, moving=("random",))
    summary = _main(tmp_path)
    tests = summary["convergence"][0]["arms"]
    assert (tests["none"]["converged"], tests["random"]["converged"], tests["oracle"]["converged"]) == (
        True, False, True)
    assert tests["random"]["move"] == pytest.approx(0.03) and summary["convergence"][0]["move"] == 0.0
    assert summary["verdict"]["verdict"].startswith("not judged: seed(s) [0, 1] fail the convergence rule")
    assert "seed 0: False (none moved 0.0, random moved 0.03, oracle moved 0.0)" in capsys.readouterr().out


def test_finished_only_leaves_out_what_never_ran(tmp_path: Path, no_training) -> None:
    _write_seed(tmp_path / "seed0", {"oracle": (240, 90), "random": (200, 90), "none": (195, 90)})
    summary = bench.main(["--out", str(tmp_path), "--seeds", "0", "1", "2", "--arms", *ARMS, "--steps", "100",
                          "--finished-only"])
    assert summary["seeds"] == [0]


def _finetune(out: Path, *seeds: str) -> dict:
    return bench.main(["--out", str(out), "--seeds", *seeds, "--arms", *ARMS, "--steps", "100", "--finetune-from",
                       str(out / "seed{seed}" / "start")])


def test_the_finetune_study_is_judged_by_its_own_criteria_and_one_seed_is_no_verdict(
        tmp_path: Path, no_training, capsys: pytest.CaptureFixture[str]) -> None:
    for seed in (0, 1, 2):  # oracle +10 points over none and random on hard sentences, easy unchanged
        _write_seed(tmp_path / "helps" / f"seed{seed}", {"oracle": (230, 90), "random": (200, 90), "none": (200, 90)})
    summary = _finetune(tmp_path / "helps", "0", "1", "2")
    assert summary["section"] == bench.FINETUNE_SECTION and summary["criteria"] is bench.FINETUNE_CRITERIA
    assert summary["verdict"]["verdict"] == "NeMo helps as a fine-tune"
    assert all(summary["verdict"]["checks"][name] for name in list(summary["verdict"]["checks"])[::3])
    assert f"## {bench.FINETUNE_SECTION}" in capsys.readouterr().out
    # one seed: the same outcome, labelled as that seed's result
    assert _finetune(tmp_path / "helps", "0")["verdict"]["verdict"] == (
        "NeMo helps as a fine-tune (1 seed(s) of the three a verdict needs: a result of this seed, not a verdict)")
    two_seeds = _finetune(tmp_path / "helps", "0", "1")["verdict"]["verdict"]
    assert two_seeds.endswith(": a result of these seeds, not a verdict)")


def test_a_finetune_that_costs_hard_sentences_is_a_harm_and_an_easy_loss_blocks_help(tmp_path: Path,
                                                                                    no_training) -> None:
    for seed in (0, 1, 2):
        _write_seed(tmp_path / "harms" / f"seed{seed}", {"oracle": (170, 90), "random": (170, 90), "none": (200, 90)})
        _write_seed(tmp_path / "easy" / f"seed{seed}", {"oracle": (230, 80), "random": (200, 90), "none": (200, 90)})
        _write_seed(tmp_path / "same" / f"seed{seed}", {"oracle": (201, 90), "random": (200, 90), "none": (200, 90)})
    harms = _finetune(tmp_path / "harms", "0", "1", "2")["verdict"]
    assert harms["verdict"] == "NeMo harms as a fine-tune"
    assert not harms["checks"]["mining matters: oracle − random ≥ +1.0 point, interval above 0"]
    easy = _finetune(tmp_path / "easy", "0", "1", "2")["verdict"]
    assert easy["verdict"] == "no effect detected at this budget"
    assert easy["checks"]["mining matters: oracle − random ≥ +1.0 point, interval above 0"]
    assert _finetune(tmp_path / "same", "0", "1", "2")["verdict"]["verdict"] == "no effect detected at this budget"


def test_a_finetune_arm_still_moving_gives_no_verdict(tmp_path: Path, no_training) -> None:
    for seed in (0, 1, 2):
        _write_seed(tmp_path / f"seed{seed}", {"oracle": (230, 90), "random": (200, 90), "none": (200, 90)},
                    curve_move=0.03, moving=("oracle",))
    assert _finetune(tmp_path, "0", "1", "2")["verdict"]["verdict"].startswith("not judged: seed(s) [0, 1, 2]")


def test_each_seed_of_the_finetune_study_continues_its_own_checkpoint() -> None:
    settings = bench.seeded(bench.ExperimentSettings(), 1, "runs/seed{seed}/arms/none/final")
    assert (settings.seed, settings.init_from) == (1, "runs/seed1/arms/none/final")
    assert (settings.learning_rate, settings.encoder_learning_rate, settings.nemo.warmup_epochs) == (2e-4, 1e-4, 0)
    assert bench.seeded(bench.ExperimentSettings(), 1, None).init_from is None


def test_a_seed_trained_longer_is_judged_on_its_own_budget(tmp_path: Path, no_training,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    # Seed 1 ran 150 steps: a climb between steps 75 and 100 is its second half settling, which
    # the 100-step quarters (50-75 against 75-100) would call still moving.
    accuracy = {"oracle": (240, 90), "random": (200, 90), "none": (195, 90)}
    _write_seed(tmp_path / "seed0", accuracy)
    _write_seed(tmp_path / "seed1", accuracy, settings={"max_train_steps": 150})
    results = json.loads((tmp_path / "seed1" / "results.json").read_text())
    for arm in ARMS:
        results["arms"][arm]["learning_curve"] = [
            {"step": step, "referring_hard_object_accuracy": 0.5 if step <= 75 else 0.53} for step in range(60, 151, 10)]
    (tmp_path / "seed1" / "results.json").write_text(json.dumps(results))
    summary = _main(tmp_path)
    assert summary["steps"] == {0: 100, 1: 150}
    assert summary["convergence"][1]["converged"] is True and summary["convergence"][1]["move"] == 0.0
    assert "100 (seed 0), 150 (seed 1) steps of" in capsys.readouterr().out
    assert bench.converged(results, 100)["converged"] is True  # the run's own budget wins over the default
    results.pop("settings")
    assert bench.converged(results, 100)["converged"] is False  # without it, 100 steps' quarters see the climb


def test_arms_run_apart_from_the_same_start_merge_into_one_seed(tmp_path: Path, no_training) -> None:
    _write_seed(tmp_path / "kept" / "seed0", {"oracle": (240, 90), "random": (200, 90), "none": (195, 90)},
                settings={"max_train_steps": 100, "init_from": "start"})
    _write_seed(tmp_path / "later" / "seed0", {"noisy-0.5": (220, 88), "noisy-2": (205, 90)},
                settings={"max_train_steps": 100, "init_from": "start"})
    summary = bench.main(["--out", str(tmp_path / "kept"), "--seeds", "0", "--arms", *ARMS, "noisy-0.5", "noisy-2",
                          "--steps", "100", "--finished-only", "--merge-from", str(tmp_path / "later")])
    merged = json.loads((tmp_path / "kept" / "seed0" / "results.json").read_text())
    assert list(merged["arms"]) == ["oracle", "random", "none", "noisy-0.5", "noisy-2"] == merged["settings"]["arms"]
    assert merged["comparisons"]["noisy-0.5 − random"]["referring_hard"]["value"] == pytest.approx(20 / 300)
    assert merged["comparisons"]["noisy-0.5 − none"]["easy"]["value"] == pytest.approx(-2 / 100)
    assert merged["comparisons"]["oracle − random"] == json.loads(json.dumps(
        bench.compare(_scores(240, 90), _scores(200, 90))))  # the kept comparisons are left as they were
    curve = summary["noise_curve"]
    assert curve["seeds"] == [0] and curve["points"] == [(0.0, 0.8), (0.5, pytest.approx(220 / 300)),
                                                         (2.0, pytest.approx(205 / 300))]
    assert curve["levels"] == {"random": pytest.approx(200 / 300), "none": pytest.approx(195 / 300)}
    assert (tmp_path / "kept" / "noise_curve.png").stat().st_size > 0


def test_a_merge_of_another_experiment_or_of_an_arm_already_there_is_refused(tmp_path: Path) -> None:
    settings = {"max_train_steps": 100, "init_from": "start"}
    _write_seed(tmp_path / "kept" / "seed0", {"random": (200, 90), "none": (195, 90)}, settings=settings)
    _write_seed(tmp_path / "other" / "seed0", {"noisy-0.5": (220, 88)}, settings={**settings, "init_from": "else"})
    _write_seed(tmp_path / "again" / "seed0", {"none": (100, 90)}, settings=settings)
    before = (tmp_path / "kept" / "seed0" / "results.json").read_text()
    with pytest.raises(ValueError, match=r"different experiments \(settings differing: \['init_from'\]"):
        bench.merge_arms(tmp_path / "kept" / "seed0", tmp_path / "other" / "seed0")
    with pytest.raises(ValueError, match=r"both hold arm\(s\) \['none'\]"):
        bench.merge_arms(tmp_path / "kept" / "seed0", tmp_path / "again" / "seed0")
    assert (tmp_path / "kept" / "seed0" / "results.json").read_text() == before


def test_the_noise_curve_is_drawn_over_the_seeds_that_ran_it_only() -> None:
    def run(oracle: float, noisy: float | None = None) -> dict:
        arms = {"oracle": oracle, "random": 0.6, "none": 0.5, **({"noisy-1": noisy} if noisy is not None else {})}
        return {"arms": {arm: {"metrics": {"objects": {"groups": {"referring=hard": {"object_accuracy": value}}}}}
                         for arm, value in arms.items()}}

    curve = bench.noise_curve({0: run(0.9), 1: run(0.7, noisy=0.65)})
    assert curve == {"seeds": [1], "points": [(0.0, 0.7), (1.0, 0.65)], "levels": {"random": 0.6, "none": 0.5}}
    assert bench.noise_curve({0: run(0.9)}) is None


def test_a_start_given_as_a_shipped_name_merges_with_runs_that_recorded_its_folder(tmp_path: Path) -> None:
    folder = {"max_train_steps": 100, "init_from": "/another/machine/nemo_hf/pretrained/synthetic-segmenter"}
    _write_seed(tmp_path / "kept" / "seed0", {"random": (200, 90), "none": (195, 90)}, settings=folder)
    _write_seed(tmp_path / "later" / "seed0", {"nemo": (210, 90)},
                settings={**folder, "init_from": "nemo-hf/synthetic-segmenter"})
    _write_seed(tmp_path / "other" / "seed0", {"oracle": (210, 90)},
                settings={**folder, "init_from": "/x/nemo_hf/pretrained/synthetic-clip-v1"})
    merged = bench.merge_arms(tmp_path / "kept" / "seed0", tmp_path / "later" / "seed0")
    assert list(merged["arms"]) == ["random", "none", "nemo"]
    with pytest.raises(ValueError, match=r"settings differing: \['init_from'\]"):  # another shipped model
        bench.merge_arms(tmp_path / "kept" / "seed0", tmp_path / "other" / "seed0")
