"""The CLIPSeg adapter, its loading, the collator and the evaluation loop, on the tiny model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from nemo_hf.modeling.interface import ReferringSegmenterOutput
from nemo_hf.modeling import (
    CLIPSegReferringSegmenter,
    ReferringSegmenter,
    RISCollator,
    evaluate_referring,
    load_referring_segmenter,
    mask_to_label,
    per_sample_bce,
    per_sample_dice,
    predict_masks,
    save_prediction_grid,
)
from tests.tiny_clipseg import TINY_CLIPSEG_IMAGE_SIZE, tiny_clipseg

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _fresh_accelerate_state():
    yield
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()


def _rows(n: int, seed: int = 0) -> list[dict]:
    """Noise images of varied sizes, each with a rectangle mask and a sentence."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        h, w = int(rng.integers(20, 70)), int(rng.integers(20, 70))
        mask = np.zeros((h, w), bool)
        top, left = int(rng.integers(0, h // 2)), int(rng.integers(0, w // 2))
        mask[top : top + h // 2, left : left + w // 3] = True
        pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        rows.append({"image": Image.fromarray(pixels), "mask": Image.fromarray(mask),
                     "sentence": ["the red circle", "a blue square on the left", "it"][i % 3],
                     "distractors": [0, 1, 2, 5][i % 4]})
    return rows


def test_tiny_clipseg_is_deterministic_and_round_trips(tmp_path) -> None:
    model, processor = tiny_clipseg(seed=1)
    again, _ = tiny_clipseg(seed=1)
    other, _ = tiny_clipseg(seed=2)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), again.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(model.parameters(), other.parameters()))
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    loaded, loaded_processor = load_referring_segmenter(tmp_path)
    batch = RISCollator(loaded_processor)(_rows(3))
    expected = CLIPSegReferringSegmenter(model).eval()(batch["pixel_values"], batch["input_ids"],
                                                        batch["attention_mask"]).logits
    got = loaded.eval()(batch["pixel_values"], batch["input_ids"], batch["attention_mask"]).logits
    assert got.shape == (3, TINY_CLIPSEG_IMAGE_SIZE, TINY_CLIPSEG_IMAGE_SIZE)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    assert type(loaded_processor.image_processor).__name__ == "ViTImageProcessorPil"


@pytest.mark.parametrize("trainable", ["decoder", "decoder+text"])
def test_adapter_logits_equal_the_transformers_forward(trainable: str) -> None:
    model, processor = tiny_clipseg()
    batch = processor(text=["the red circle", "a blue square"], images=[r["image"] for r in _rows(2)],
                      padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = model(**batch).logits
        got = CLIPSegReferringSegmenter(model, trainable=trainable).eval()(**batch).logits
    torch.testing.assert_close(got, expected)


def test_a_batch_of_one_keeps_its_batch_axis(tiny_clipseg_dir) -> None:
    model, processor = load_referring_segmenter(tiny_clipseg_dir)
    batch = RISCollator(processor)(_rows(1))
    assert model(batch["pixel_values"], batch["input_ids"], batch["attention_mask"]).logits.shape == (1, 64, 64)


@pytest.mark.parametrize(
    ("trainable", "trained_prefixes"),
    [("decoder", ("model.decoder.",)),
     ("decoder+text", ("model.decoder.", "model.clip.text_model.", "model.clip.text_projection."))],
)
def test_exactly_the_chosen_part_trains_and_every_trainable_parameter_gets_a_gradient(
    trainable: str, trained_prefixes: tuple[str, ...], tiny_clipseg_dir
) -> None:
    model, processor = load_referring_segmenter(tiny_clipseg_dir, trainable=trainable)
    names = dict(model.named_parameters())
    trained = {name for name, p in names.items() if p.requires_grad}
    assert trained == {name for name in names if name.startswith(trained_prefixes)}
    listed = {id(p) for params in model.trainable_parameters().values() for p in params}
    assert listed == {id(names[name]) for name in trained}

    batch = RISCollator(processor)(_rows(4))
    model.train()
    loss = per_sample_bce(model(batch["pixel_values"], batch["input_ids"], batch["attention_mask"]).logits,
                          batch["labels"]).mean()
    loss.backward()
    # DDP (find_unused_parameters=False) fails on a trainable parameter that gets no gradient
    no_grad = sorted(name for name in trained if names[name].grad is None or not names[name].grad.any())
    assert no_grad == []
    assert all(names[name].grad is None for name in names if name not in trained)


def test_frozen_towers_stay_in_eval_mode(tiny_clipseg_dir) -> None:
    model, _ = load_referring_segmenter(tiny_clipseg_dir, trainable="decoder+text")
    model.train()
    clip = model.model.clip
    assert model.model.decoder.training and clip.text_model.training
    assert not clip.vision_model.training and not clip.visual_projection.training
    decoder_only, _ = load_referring_segmenter(tiny_clipseg_dir)
    decoder_only.train()
    assert not any(m.training for m in decoder_only.model.clip.modules())


def test_bad_trainable_and_non_clipseg_checkpoints_are_refused(tmp_path) -> None:
    from transformers import ViTConfig, ViTModel

    with pytest.raises(ValueError, match="trainable must be one of"):
        CLIPSegReferringSegmenter(tiny_clipseg()[0], trainable="everything")  # type: ignore[arg-type]
    ViTModel(ViTConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8,
                       image_size=16, patch_size=8)).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"is a 'vit' checkpoint.*CLIPSeg"):
        load_referring_segmenter(tmp_path)


def test_a_clip_checkpoint_becomes_a_clipseg_on_its_towers(tmp_path) -> None:
    from tests.tiny_models import save_tiny_clip, tiny_clip

    clip, _ = tiny_clip(seed=3)
    save_tiny_clip(tmp_path, seed=3)
    segmenter, processor = load_referring_segmenter(tmp_path, image_size=48, seed=1)
    towers = segmenter.model.clip.state_dict()
    for key, value in clip.state_dict().items():
        torch.testing.assert_close(towers[key], value, msg=key)
    assert processor.image_processor.size["height"] == 48
    again, _ = load_referring_segmenter(tmp_path, image_size=48, seed=1)
    other, _ = load_referring_segmenter(tmp_path, image_size=48, seed=2)
    decoder = dict(segmenter.model.decoder.named_parameters())
    assert all(torch.equal(p, decoder[n]) for n, p in again.model.decoder.named_parameters())
    assert not all(torch.equal(p, decoder[n]) for n, p in other.model.decoder.named_parameters())
    batch = processor(text=["a red ring", "the blue star"], images=[Image.new("RGB", (50, 30), "red")] * 2,
                      padding=True, return_tensors="pt")
    assert segmenter(**batch).logits.shape == (2, 48, 48)


def test_trainable_all_is_clipsegs_forward_with_gradients_everywhere() -> None:
    model, processor = tiny_clipseg(seed=0)
    full = CLIPSegReferringSegmenter(model, trainable="all").eval()
    frozen = CLIPSegReferringSegmenter(model, trainable="decoder").eval()
    batch = processor(text=["a red ring", "the blue star on the left"], images=[Image.new("RGB", (50, 30), "red")] * 2,
                      padding=True, return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(full(**batch).logits, frozen(**batch).logits)
    full = CLIPSegReferringSegmenter(model, trainable="all").train()
    full(**batch).logits.square().mean().backward()
    parts = full.trainable_parameters()
    assert set(parts) == {"decoder", "text", "vision"}
    for part, params in parts.items():
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in params if p.ndim >= 2), part


def test_per_sample_dice_is_the_dice_formula() -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 7, generator=generator) * 3
    labels = (torch.rand(3, 5, 7, generator=generator) > 0.7).float()
    expected = []
    for i in range(3):
        p, y = torch.sigmoid(logits[i]), labels[i]
        expected.append(1 - (2 * (p * y).sum() + 1) / (p.sum() + y.sum() + 1))
    torch.testing.assert_close(per_sample_dice(logits, labels), torch.stack(expected))


def test_the_adapter_follows_the_interface(tiny_clipseg_dir) -> None:
    model, _ = load_referring_segmenter(tiny_clipseg_dir)
    assert isinstance(model, ReferringSegmenter)


def test_per_sample_bce_is_torch_bce_per_sample() -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 7, generator=generator) * 3
    labels = torch.rand(3, 5, 7, generator=generator)
    expected = torch.stack([F.binary_cross_entropy_with_logits(logits[i], labels[i]) for i in range(3)])
    torch.testing.assert_close(per_sample_bce(logits, labels), expected)
    with pytest.raises(ValueError, match="resized to the model's output resolution"):
        per_sample_bce(logits, labels[:, :4])


def test_labels_are_the_mask_share_of_each_output_pixel() -> None:
    rng = np.random.default_rng(3)
    mask = rng.random((128, 96)) < 0.3
    # an exact 2x and 3x reduction: each label is the mean of its block
    blocks = mask.reshape(64, 2, 32, 3).mean(axis=(1, 3))
    np.testing.assert_allclose(mask_to_label(mask, (64, 32)), blocks, atol=1 / 255 + 1e-6)
    assert mask_to_label(np.zeros((9, 9), bool), (4, 4)).max() == 0.0
    assert mask_to_label(np.full((9, 9), 255, np.uint8), (4, 4)).min() == 1.0


def test_collator_keeps_targets_untouched_and_names_missing_columns() -> None:
    _, processor = tiny_clipseg()
    rows = _rows(5)
    batch = RISCollator(processor, with_targets=True)(rows)
    assert batch["pixel_values"].shape == (5, 3, 64, 64)
    assert batch["input_ids"].shape == batch["attention_mask"].shape
    assert batch["labels"].dtype == torch.float32 and batch["labels"].shape == (5, 64, 64)
    for row, target in zip(rows, batch["target_masks"]):
        assert target.dtype == torch.bool and np.array_equal(target.numpy(), np.asarray(row["mask"]))
    assert batch["distractors"].tolist() == [row["distractors"] for row in rows]
    assert "target_masks" not in RISCollator(processor)(rows)
    with pytest.raises(KeyError, match="'sentence'"):
        RISCollator(processor)([{"image": rows[0]["image"], "mask": rows[0]["mask"]}])


def _processor_batch(processor, rows: list[dict]) -> dict:
    """What the processor alone makes of the rows: the reference for the collator's shortcuts."""
    return processor(text=[r["sentence"] for r in rows], images=[r["image"].convert("RGB") for r in rows],
                     padding=True, truncation=True, max_length=77, return_tensors="pt")


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA"])
def test_collator_at_input_size_equals_the_processor(mode: str) -> None:
    _, processor = tiny_clipseg()
    rng = np.random.default_rng(4)
    side = TINY_CLIPSEG_IMAGE_SIZE
    rows = [{"image": Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).convert(mode),
             "mask": Image.fromarray(rng.random((side, side)) < 0.4), "sentence": s}
            for s in ["a", "the tall red one on the left", "it"]]
    collate = RISCollator(processor)
    expected = _processor_batch(processor, rows)
    for _ in range(2):  # the first batch is checked against the processor, the second is not
        batch = collate(rows)
        torch.testing.assert_close(batch["pixel_values"], expected["pixel_values"], atol=1e-5, rtol=0)
        assert torch.equal(batch["input_ids"], expected["input_ids"])
        assert torch.equal(batch["attention_mask"], expected["attention_mask"])
        assert torch.equal(batch["labels"], torch.from_numpy(np.stack([np.asarray(r["mask"]) for r in rows])).float())
    assert collate._direct is not None, "images at the input size must take the direct path"


def test_collator_falls_back_to_the_processor_when_the_direct_path_disagrees() -> None:
    _, processor = tiny_clipseg()
    rows = [{**row, "image": row["image"].resize((TINY_CLIPSEG_IMAGE_SIZE,) * 2)} for row in _rows(3)]
    collate = RISCollator(processor)
    processor.image_processor.image_mean = [0.1, 0.2, 0.3]  # changed after the collator was built
    batch = collate(rows)
    torch.testing.assert_close(batch["pixel_values"], _processor_batch(processor, rows)["pixel_values"])
    assert collate._direct is None


def _brute_force_metrics(model, processor, rows, batch_size: int) -> dict:
    """oIoU/mIoU/P@X computed sample by sample, independently of nemo_hf.metrics.

    Logits come from batches composed like the evaluation's (text padding changes the last
    bits of a forward pass); everything after the forward pass is recomputed here.
    """
    inters, unions, losses = [], [], []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        batch = processor(text=[r["sentence"] for r in chunk], images=[r["image"] for r in chunk],
                          padding=True, return_tensors="pt")
        with torch.no_grad():
            all_logits = model.model(**batch).logits
        for row, logits in zip(chunk, all_logits):
            h, w = row["image"].height, row["image"].width
            up = F.interpolate(logits[None, None], size=(h, w), mode="bilinear", align_corners=False)[0, 0]
            pred = (torch.sigmoid(up) > 0.5).numpy()
            truth = np.asarray(row["mask"])
            inters.append(int((pred & truth).sum()))
            unions.append(int((pred | truth).sum()))
            label = torch.from_numpy(mask_to_label(truth, tuple(logits.shape)))
            losses.append(F.binary_cross_entropy_with_logits(logits, label).item())
    ious = [i / u if u else 1.0 for i, u in zip(inters, unions)]
    return {"overall_iou": sum(inters) / sum(unions), "mean_iou": float(np.mean(ious)),
            "precision@0.5": float(np.mean([iou >= 0.5 for iou in ious])), "ious": ious,
            "loss": float(np.mean(losses))}


def test_evaluation_matches_a_brute_force_computation(tiny_clipseg_dir) -> None:
    from accelerate import Accelerator

    model, processor = load_referring_segmenter(tiny_clipseg_dir)
    # a few steps of training so that predictions are neither empty nor everything
    optimizer = torch.optim.AdamW(model.trainable_parameters()["decoder"], lr=3e-3)
    train_batch = RISCollator(processor)(_rows(8, seed=1))
    for _ in range(3):
        loss = per_sample_bce(model(train_batch["pixel_values"], train_batch["input_ids"],
                                    train_batch["attention_mask"]).logits, train_batch["labels"]).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    rows = _rows(11, seed=2)
    loader = torch.utils.data.DataLoader(rows, batch_size=4, collate_fn=RISCollator(processor, with_targets=True))
    result = evaluate_referring(model, loader, Accelerator(cpu=True))
    expected = _brute_force_metrics(model, processor, rows, batch_size=4)
    assert 0.0 < expected["overall_iou"] < 1.0
    assert result["count"] == 11
    for key in ("overall_iou", "mean_iou", "precision@0.5"):
        assert result[key] == pytest.approx(expected[key], abs=1e-12), key
    assert result["loss"] == pytest.approx(expected["loss"], rel=1e-5)
    by_distractors = {}
    for row, iou in zip(rows, expected["ious"]):
        name = "distractors=" + (str(row["distractors"]) if row["distractors"] < 3 else "3+")
        by_distractors.setdefault(name, []).append(iou)
    for name, ious in by_distractors.items():
        assert result["groups"][name]["count"] == len(ious)
        assert result["groups"][name]["mean_iou"] == pytest.approx(np.mean(ious), abs=1e-12)


def test_prediction_grid_has_a_row_per_sample(tmp_path, tiny_clipseg_dir) -> None:
    model, processor = load_referring_segmenter(tiny_clipseg_dir)
    rows = _rows(3)
    images, sentences = [r["image"] for r in rows], [r["sentence"] for r in rows]
    masks = predict_masks(model, processor, images, sentences, batch_size=2)
    assert [m.shape for m in masks] == [(r["image"].height, r["image"].width) for r in rows]
    path = save_prediction_grid(images, sentences, masks, [r["mask"] for r in rows], tmp_path / "grid.png")
    width, height = Image.open(path).size
    assert width == 3 * 256 and height % 3 == 0 and height > 3 * 256
    with pytest.raises(ValueError, match="as many images"):
        save_prediction_grid(images, sentences[:2], masks, masks, tmp_path / "bad.png")


def test_evaluation_adds_gres_metrics_when_a_split_has_no_target_expressions(tiny_clipseg_dir):
    import numpy as np
    import torch
    from accelerate import Accelerator
    from PIL import Image

    from nemo_hf.metrics import GRESMetrics, logits_to_masks
    from nemo_hf.modeling import RISCollator, evaluate_referring, load_referring_segmenter

    model, processor = load_referring_segmenter(tiny_clipseg_dir)
    rows = [{"image": Image.new("RGB", (40, 30), colour), "mask": Image.fromarray(mask), "sentence": sentence,
             "distractors": 0}
            for colour, mask, sentence in (
                ("red", np.ones((30, 40), bool), "all of it"),
                ("blue", np.zeros((30, 40), bool), "the green dog"))]
    collate = RISCollator(processor, with_targets=True)
    result = evaluate_referring(model, torch.utils.data.DataLoader(rows, batch_size=2, collate_fn=collate),
                                Accelerator(cpu=True))
    batch = collate(rows)
    with torch.no_grad():
        logits = model(pixel_values=batch["pixel_values"], input_ids=batch["input_ids"],
                       attention_mask=batch["attention_mask"]).logits
    expected = GRESMetrics()
    expected.update(logits_to_masks(logits, [(30, 40), (30, 40)]), [np.array(r["mask"]) for r in rows])
    assert result["gres"] == expected.compute()
    assert result["gres"]["no_target_count"] == 1
    only_targets = evaluate_referring(model, torch.utils.data.DataLoader(rows[:1], batch_size=1, collate_fn=collate),
                                      Accelerator(cpu=True))
    assert "gres" not in only_targets


def test_long_expressions_are_cut_to_the_text_towers_positions() -> None:
    # the shipped synthetic CLIP has 32 text positions, not CLIP's 77
    model, processor = load_referring_segmenter("nemo-hf/synthetic-clip")
    words = " ".join(["the small red ring left of the big blue star"] * 8)
    rows = [{"image": Image.new("RGB", (40, 30)), "mask": Image.new("1", (40, 30), 1), "sentence": words}]
    batch = RISCollator(processor)(rows)
    assert batch["input_ids"].shape[1] == model.config.text_config.max_position_embeddings == 32
    assert model(batch["pixel_values"], batch["input_ids"], batch["attention_mask"]).logits.shape[0] == 1
    assert predict_masks(model, processor, [rows[0]["image"]], [words])[0].shape == (30, 40)


class _LeftHalfModel(torch.nn.Module):
    """A segmenter whose logits are +8 on the left half of its 8×8 grid when the sentence says "left", else -8."""

    def __init__(self, left_token: int) -> None:
        super().__init__()
        self.left_token = left_token
        self.anchor = torch.nn.Parameter(torch.zeros(()))  # gives predict_masks a device and dtype

    def forward(self, pixel_values, input_ids, attention_mask):
        logits = torch.full((pixel_values.shape[0], 8, 8), -8.0)
        says_left = (input_ids == self.left_token).any(dim=1)
        logits[says_left, :, :4] = 8.0
        return ReferringSegmenterOutput(logits=logits)


def test_predictions_are_the_thresholded_logits_at_each_images_size() -> None:
    _, processor = tiny_clipseg()
    left = processor.tokenizer.convert_tokens_to_ids("left</w>")
    model = _LeftHalfModel(left)
    images = [Image.new("RGB", (40, 30)), Image.new("RGB", (17, 9)), Image.new("RGB", (64, 64))]
    sentences = ["the ring on the left", "the star on the right", "left"]
    masks = predict_masks(model, processor, images, sentences, batch_size=2)
    for image, sentence, mask in zip(images, sentences, masks):
        assert mask.shape == (image.height, image.width) and mask.dtype == bool
        expected = np.zeros((image.height, image.width), dtype=bool)
        if "left" in sentence.split():
            expected[:, : image.width // 2] = True  # bilinear upsampling of a sharp step keeps it at the middle
        assert np.array_equal(mask, expected), sentence


@pytest.mark.parametrize("loss", ["bce", "bce+dice"])
@pytest.mark.parametrize("architecture", ["clipseg", "cris"])
def test_the_models_loss_is_the_training_scripts_old_loss_on_the_same_batch(architecture, loss, tiny_clipseg_dir,
                                                                            tiny_cris_dir) -> None:
    """``outputs.loss`` with labels equals, bit for bit, what train.py used to compute from the bare logits."""
    from nemo_hf.modeling.losses import per_sample_bce, per_sample_dice

    folder = tiny_clipseg_dir if architecture == "clipseg" else tiny_cris_dir
    model, processor = load_referring_segmenter(folder, loss=loss)
    assert model.segmentation_loss == loss and model.config.segmentation_loss == loss
    batch = RISCollator(processor)(_rows(4))
    model.eval()
    with torch.no_grad():
        outputs = model(batch["pixel_values"], batch["input_ids"], batch["attention_mask"], labels=batch["labels"])
    old = per_sample_bce(outputs.logits, batch["labels"]).mean()
    if loss == "bce+dice":
        old = old + per_sample_dice(outputs.logits, batch["labels"]).mean()
    assert torch.equal(outputs.loss, old)
    assert model(batch["pixel_values"], batch["input_ids"], batch["attention_mask"]).loss is None


def test_the_loss_is_saved_with_the_model(tmp_path, tiny_clipseg_dir) -> None:
    model, processor = load_referring_segmenter(tiny_clipseg_dir, loss="bce+dice")
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    assert load_referring_segmenter(tmp_path)[0].segmentation_loss == "bce+dice"
    assert load_referring_segmenter(tiny_clipseg_dir)[0].segmentation_loss == "bce"
