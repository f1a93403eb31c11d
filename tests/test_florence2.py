"""Florence-2 as a referring segmenter: its polygon answers parsed and drawn, the tiny model through every entry point.

The tiny Florence-2 (tests/tiny_florence2.py) is random: what it answers is noise, but an
answer in Florence-2's format. Hand-made answers (a ``generate`` that returns them) check
what a real answer becomes: several polygons, none, coordinates outside the image.
"""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import Florence2Processor
from transformers.generation.utils import GenerateEncoderDecoderOutput

from nemo_hf.modeling import load_referring_segmenter, predict_masks
from nemo_hf.modeling.florence2 import TASK_PROMPT, Florence2ReferringSegmenter
from nemo_hf.modeling.pipeline import pipeline
from nemo_hf.modeling.polygons import parse_polygons, rasterise_polygons
from tests.training_runs import REPO

torch.set_num_threads(1)


def _pictures() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in ((30, 50), (64, 64), (41, 17))]


# -- the answers' format ----------------------------------------------------------------------------------------------

def test_several_polygons_separated_or_wrapped_are_all_read() -> None:
    # bins 0..999 across 100 x 50 pixels: a point sits at (bin + 0.5) / 1000 of the side
    separated = "</s><s><loc_100><loc_100><loc_300><loc_100><loc_300><loc_300><sep><loc_600><loc_600><loc_900>" \
                "<loc_600><loc_900><loc_900></s>"
    polygons = parse_polygons(separated, (100, 50))
    assert [p.shape for p in polygons] == [(3, 2), (3, 2)]
    assert polygons[0][0].tolist() == pytest.approx([10.05, 5.025])
    assert polygons[1][2].tolist() == pytest.approx([90.05, 45.025])
    wrapped = "<poly><loc_100><loc_100><loc_300><loc_100><loc_300><loc_300></poly><poly><loc_600><loc_600>" \
              "<loc_900><loc_600><loc_900><loc_900></poly>"
    assert [p.tolist() for p in parse_polygons(wrapped, (100, 50))] == [p.tolist() for p in polygons]
    mask = rasterise_polygons(polygons, (50, 100))
    assert mask[8, 25] and mask[35, 85]  # inside each triangle (y, x): above its slanted side, y = x / 2 + c
    assert not mask[40, 20] and not mask[5, 85]


def test_an_answer_without_polygons_is_an_empty_mask() -> None:
    for text in ("</s><s></s>", "", "the red circle", "<loc_5><loc_5><loc_9><loc_9>", "<loc_5><loc_5><loc_9>"):
        assert parse_polygons(text, (40, 30)) == []  # no point, no area, or a lone coordinate
        assert not rasterise_polygons(parse_polygons(text, (40, 30)), (30, 40)).any()


def test_coordinates_outside_the_image_are_clipped_to_its_border() -> None:
    # <loc_1500> is past the 1000 bins (the model's vocabulary has no such token, a hand-edited answer may): it lands
    # on the border, so the square covers the image's right half whatever its size
    polygons = parse_polygons("<loc_500><loc_0><loc_1500><loc_0><loc_1500><loc_1500><loc_500><loc_1500>", (40, 30))
    assert polygons[0].max(axis=0).tolist() == [40.0, 30.0]
    mask = rasterise_polygons(polygons, (30, 40))
    assert mask.shape == (30, 40) and mask[:, 21:].all() and not mask[:, :20].any()


def test_a_trailing_odd_coordinate_is_dropped_as_transformers_drops_it() -> None:
    with_odd = parse_polygons("<loc_100><loc_100><loc_300><loc_100><loc_300><loc_300><loc_7>", (10, 10))
    assert [p.tolist() for p in with_odd] == [p.tolist() for p in
                                              parse_polygons("<loc_100><loc_100><loc_300><loc_100><loc_300><loc_300>",
                                                             (10, 10))]


def test_points_agree_with_transformers_post_processor_to_the_pixel(tiny_florence2_dir) -> None:
    """transformers truncates each point to whole pixels; nemo_hf keeps the bin centre: the same point within 1 px."""
    processor = Florence2Processor.from_pretrained(tiny_florence2_dir)
    text = "</s><s><loc_123><loc_456><loc_789><loc_12><loc_998><loc_999><sep><loc_0><loc_0><loc_5><loc_0><loc_5><loc_5>"
    theirs = processor.post_process_generation(text, task=TASK_PROMPT, image_size=(640, 427))[TASK_PROMPT]["polygons"]
    ours = parse_polygons(text, (640, 427))
    assert len(theirs) == 1 and len(theirs[0]) == len(ours)
    for their_polygon, our_polygon in zip(theirs[0], ours):
        assert np.asarray(their_polygon).reshape(-1, 2) == pytest.approx(np.floor(our_polygon))


# -- the tiny model ---------------------------------------------------------------------------------------------------

def test_the_pipeline_gives_a_mask_at_each_images_size_batched_or_not(tiny_florence2_dir) -> None:
    segmenter = pipeline(model=tiny_florence2_dir, device="cpu")
    images, sentences = _pictures(), ["the red circle", "a blue square on the left", "the small one"]
    batched = segmenter(images, sentences, batch_size=3)
    single = [segmenter(image, sentence) for image, sentence in zip(images, sentences)]
    model, processor = load_referring_segmenter(tiny_florence2_dir)
    expected = predict_masks(model, processor, images, sentences, batch_size=2)
    assert isinstance(model, Florence2ReferringSegmenter) and model.produces == "masks"
    for image, one, alone, mask in zip(images, batched, single, expected):
        assert one["mask"].size == image.size and one["mask"].mode == "L"
        np.testing.assert_array_equal(np.asarray(one["mask"]) > 0, mask)
        np.testing.assert_array_equal(np.asarray(alone["mask"]), np.asarray(one["mask"]))
        assert one["score"] == pytest.approx(alone["score"], abs=1e-6)
        assert (one["score"] > 0) == bool(mask.any()) and 0.0 <= one["score"] <= 1.0
    assert any(mask.any() for mask in expected)  # the fixture's seed answers with area (tests/tiny_florence2.py)


def _answer(tokenizer, texts: list[str], step_logprobs: list[list[float]]) -> GenerateEncoderDecoderOutput:
    """What greedy ``generate`` returns for ``texts``, each generated token scored with the given log-probability."""
    rows = [[2] + tokenizer.convert_tokens_to_ids(tokenizer.tokenize(text)) + [2] for text in texts]
    length = max(map(len, rows))
    sequences = torch.tensor([row + [1] * (length - len(row)) for row in rows])  # 1: <pad>
    scores = []
    for step in range(length - 1):
        logits = torch.full((len(rows), len(tokenizer)), -1e4)
        for i, row in enumerate(rows):
            token = int(sequences[i, step + 1])
            chosen = step_logprobs[i][step] if step + 1 < len(row) else 0.0
            # the chosen token gets probability exp(chosen); one other token takes the rest
            logits[i, token] = chosen
            logits[i, 3 if token != 3 else 4] = math.log1p(-math.exp(chosen)) if chosen < 0 else -1e4
        scores.append(logits)
    return GenerateEncoderDecoderOutput(sequences=sequences, scores=tuple(scores))


def test_hand_made_answers_become_their_polygons_and_their_mean_token_probability(tiny_florence2_dir,
                                                                               monkeypatch) -> None:
    model, processor = load_referring_segmenter(tiny_florence2_dir)
    triangle = "<loc_100><loc_100><loc_500><loc_100><loc_500><loc_500>"
    square = "<loc_0><loc_0><loc_999><loc_0><loc_999><loc_999><loc_0><loc_999>"
    # per answer its location tokens, then </s>; the triangle's answer is padded to the square's length
    logprobs = [[math.log(0.5)] * 6 + [math.log(0.8)], [math.log(0.9)] * 8 + [math.log(0.6)], [math.log(0.9)]]
    answer = _answer(processor.tokenizer, [triangle, square, ""], logprobs)
    monkeypatch.setattr(model.model, "generate", lambda **_: answer)
    images = [Image.new("RGB", (100, 50)), Image.new("RGB", (7, 5)), Image.new("RGB", (20, 10))]
    inputs = model.encode(processor, images, ["the ring", "the star", "the box"])
    result = model.segment(inputs, [(50, 100), (5, 7), (10, 20)], processor)
    # the triangle (10.05, 5.025), (50.05, 5.025), (50.05, 25.025) at 100 x 50: pixel (y=10, x=30) inside, (20, 15) not
    assert result.masks[0].shape == (50, 100) and result.masks[0][10, 30] and not result.masks[0][20, 15]
    assert result.scores[0] == pytest.approx(math.exp((6 * math.log(0.5) + math.log(0.8)) / 7), rel=1e-5)
    assert result.masks[1].shape == (5, 7) and result.masks[1].all()  # the whole image
    assert result.scores[1] == pytest.approx(math.exp((8 * math.log(0.9) + math.log(0.6)) / 9), rel=1e-5)
    assert result.masks[2].shape == (10, 20) and not result.masks[2].any() and result.scores[2] == 0.0


def test_florence2_is_not_trained_and_not_built_on_a_clip(tiny_florence2_dir, tmp_path) -> None:
    with pytest.raises(ValueError, match="Florence-2 checkpoint, which nemo_hf runs for inference only .* it trains "
                                         "'clipseg' \\(CLIPSeg\\), 'cris' \\(CRIS\\)"):
        load_referring_segmenter(tiny_florence2_dir, trainable="all")
    with pytest.raises(ValueError, match="inference only"):
        load_referring_segmenter(tiny_florence2_dir, for_training=True)
    with pytest.raises(ValueError, match="Florence-2 is not built on a CLIP"):
        load_referring_segmenter("nemo-hf/synthetic-clip", model_type="florence2")
    from nemo_hf.trainer.segmenter_training import main as train

    with pytest.raises(ValueError, match="runs for inference only"):
        train(["--model_name_or_path", str(tiny_florence2_dir), "--synthetic_images", "4", "--cache_dir",
               str(tmp_path / "cache"), "--output_dir", str(tmp_path / "run"), "--augmentation", "none",
               "--report_to", "none", "--max_train_steps", "1"])
    from nemo_hf.trainer.args import ModelArguments

    with pytest.raises(ValueError, match="model_type must be one of \\['clipseg', 'cris'\\]"):
        ModelArguments(model_type="florence2")


def test_anything_else_is_refused_naming_every_supported_architecture(tmp_path) -> None:
    from transformers import BertConfig

    BertConfig(vocab_size=10, hidden_size=8, num_hidden_layers=1, num_attention_heads=1,
               intermediate_size=8).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="is a 'bert' checkpoint; nemo_hf.modeling supports 'clipseg' \\(CLIPSeg\\), "
                                         "'cris' \\(CRIS\\), 'florence2' \\(Florence-2\\)"):
        load_referring_segmenter(tmp_path)


def test_nemo_hf_predict_segments_with_florence2(tiny_florence2_dir, tmp_path) -> None:
    picture = tmp_path / "photo.png"
    _pictures()[0].save(picture)
    run = subprocess.run([sys.executable, "-m", "nemo_hf.cli", "predict", "--model", str(tiny_florence2_dir),
                          "--image", str(picture), "--text", "the red circle", "--output", str(tmp_path / "m.png")],
                         cwd=REPO, capture_output=True, text=True, timeout=300, env={**__import__("os").environ,
                                                                                     "OMP_NUM_THREADS": "1"})
    assert run.returncode == 0, run.stderr[-2000:]
    assert Image.open(tmp_path / "m.png").size == (50, 30) and (tmp_path / "m_overlay.png").is_file()
    assert "score" in run.stdout


def test_a_bare_florence2_with_its_processor_builds_the_pipeline() -> None:
    """As ``Florence2ForConditionalGeneration.from_pretrained`` gives it: the registry's adapter wraps it."""
    from nemo_hf.modeling.pipeline import ReferringSegmentationPipeline
    from tests.tiny_florence2 import tiny_florence2

    model, processor = tiny_florence2()
    segmenter = ReferringSegmentationPipeline(model=model, processor=processor, device="cpu")
    assert isinstance(segmenter.model, Florence2ReferringSegmenter)
    result = segmenter(_pictures()[2], "the small one")
    assert result["mask"].size == (17, 41)
