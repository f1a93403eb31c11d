"""One evaluation for every architecture: eval_ris.py on a published-layout CLIPSeg, a CRIS and a Florence-2.

Each tiny model (random weights, saved to a folder) goes through ``training/eval_ris.py``'s
code on a small synthetic RefCOCO; its numbers must be what ``RISMetrics`` and
``ObjectMetrics`` give on the masks ``predict_masks`` makes of the same rows, and it writes
the tables and the ``model-index`` block a card takes. The papers' protocols are checked the
same way, through the logits.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from nemo_hf.metrics import ObjectMetrics, RISMetrics
from nemo_hf.metrics.objects import object_outcomes
from nemo_hf.metrics.protocol import group_labels
from nemo_hf.metrics.protocols import protocol as protocol_named
from nemo_hf.modeling import RISCollator, load_referring_segmenter, predict_masks
from nemo_hf.modeling.inputs import instance_targets, target_mask
from nemo_hf.modeling.pipeline import pipeline
from nemo_hf.trainer import segmenter_evaluation as eval_ris
from nemo_hf.trainer.args import DataArguments
from nemo_hf.trainer.data import as_sentences, load_splits
from tests.training_runs import reset_accelerate

torch.set_num_threads(1)

SENTENCES = 9


@pytest.fixture(scope="module")
def data_cache(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("eval_data"))


def _rows(cache: str):
    data = DataArguments(dataset_name="refcoco_unc", synthetic_images=24, cache_dir=cache, eval_splits=["val"])
    return as_sentences(load_splits(data, ["val"])["val"], SENTENCES)


def _evaluate(model_dir, out, cache: str, *extra: str) -> dict:
    reset_accelerate()
    return eval_ris.main(["--model_name_or_path", str(model_dir), "--dataset_name", "refcoco_unc", "--synthetic_images",
                          "24", "--cache_dir", cache, "--eval_splits", "val", "--max_eval_samples", str(SENTENCES),
                          "--eval_batch_size", "4", "--output_dir", str(out), "--num_sample_predictions", "2", *extra])


def _expected(masks: list[np.ndarray], rows) -> tuple[dict, dict]:
    """RISMetrics and ObjectMetrics of ``masks`` against ``rows``, grouped as evaluation groups them."""
    metrics, objects = RISMetrics(), ObjectMetrics()
    for mask, row in zip(masks, rows):
        truth = target_mask(row["mask"])
        groups = [group_labels(distractors=row["distractors"], mask_area=int(truth.sum()),
                               referring_hard=None)]
        if row.get("needs") is not None:
            from nemo_hf.data.meaning import referring_hard

            groups = [group_labels(distractors=row["distractors"], mask_area=int(truth.sum()),
                                   referring_hard=referring_hard(row["needs"]))]
        metrics.update([torch.from_numpy(mask)], [torch.from_numpy(truth)], groups=groups)
        instances, roles = instance_targets(row, truth.shape)
        objects.update_outcomes(object_outcomes([torch.from_numpy(mask)], [instances], [roles]), groups=groups)
    return metrics.compute(), objects.compute()


@pytest.mark.parametrize("architecture", ["published_clipseg", "cris", "florence2"])
def test_eval_ris_scores_any_architecture_as_rismetrics_scores_its_masks(architecture, request, tmp_path,
                                                                         data_cache) -> None:
    model_dir = request.getfixturevalue({"published_clipseg": "published_clipseg_dir", "cris": "tiny_cris_dir",
                                         "florence2": "tiny_florence2_dir"}[architecture])
    results = _evaluate(model_dir, tmp_path / "eval", data_cache)
    rows = _rows(data_cache)
    model, processor = load_referring_segmenter(model_dir)
    masks = predict_masks(model, processor, list(rows["image"]), list(rows["sentence"]))
    for mask, image in zip(masks, rows["image"]):
        assert mask.shape == (image.height, image.width)
    expected, expected_objects = _expected(masks, rows)
    got = results["eval"]["val"]
    assert {k: v for k, v in got.items() if k not in ("loss", "objects")} == expected
    assert got["objects"] == expected_objects
    assert ("loss" in got) == (architecture != "florence2")  # a generated answer has no per-pixel loss

    written = json.loads((tmp_path / "eval" / "eval_results.json").read_text())
    assert written["protocol"]["name"] == "nemo_hf" and written["eval"]["val"]["count"] == len(rows) == SENTENCES
    index = yaml.safe_load((tmp_path / "eval" / "model_index.yaml").read_text())["model-index"][0]
    metrics = {m["type"]: m for m in index["results"][0]["metrics"]}
    assert metrics["overall_iou"]["value"] == pytest.approx(expected["overall_iou"])
    assert metrics["overall_iou"]["name"].startswith("oIoU (overall IoU")
    assert metrics["object_accuracy"]["value"] == pytest.approx(expected_objects["object_accuracy"])
    assert index["results"][0]["dataset"]["split"] == "val" and metrics["mean_iou"]["config"] == "nemo_hf"
    tables = (tmp_path / "eval" / "eval_results.md").read_text()
    assert "| group | expressions | oIoU | mIoU | Prec@0.5 |" in tables and "wrong-object rate" in tables
    assert Image.open(tmp_path / "eval" / "predictions_val.png").size[0] == 3 * 256


@pytest.mark.parametrize("name", ["cris", "lavt"])
def test_a_papers_protocol_scores_the_logits_as_its_code_does(name, tiny_clipseg_dir, tmp_path, data_cache) -> None:
    protocol = protocol_named(name)
    results = _evaluate(tiny_clipseg_dir, tmp_path / name, data_cache, "--protocol", name)
    rows = _rows(data_cache)
    model, processor = load_referring_segmenter(tiny_clipseg_dir)
    batch = RISCollator(processor, with_targets=True)(list(rows))
    with torch.no_grad():
        logits = model(pixel_values=batch["pixel_values"], input_ids=batch["input_ids"],
                       attention_mask=batch["attention_mask"]).logits
    sizes = [tuple(mask.shape) for mask in batch["target_masks"]]
    predictions = protocol.prediction_masks(logits, sizes, input_size=batch["pixel_values"].shape[-2:])
    metrics = RISMetrics(rules=protocol.iou)
    metrics.update(predictions, [protocol.target(mask) for mask in batch["target_masks"]])
    expected = metrics.compute()
    got = results["eval"]["val"]
    assert {k: got[k] for k in ("overall_iou", "mean_iou", "precision@0.5", "count")} == {
        k: expected[k] for k in ("overall_iou", "mean_iou", "precision@0.5", "count")}
    assert results["protocol"]["name"] == name
    index = (tmp_path / name / "model_index.yaml").read_text()
    assert f"config: {name}" in index
    if name == "cris":
        assert "CRIS's \"IoU\"" in (tmp_path / name / "eval_results.md").read_text()


def test_a_published_clipseg_runs_through_the_pipeline_as_its_saved_twin(published_clipseg_dir,
                                                                         tiny_clipseg_dir) -> None:
    """CIDAS/clipseg-rd64-refined's layout (preprocessor_config.json, vocab.json + merges.txt) loads as saved here."""
    rng = np.random.default_rng(1)
    image = Image.fromarray(rng.integers(0, 256, (30, 50, 3), dtype=np.uint8))
    published = pipeline(model=published_clipseg_dir, device="cpu")(image, "the red circle on the left")
    saved = pipeline(model=tiny_clipseg_dir, device="cpu")(image, "the red circle on the left")
    assert published["mask"].size == (50, 30)
    np.testing.assert_array_equal(np.asarray(published["mask"]), np.asarray(saved["mask"]))
    assert published["score"] == pytest.approx(saved["score"])


@pytest.mark.parametrize("architecture", ["published_clipseg", "cris", "florence2"])
def test_nemo_hf_predict_writes_a_mask_at_the_pictures_size(architecture, request, tmp_path, capsys) -> None:
    from nemo_hf import cli

    model_dir = request.getfixturevalue({"published_clipseg": "published_clipseg_dir", "cris": "tiny_cris_dir",
                                         "florence2": "tiny_florence2_dir"}[architecture])
    picture = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (37, 53, 3), dtype=np.uint8)).save(picture)
    assert cli.main(["predict", "--model", str(model_dir), "--image", str(picture), "--text", "the red circle",
                     "--output", str(tmp_path / "mask.png")]) == 0
    assert Image.open(tmp_path / "mask.png").size == (53, 37)
    assert Image.open(tmp_path / "mask_overlay.png").size == (53, 37)
    assert "score" in capsys.readouterr().out
