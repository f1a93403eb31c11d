"""The mosaic check: mosaics of the evaluation world drawn as the arms train, and scored by which cell and object.

- scoring: the target's own mask scores IoU 1 in the right cell; the same mask carried into
  another cell scores 0 in the wrong one; an empty prediction is never "right";
- drawing: every evaluation sentence becomes one mosaic whose target lies inside the cell the
  row names (the even layout the scoring reads), and the oracle's mosaics hold no object the
  expression fits (audited against the ground truth);
- the benchmark scores every finished arm of a run on both kinds of mosaics.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks import nemo_mosaic_check as bench
from nemo_hf.experiment import PRIMARY, ExperimentSettings, run_experiment
from nemo_hf.experiment.mosaic_check import draw_mosaics, score_predictions, summarise
from nemo_hf.experiment.world import load_world
from nemo_hf.modeling.inputs import target_mask
from nemo_hf.mosaic.layout import grid_layout
from nemo_hf.nemo.audit import GroundTruth, audit_mosaics


@settings(max_examples=60, deadline=None)
@given(grid=st.sampled_from([2, 3]), cell_side=st.integers(4, 12), data=st.data())
def test_a_mask_scores_by_the_cell_it_lies_in(grid: int, cell_side: int, data: st.DataObject) -> None:
    size = grid * cell_side
    boxes = grid_layout(grid, size)
    cell, other = data.draw(st.lists(st.integers(0, grid * grid - 1), min_size=2, max_size=2, unique=True))
    h, w = data.draw(st.integers(1, cell_side)), data.draw(st.integers(1, cell_side))
    y, x = data.draw(st.integers(0, cell_side - h)), data.draw(st.integers(0, cell_side - w))

    def placed(index: int) -> np.ndarray:
        mask = np.zeros((size, size), bool)
        box = boxes[index]
        mask[box.top + y:box.top + y + h, box.left + x:box.left + x + w] = True
        return mask

    truth = placed(cell)
    predictions = [truth.copy(), placed(other), np.zeros_like(truth)]
    scores = score_predictions(predictions, [truth] * 3, target_cells=[cell] * 3, referring_hard=[True] * 3, grid=grid)
    assert scores.right_cell.tolist() == [True, False, False]
    assert scores.intersection.tolist() == [h * w, 0, 0]
    assert scores.union.tolist() == [h * w, 2 * h * w, h * w]


def test_the_summary_splits_the_strata() -> None:
    truth = np.zeros((4, 8, 8), bool)
    truth[:, :2, :2] = True  # cell 0 of a 2x2 grid
    predicted = truth.copy()
    predicted[1] = False  # empty: wrong
    predicted[3] = np.roll(truth[3], 4, axis=1)  # cell 1: wrong cell, IoU 0
    scores = score_predictions(predicted, truth, target_cells=[0] * 4, referring_hard=[True, True, False, False],
                               grid=2)
    summary = summarise(scores)
    assert summary["referring_hard"] == {"sentences": 2, "right_cell": 0.5, "precision@0.5": 0.5,
                                         "overall_iou": 4 / 8}
    assert summary["easy"] == {"sentences": 2, "right_cell": 0.5, "precision@0.5": 0.5, "overall_iou": 4 / 12}
    assert summary["all"]["sentences"] == 4
    with pytest.raises(ValueError, match="same square"):
        score_predictions([np.zeros((8, 6), bool)], [np.zeros((8, 6), bool)], target_cells=[0], referring_hard=[True],
                          grid=2)


@pytest.fixture(scope="module")
def quick_world(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("mosaic-check")
    settings = ExperimentSettings().quick()
    return out, settings, load_world(out, settings, quiet=True)


@pytest.mark.parametrize("negatives", ["random", "oracle"])
def test_every_evaluation_sentence_becomes_one_mosaic_with_its_target_in_its_cell(quick_world, negatives) -> None:
    out, settings, world = quick_world
    mosaics = draw_mosaics(world, settings, out, negatives)
    assert sorted(mosaics["sent_id"]) == sorted(world.evaluation["sent_id"])
    assert set(mosaics["mosaic_kind"]) == {"random" if negatives == "random" else "mined"}
    boxes = grid_layout(settings.nemo.grid, settings.input_size)
    for row in mosaics:
        mask = target_mask(row["mask"])
        assert row["image"].size == (settings.input_size, settings.input_size) and mask.any()
        box = boxes[row["target_cell"]]
        assert mask[box.top:box.bottom, box.left:box.right].sum() == mask.sum()  # all of the target in its cell
    if negatives == "oracle":
        built = [world.evaluation]  # the truth of the evaluation world: its sentences, scenes and targets
        audit = audit_mosaics(mosaics, GroundTruth.from_datasets(*built), size=settings.input_size)
        assert audit.mosaics == len(mosaics) and audit.false_negative == 0


def test_with_an_unknown_kind_of_negatives_it_says_which_exist(quick_world) -> None:
    out, settings, world = quick_world
    with pytest.raises(ValueError, match="random"):
        draw_mosaics(world, settings, out, "clip")


@pytest.mark.slow
def test_the_benchmark_scores_every_finished_arm_on_both_kinds_and_reads_a_check_back(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = ExperimentSettings(arms=("none", "random")).quick()
    results = run_experiment(tmp_path, settings, pictures=False, quick=True)
    [checked] = bench.main(["--run", str(tmp_path), "--no-write"])
    sentences = results["world"]["eval_sentences"]
    assert list(checked["arms"]) == ["none", "random"]
    for arm, entry in checked["arms"].items():
        plain = results["arms"][arm]["metrics"]["objects"]["groups"].get(PRIMARY, {})
        assert entry["plain_referring_hard_object_accuracy"] == plain.get("object_accuracy")
        for kind in ("random", "oracle"):
            assert entry[kind]["all"]["sentences"] == sentences
            assert 0.0 <= entry[kind]["all"]["right_cell"] <= 1.0
    section = bench.render([checked, checked], "test")
    assert section.startswith(f"## {bench.SECTION}\n")  # write_section replaces the whole section, heading included
    rows = [line.split(" | ")[:3] for line in section.splitlines() if line.startswith("| seed")]
    assert rows == 2 * [["| seed 0, from scratch, 5 steps", arm, kind] for arm in ("none", "random")
                        for kind in ("random", "oracle")]

    def fail(*args, **kwargs):
        raise AssertionError("a run checked before was scored again")

    monkeypatch.setattr(bench, "score_model", fail)
    assert bench.check(tmp_path) == checked  # read back from mosaic_check.json
    model = tmp_path / "arms" / "random" / "final" / "model.safetensors"
    later = (tmp_path / "mosaic_check.json").stat().st_mtime + 10
    os.utime(model, (later, later))  # a retrained arm is checked again
    with pytest.raises(AssertionError, match="scored again"):
        bench.check(tmp_path)
