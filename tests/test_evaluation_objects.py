"""Object accuracy through the collator, evaluate_referring (1 and 2 processes) and the evaluate module."""

from __future__ import annotations

import socket
from pathlib import Path

import evaluate
import numpy as np
import pytest
import torch
from accelerate import Accelerator, debug_launcher
from accelerate.state import AcceleratorState, GradientState
from PIL import Image
from pycocotools import mask as mask_utils
from torch import nn
from torch.utils.data import DataLoader

from nemo_hf.metrics import (
    ObjectMetrics,
    RISMetrics,
    evaluate_module_path,
    group_labels,
    instance_roles,
    logits_to_masks,
)
from nemo_hf.modeling import RISCollator, evaluate_referring
from nemo_hf.modeling.interface import ReferringSegmenterOutput
from tests.tiny_clipseg import tiny_clipseg

torch.set_num_threads(1)

HEIGHT, WIDTH = 30, 80
# three objects side by side: 1 and 2 of category 5, 3 of category 9; strips of pixels between them
OBJECTS = {1: (5, slice(2, 24)), 2: (5, slice(29, 51)), 3: (9, slice(56, 78))}


@pytest.fixture(autouse=True)
def _fresh_accelerate_state():
    yield
    AcceleratorState._reset_state(True)
    GradientState._reset_state()


class RedSegmenter(nn.Module):
    """Predicts the red pixels of the image: a model whose choice of object the test decides."""

    def forward(self, pixel_values, input_ids=None, attention_mask=None, labels=None):
        return ReferringSegmenterOutput(logits=8.0 * pixel_values[:, 0])


def _mask(columns: slice) -> np.ndarray:
    mask = np.zeros((HEIGHT, WIDTH), dtype=bool)
    mask[:, columns] = True
    return mask


def _rle(mask: np.ndarray) -> str:
    return mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))["counts"].decode()


INSTANCES = [{"ann_id": a, "category_id": c, "rle": _rle(_mask(cols))} for a, (c, cols) in OBJECTS.items()]


def _row(target: int, painted: int | None, **extra) -> dict:
    """A row referring to object ``target`` whose image is red on object ``painted`` (None: nowhere)."""
    pixels = np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8)
    if painted is not None:
        pixels[:, OBJECTS[painted][1], 0] = 255
    return {"image": Image.fromarray(pixels), "mask": Image.fromarray(_mask(OBJECTS[target][1])),
            "sentence": "the thing", "distractors": 1 if target in (1, 2) else 0, "ann_id": target,
            "instances": INSTANCES, **extra}


# (target, painted) → target, same_category, other_object, none; seven rows, an odd number
ROWS_SPEC = [(1, 1), (1, 2), (2, 3), (3, None), (3, 3), (2, 1), (1, 3)]
EXPECTED_OUTCOMES = ["target", "same_category", "other_object", "none", "target", "same_category", "other_object"]


def _rows() -> list[dict]:
    return [_row(t, p) for t, p in ROWS_SPEC]


def _processor():
    return tiny_clipseg(seed=0)[1]


def test_collator_adds_instance_masks_and_roles_only_when_rows_have_them():
    collate = RISCollator(_processor(), with_targets=True)
    batch = collate([_row(2, 2), _row(3, None) | {"instances": None}])
    first = batch["instance_masks"][0]
    assert first.dtype == torch.bool and tuple(first.shape) == (3, HEIGHT, WIDTH)
    for mask, entry in zip(first, INSTANCES):
        decoded = mask_utils.decode({"size": [HEIGHT, WIDTH], "counts": entry["rle"]}).astype(bool)
        np.testing.assert_array_equal(mask.numpy(), decoded)
    assert batch["instance_roles"][0].tolist() == [1, 0, 2]  # object 2 is the target, 1 shares its category
    assert batch["instance_masks"][1] is None and batch["instance_roles"][1] is None
    plain = collate([{k: v for k, v in _row(1, 1).items() if k != "instances"}])
    assert "instance_masks" not in plain and "instance_roles" not in plain
    assert "instance_masks" not in RISCollator(_processor())([_row(1, 1)])  # training batches: nothing decoded


def test_collator_takes_grefcoco_targets_and_refuses_instances_of_another_size():
    collate = RISCollator(_processor(), with_targets=True)
    multi = _row(1, 1, ann_ids=[1, 3])
    assert collate([multi])["instance_roles"][0].tolist() == [0, 1, 0]
    mosaic_like = _row(1, 1) | {"mask": Image.new("1", (40, 40))}
    with pytest.raises(ValueError, match=r"do not fit its 40x40 mask .*\(a mosaic\)"):
        collate([mosaic_like])
    with pytest.raises(KeyError, match="needs its target's 'ann_id'"):
        collate([{k: v for k, v in _row(1, 1).items() if k != "ann_id"}])


def test_evaluate_referring_reports_the_designed_outcomes():
    rows = _rows()
    collate = RISCollator(_processor(), with_targets=True)
    # a row whose instances are null is left out of object accuracy, and only it
    unscored = _row(3, 1) | {"instances": None}
    result = evaluate_referring(RedSegmenter(), DataLoader(rows[:1] + [unscored] + rows[1:], batch_size=3,
                                                           collate_fn=collate), Accelerator(cpu=True))
    assert result["count"] == 8
    objects = result["objects"]
    assert objects["count"] == 7 and objects["no_target_count"] == 0
    shares = {name: EXPECTED_OUTCOMES.count(name) / 7 for name in objects["outcomes"]}
    assert objects["outcomes"] == pytest.approx(shares, abs=0)
    assert objects["object_accuracy"] == 2 / 7 and objects["wrong_object_rate"] == 4 / 7
    # an independent route: predictions of the same model, then ObjectMetrics on the masks
    batch = collate(rows)
    predictions = logits_to_masks(RedSegmenter()(batch["pixel_values"]).logits, [(HEIGHT, WIDTH)] * 7)
    expected = ObjectMetrics()
    expected.update(predictions, batch["instance_masks"], batch["instance_roles"],
                    groups=[group_labels(r["distractors"], int(np.asarray(r["mask"]).sum())) for r in rows])
    assert objects == expected.compute()
    assert set(objects["groups"]) == set(result["groups"]) == {"distractors=0", "distractors=1", "size=small"}
    # without the column, no object accuracy
    plain = [{k: v for k, v in row.items() if k != "instances"} for row in rows]
    assert "objects" not in evaluate_referring(RedSegmenter(), DataLoader(plain, batch_size=3, collate_fn=collate),
                                               Accelerator(cpu=True))


def _evaluate_in_each_process(rows, expected, marker_dir):
    AcceleratorState._reset_state(reset_partial_state=True)  # forked children inherit the parent's singleton
    accelerator = Accelerator(cpu=True)
    assert accelerator.num_processes == 2
    # 7 rows, batches of 2 per process: the last step pads with repeated rows
    loader = accelerator.prepare(DataLoader(rows, batch_size=2, collate_fn=RISCollator(_processor(), with_targets=True)))
    result = evaluate_referring(RedSegmenter(), loader, accelerator)
    assert result["objects"]["count"] == len(rows)
    assert result == expected
    Path(marker_dir, f"evaluated-{accelerator.process_index}").touch()


def test_two_processes_give_the_one_process_numbers_despite_padding(tmp_path):
    rows = _rows()
    expected = evaluate_referring(RedSegmenter(), DataLoader(rows, batch_size=2, collate_fn=RISCollator(
        _processor(), with_targets=True)), Accelerator(cpu=True))
    AcceleratorState._reset_state(True)
    debug_launcher(_evaluate_in_each_process, args=(rows, expected, str(tmp_path)), num_processes=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evaluated-0", "evaluated-1"]


def _records_in_each_process(codes, groups, expected, marker_dir):
    AcceleratorState._reset_state(reset_partial_state=True)
    accelerator = Accelerator(cpu=True)
    mine = range(accelerator.process_index, len(codes), 2)  # interleaved shares, uneven sizes
    metrics = ObjectMetrics()
    metrics.update_outcomes([codes[i] for i in mine], [groups[i] for i in mine])
    assert metrics.compute(accelerator) == expected
    assert metrics.compute() == expected  # through torch.distributed
    # the gather_for_metrics route: padding duplicates dropped before update
    loader = accelerator.prepare(DataLoader(list(range(len(codes))), batch_size=2))
    gathered = ObjectMetrics(sync_processes=False)
    for indices in loader:
        indices = accelerator.gather_for_metrics(indices)
        gathered.update_outcomes([codes[i] for i in indices], [groups[i] for i in indices])
    assert gathered.compute() == expected
    Path(marker_dir, f"records-{accelerator.process_index}").touch()


def test_object_metrics_records_are_exact_across_processes(tmp_path):
    rng = np.random.default_rng(0)
    codes = rng.integers(-1, 4, size=9).tolist()
    groups = [[f"distractors={i % 3}"] for i in range(9)]
    one = ObjectMetrics()
    one.update_outcomes(codes, groups)
    expected = one.compute()
    debug_launcher(_records_in_each_process, args=(codes, groups, expected, str(tmp_path)), num_processes=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["records-0", "records-1"]


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network access during an offline test")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


def test_evaluate_module_objects_configurations(no_network):
    rows = _rows()
    masks = [np.stack([_mask(cols) for _, cols in OBJECTS.values()])] * len(rows)
    roles = [instance_roles(list(OBJECTS), [c for c, _ in OBJECTS.values()], [t]) for t, _ in ROWS_SPEC]
    preds = [_mask(OBJECTS[p][1]) if p else np.zeros((HEIGHT, WIDTH), bool) for _, p in ROWS_SPEC]
    preds[0] = np.zeros((0, 0), bool)  # and a degenerate sentence: a 0x0 image with no objects
    preds[6] = _mask(slice(56, 63))  # a third of object 3: below min_iou, so "none"
    masks[0], roles[0] = np.zeros((0, 0, 0), bool), []
    gts = [_mask(OBJECTS[t][1]) for t, _ in ROWS_SPEC]
    gts[0] = np.zeros((0, 0), bool)
    groups = [["distractors=1"] if t < 3 else ["distractors=0"] for t, _ in ROWS_SPEC]
    expected_ris, expected_objects = RISMetrics(), ObjectMetrics(min_iou=0.5)
    expected_ris.update(preds, gts, groups)
    expected_objects.update(preds, masks, roles, groups)
    metric = evaluate.load(str(evaluate_module_path()), "objects_grouped")
    result = metric.compute(predictions=preds, references=gts, instance_masks=masks, instance_roles=roles,
                            groups=groups, min_iou=0.5)
    assert result == expected_ris.compute() | {"objects": expected_objects.compute()}
    assert result["objects"]["no_target_count"] == 1 and result["objects"]["count"] == 6
    assert result["objects"]["outcomes"]["none"] == 2 / 6
    plain = evaluate.load(str(evaluate_module_path()), "objects")
    plain.add_batch(predictions=preds[1:], references=gts[1:], instance_masks=masks[1:], instance_roles=roles[1:])
    assert plain.compute()["objects"]["outcomes"]["target"] == 1 / 6


@pytest.mark.parametrize("name", ["refcoco_unc", "grefcoco_unc"])
def test_built_rows_an_oracle_chooses_the_target_and_a_distractor_copy_is_wrong(refer_tree, tmp_path, name):
    """The builder's column, per_sentence and the collator together: roles from real rows."""
    from nemo_hf import load_refcoco, per_sentence

    rows = list(per_sentence(load_refcoco(name, refer_tree.root, refer_tree.image_dir, split="val",
                                          cache_dir=tmp_path)))
    batch = RISCollator(_processor(), with_targets=True)(rows)
    oracle = ObjectMetrics()
    oracle.update(batch["target_masks"], batch["instance_masks"], batch["instance_roles"])
    result = oracle.compute()
    no_target = sum(1 for row in rows if row["ann_id"] < 0)
    assert (result["count"], result["no_target_count"]) == (len(rows) - no_target, no_target)
    assert result["object_accuracy"] == 1.0
    # each sentence whose image holds a same-category distractor, predicted as that distractor
    picked = [(masks[roles.tolist().index(1)], masks, roles)
              for masks, roles in zip(batch["instance_masks"], batch["instance_roles"]) if 1 in roles.tolist()]
    assert picked
    wrong = ObjectMetrics()
    wrong.update(*zip(*picked))
    assert wrong.compute()["outcomes"]["same_category"] == 1.0


def test_the_referring_strata_come_from_each_sentences_needs():
    """Rows carrying ``needs`` (the synthetic world's) are grouped referring=hard / referring=easy; rows without are in
    neither (real data), and the strata's counts and object accuracy are those of their rows."""
    needs = [["category", "size"], ["category", "colour"], ["category", "position"], ["colour"], None,
             ["category", "relation"], ["category"]]
    rows = [row | {"needs": n} for row, n in zip(_rows(), needs)]
    collate = RISCollator(_processor(), with_targets=True)
    assert collate(rows[:3])["referring_hard"].tolist() == [1, 0, 1]
    assert collate([{k: v for k, v in rows[0].items() if k != "needs"}])["referring_hard"].tolist() == [-1]
    result = evaluate_referring(RedSegmenter(), DataLoader(rows, batch_size=3, collate_fn=collate),
                                Accelerator(cpu=True))
    groups = result["objects"]["groups"]
    hard = [i for i, n in enumerate(needs) if n is not None and not set(n) <= {"category", "colour"}]
    assert groups["referring=hard"]["count"] == len(hard) == 3
    assert groups["referring=easy"]["count"] == 4  # None needs: the rest, as the strata are defined
    expected = sum(EXPECTED_OUTCOMES[i] == "target" for i in hard) / len(hard)
    assert groups["referring=hard"]["object_accuracy"] == expected
    assert result["groups"]["referring=hard"]["count"] == 3  # the RIS metrics carry the strata too
    plain = evaluate_referring(RedSegmenter(), DataLoader(_rows(), batch_size=3, collate_fn=collate),
                               Accelerator(cpu=True))
    assert not any(g.startswith("referring=") for g in plain["groups"])
