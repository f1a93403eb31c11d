"""CRIS on CLIP's towers: it learns, every part gets gradients, it saves, loads and builds through the Auto classes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoConfig, AutoModel, CLIPConfig, CLIPProcessor

from nemo_hf.metrics import logits_to_masks
from nemo_hf.modeling import (
    CRISConfig,
    CRISForReferringSegmentation,
    CRISReferringSegmenter,
    ReferringSegmenter,
    RISCollator,
    labels_at,
    load_referring_segmenter,
    per_sample_bce,
)
from tests.tiny_cris import TINY_CRIS_CONFIG, TINY_CRIS_IMAGE_SIZE, tiny_cris, two_boxes_rows
from tests.tiny_models import save_tiny_clip, tiny_clip

torch.set_num_threads(1)


def _logits(segmenter, batch) -> torch.Tensor:
    return segmenter(batch["pixel_values"], batch["input_ids"], batch["attention_mask"]).logits


def _overall_iou(logits: torch.Tensor, targets: list[torch.Tensor]) -> float:
    predictions = logits_to_masks(logits, [tuple(t.shape) for t in targets])
    inter = sum(int((p & t).sum()) for p, t in zip(predictions, targets))
    return inter / sum(int((p | t).sum()) for p, t in zip(predictions, targets))


def test_tiny_cris_overfits_a_batch_and_every_parameter_learns() -> None:
    model, processor = tiny_cris(seed=0)
    segmenter = CRISReferringSegmenter(model)
    batch = RISCollator(processor, with_targets=True)(two_boxes_rows())
    parts = segmenter.trainable_parameters()
    # every parameter of the model is in exactly one trained part: nothing is frozen by accident
    listed = [id(p) for params in parts.values() for p in params]
    assert sorted(listed) == sorted(id(p) for p in model.parameters()) and len(set(listed)) == len(listed)
    optimizer = torch.optim.Adam([{"params": parts["decoder"], "lr": 3e-3},
                                  {"params": parts["text"] + parts["vision"], "lr": 3e-4}])
    steps = 200
    # at constant rates the fit oscillates (IoU 0.74-0.97 between steps 200 and 300); decayed to zero it settles
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / steps)
    torch.manual_seed(0)  # the decoder's dropout: the same draws whatever ran before
    for step in range(steps):
        segmenter.train()
        per_sample_bce(_logits(segmenter, batch), batch["labels"]).mean().backward()
        if step == 0:  # the backbone's every weight gets a gradient, not only the new layers'
            no_gradient = sorted(name for name, p in model.named_parameters() if p.grad is None or not p.grad.any())
            assert no_gradient == []
        optimizer.step()
        optimizer.zero_grad()
        scheduler.step()
    with torch.no_grad():
        assert _overall_iou(_logits(segmenter.eval(), batch), batch["target_masks"]) > 0.9


def test_save_and_load_give_identical_outputs_through_the_model_class_and_auto_model(tmp_path) -> None:
    model, processor = tiny_cris(seed=1)
    batch = RISCollator(processor)(two_boxes_rows())
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(2):  # batch-norm statistics away from their initial values: they must be saved too
        model.train()
        model(**{k: batch[k] for k in ("pixel_values", "input_ids", "attention_mask", "labels")}).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    model.save_pretrained(tmp_path)
    assert {"config.json", "model.safetensors"} <= {p.name for p in tmp_path.iterdir()}
    inputs = {k: batch[k] for k in ("pixel_values", "input_ids", "attention_mask")}
    with torch.no_grad():
        expected = model(**inputs).logits
        for loaded in (CRISForReferringSegmentation.from_pretrained(tmp_path), AutoModel.from_pretrained(tmp_path)):
            assert type(loaded) is CRISForReferringSegmentation
            torch.testing.assert_close(loaded.eval()(**inputs).logits, expected, rtol=0, atol=0)


def test_auto_config_and_auto_model_build_cris_from_its_config(tmp_path) -> None:
    config = CRISConfig(clip_config=tiny_clip(0)[0].config.to_dict(), **TINY_CRIS_CONFIG)
    config.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert type(loaded) is CRISConfig
    assert loaded.to_diff_dict() | {"_name_or_path": ""} == config.to_diff_dict() | {"_name_or_path": ""}
    assert isinstance(loaded.clip_config, CLIPConfig) and loaded.feature_layers == [1, 2]
    model = AutoModel.from_config(loaded)
    assert type(model) is CRISForReferringSegmentation and model.config.model_type == "nemo_cris"


def test_a_config_that_names_feature_layers_without_a_pyramid_is_the_layers_pyramid() -> None:
    # config.json files written before "vitdet" became a ViT's default hold feature_layers and may lack "pyramid"
    clip_config = tiny_clip(0)[0].config.to_dict()
    assert CRISConfig(clip_config=clip_config, feature_layers=[1, 2]).pyramid == "layers"
    assert CRISConfig(clip_config=clip_config).pyramid == "vitdet"
    assert CRISConfig(backbone="clip_resnet").pyramid == "resnet"


def test_from_clip_takes_the_clips_weights_and_draws_the_new_layers_from_the_seed(tmp_path) -> None:
    clip, _ = tiny_clip(seed=3)
    state = torch.random.get_rng_state()
    built = {"model": CRISForReferringSegmentation.from_clip(clip, seed=1, **TINY_CRIS_CONFIG),
             "folder": CRISForReferringSegmentation.from_clip(save_tiny_clip(tmp_path, seed=3), seed=1,
                                                              **TINY_CRIS_CONFIG)}
    assert torch.equal(torch.random.get_rng_state(), state)  # the global generator is left alone
    clip_weights = clip.state_dict()
    for how, model in built.items():
        towers = {k: v for k, v in model.state_dict().items() if k.startswith(("text_", "vision_", "visual_"))}
        assert towers.keys() == clip_weights.keys() - {"logit_scale"}, how
        assert all(torch.equal(value, clip_weights[key]) for key, value in towers.items()), how
    new = [m.state_dict() for m in built["model"].new_modules()]
    again = [m.state_dict() for m in built["folder"].new_modules()]
    other = [m.state_dict() for m in CRISForReferringSegmentation.from_clip(clip, seed=2, **TINY_CRIS_CONFIG).new_modules()]
    assert all(torch.equal(a[k], b[k]) for a, b in zip(new, again) for k in a)
    assert not all(torch.equal(a[k], b[k]) for a, b in zip(new, other) for k in a)

    shipped = CRISForReferringSegmentation.from_clip("nemo-hf/synthetic-clip")
    assert shipped.config.clip_config.vision_config.patch_size == 8
    assert shipped.config.neck_channels == [32, 64, 128]  # CRIS's widths scaled to the 64-wide text tower


def test_logits_are_a_quarter_of_the_input_and_the_loss_is_bce_on_block_averaged_labels() -> None:
    tower = {"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 2, "num_attention_heads": 2}
    clip = {"text_config": {**tower, "vocab_size": 50}, "vision_config": {**tower, "patch_size": 16, "image_size": 32},
            "projection_dim": 16}
    generator = torch.Generator().manual_seed(0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = CRISForReferringSegmentation(CRISConfig(clip_config=clip, decoder_attention_heads=2)).eval()
    pixels = torch.randn(2, 3, 96, 64, generator=generator)
    labels = (torch.rand(2, 96, 64, generator=generator) > 0.6).float()
    with torch.no_grad():
        output = model(pixel_values=pixels, input_ids=torch.tensor([[0, 5, 9, 1], [0, 7, 1, 1]]),
                       attention_mask=torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]]), labels=labels)
    assert output.logits.shape == (2, 24, 16)  # 16-pixel patches: stride 4, as CRIS at 416 gives 104
    expected = F.binary_cross_entropy_with_logits(output.logits, F.avg_pool2d(labels[:, None], 4)[:, 0])
    torch.testing.assert_close(output.loss, expected)
    torch.testing.assert_close(labels_at(labels, (24, 16)), F.avg_pool2d(labels[:, None], 4)[:, 0])
    with pytest.raises(ValueError, match=r"do not fit logits of size \(24, 16\)"):
        labels_at(labels[:, :90], (24, 16))


def test_frozen_towers_stay_frozen_and_in_eval_mode_when_only_the_new_layers_train() -> None:
    model, processor = tiny_cris()
    segmenter = CRISReferringSegmenter(model, trainable="decoder").train()
    assert list(segmenter.trainable_parameters()) == ["decoder"]
    assert not any(p.requires_grad for m in (model.text_model, model.vision_model, model.visual_projection)
                   for p in m.parameters())
    assert not model.text_model.training and not model.vision_model.training
    assert model.neck.training and model.decoder.layers[0].dropout.training  # the new layers train
    batch = RISCollator(processor)(two_boxes_rows())
    per_sample_bce(_logits(segmenter, batch), batch["labels"]).mean().backward()
    assert all(p.grad is not None for m in model.new_modules() for p in m.parameters())
    assert isinstance(segmenter, ReferringSegmenter)


def test_the_loader_builds_cris_on_a_clip_and_loads_a_saved_one(tmp_path, tiny_cris_dir) -> None:
    segmenter, processor = load_referring_segmenter(tiny_cris_dir)
    assert type(segmenter) is CRISReferringSegmenter and segmenter.trainable == "all"
    assert type(processor) is CLIPProcessor and processor.image_processor.size["height"] == TINY_CRIS_IMAGE_SIZE
    with pytest.raises(ValueError, match="is a cris checkpoint, not clipseg"):
        load_referring_segmenter(tiny_cris_dir, model_type="clipseg")

    save_tiny_clip(tmp_path / "clip", seed=0)
    built, processor = load_referring_segmenter(tmp_path / "clip", model_type="cris", image_size=48, text_length=5,
                                                trainable="decoder+text")
    assert type(built) is CRISReferringSegmenter and built.trainable == "decoder+text"
    batch = RISCollator(processor)([{**row, "sentence": "the big red box on the left"} for row in two_boxes_rows()])
    assert batch["input_ids"].shape[1] == 5 and batch["pixel_values"].shape[-1] == 48  # CRIS's word_len, its input
    assert _logits(built.eval(), batch).shape == (4, 24, 24)
    clipseg, _ = load_referring_segmenter(tmp_path / "clip")
    assert type(clipseg).__name__ == "CLIPSegReferringSegmenter"  # a CLIP still becomes a CLIPSeg by default


@pytest.mark.parametrize(
    ("overrides", "message"),
    [({"feature_layers": [0, 2]}, r"feature_layers must be two layer numbers in 1\.\.2"),
     ({"neck_channels": [16, 48, 64]}, r"the middle one the text tower's width 32"),
     ({"decoder_attention_heads": 3}, "multiple of 4 and of decoder_attention_heads=3"),
     ({"projector_kernel_size": 2}, "projector_kernel_size must be odd")],
)
def test_config_errors_name_the_value(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CRISConfig(clip_config=tiny_clip(0)[0].config.to_dict(), **overrides)


def test_the_vitdet_pyramid_builds_every_scale_from_the_last_layer_and_every_weight_learns(tmp_path) -> None:
    clip, processor = tiny_clip(seed=0)
    model = CRISForReferringSegmentation.from_clip(clip, seed=0, decoder_layers=1, decoder_attention_heads=2)
    assert model.config.pyramid == "vitdet"  # a ViT's default
    assert model.config.pyramid_channels == 16 and model.config.feature_layers is None  # d/2: ViTDet's 256 on ViT-B/16
    assert model.visual_projection is None  # C5 is not read in the joint space: nothing left without a gradient
    pixels = torch.randn(2, 3, 64, 48)  # an 8x6 grid of 8-pixel patches
    asked = []
    hook = model.vision_model.register_forward_pre_hook(lambda _, args, kwargs: asked.append(kwargs), with_kwargs=True)
    with torch.no_grad():
        maps = model.eval().encode_image(pixels)
    hook.remove()
    assert [tuple(m.shape[1:]) for m in maps] == [(16, 16, 12), (16, 8, 6), (16, 4, 3)]
    assert asked[0]["output_hidden_states"] is False  # the last layer alone feeds every scale
    layer_norms = [m for m in model.pyramid.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert len(layer_norms) == 6  # ViTDet: a layer norm after each of each scale's two convolutions
    batch = RISCollator(CLIPProcessor(image_processor=tiny_cris()[1].image_processor, tokenizer=processor.tokenizer))(
        two_boxes_rows())
    segmenter = CRISReferringSegmenter(model).train()
    segmenter(batch["pixel_values"], batch["input_ids"], batch["attention_mask"], labels=batch["labels"]).loss.backward()
    assert sorted(name for name, p in model.named_parameters() if p.grad is None or not p.grad.any()) == []
    model.eval().save_pretrained(tmp_path)
    inputs = {k: batch[k] for k in ("pixel_values", "input_ids", "attention_mask")}
    with torch.no_grad():
        loaded = AutoModel.from_pretrained(tmp_path).eval()
        assert loaded.config.pyramid == "vitdet"
        torch.testing.assert_close(loaded(**inputs).logits, model(**inputs).logits, rtol=0, atol=0)
    with pytest.raises(ValueError, match="feature_layers applies to pyramid='layers' only"):
        CRISConfig(clip_config=clip.config.to_dict(), pyramid="vitdet", feature_layers=[1, 2])
