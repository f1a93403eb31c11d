"""CRIS as its authors built it, on a CLIP ResNet: it learns, saves and loads, reads C3/C4/C5 as CRIS does,
groups its learning rates as CRIS does, and at RN50's sizes has CRIS-R50's parameters part by part."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from transformers import AutoModel

from nemo_hf.modeling import (
    CLIPResNetConfig,
    CLIPResNetModel,
    CRISConfig,
    CRISForReferringSegmentation,
    CRISReferringSegmenter,
    RISCollator,
    load_referring_segmenter,
    per_sample_bce,
)
from nemo_hf.modeling.cris.clip_resnet import openai_state_dict
from nemo_hf.trainer.args import TrainingConfig
from nemo_hf.trainer.segmenter_training import parameter_groups
from tests.test_cris import _logits, _overall_iou
from tests.tiny_cris import tiny_cris, tiny_cris_resnet, two_boxes_rows
from tests.tiny_models import save_tiny_open_clip_resnet, tiny_clip_resnet

torch.set_num_threads(1)

_INPUTS = ("pixel_values", "input_ids", "attention_mask")


def test_tiny_resnet_cris_overfits_a_batch_and_every_parameter_learns() -> None:
    model, processor = tiny_cris_resnet(seed=0)
    segmenter = CRISReferringSegmenter(model)
    batch = RISCollator(processor, with_targets=True)(two_boxes_rows())
    groups = segmenter.trainable_parameters()
    listed = [id(p) for params in groups.values() for p in params]
    assert sorted(listed) == sorted(id(p) for p in model.parameters()) and len(set(listed)) == len(listed)
    optimizer = torch.optim.Adam([{"params": groups["decoder"], "lr": 3e-3},
                                  {"params": groups["text"] + groups["vision"], "lr": 3e-4}])
    torch.manual_seed(0)  # the decoder's dropout
    for step in range(200):
        segmenter.train()
        per_sample_bce(_logits(segmenter, batch), batch["labels"]).mean().backward()
        if step == 0:  # the ResNet, its attention pool and the residual branch all get gradients
            no_gradient = sorted(name for name, p in model.named_parameters() if p.grad is None or not p.grad.any())
            assert no_gradient == []
        optimizer.step()
        optimizer.zero_grad()
    with torch.no_grad():  # logits at a quarter of the side (16x16): box edges fall inside output pixels
        iou = _overall_iou(_logits(segmenter.eval(), batch), batch["target_masks"])
    assert iou > 0.85  # 0.90 here; a model that did not learn the text scores under 0.5


def test_c3_c4_c5_are_layer2_layer3_and_the_attention_pool_at_strides_8_16_32() -> None:
    model, _ = tiny_cris_resnet(seed=0)
    clip = model.config.clip_config
    pixels = torch.randn(2, 3, 96, 64)  # a grid (3x2 at stride 32) unlike the pool's trained 2x2: its table is resized
    with torch.no_grad():
        c3, c4, c5 = model.eval().encode_image(pixels)
        stages = model.vision_model(pixels)
        pooled = model.vision_model.attnpool(stages[3])
        residual = model.pyramid.residual(stages[3])
    assert [tuple(m.shape[1:]) for m in (c3, c4, c5)] == [
        (clip.stage_widths[1], 12, 8), (clip.stage_widths[2], 6, 4), (clip.projection_dim, 3, 2)]
    assert clip.stage_widths[1:3] == [8 * clip.vision_width, 16 * clip.vision_width]
    assert torch.equal(c3, stages[1]) and torch.equal(c4, stages[2])
    torch.testing.assert_close(c5, torch.relu(pooled + residual))  # CRIS's C5: pool + residual branch, then ReLU
    assert model.neck.c5_proj[0].in_channels == clip.projection_dim
    assert model(pixel_values=pixels, input_ids=torch.tensor([[0, 5, 1], [0, 7, 1]])).logits.shape == (2, 24, 16)


def _architecture(config: CLIPResNetConfig) -> dict:
    """The config's fields less the dtype, which loading sets."""
    fields = config.to_dict()
    return {**fields, "dtype": None, "text_config": {**fields["text_config"], "dtype": None}}


def test_save_and_load_round_trip_without_anything_but_the_folder(tmp_path) -> None:
    model, processor = tiny_cris_resnet(seed=1)
    batch = RISCollator(processor)(two_boxes_rows())
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(2):  # batch-norm statistics (the ResNet's too) away from their initial values
        model.train()
        model(**{k: batch[k] for k in (*_INPUTS, "labels")}).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval().save_pretrained(tmp_path)
    inputs = {k: batch[k] for k in _INPUTS}
    with torch.no_grad():
        expected = model(**inputs).logits
        for loaded in (CRISForReferringSegmentation.from_pretrained(tmp_path), AutoModel.from_pretrained(tmp_path)):
            assert type(loaded) is CRISForReferringSegmentation and isinstance(loaded.config.clip_config, CLIPResNetConfig)
            assert _architecture(loaded.config.clip_config) == _architecture(model.config.clip_config)
            torch.testing.assert_close(loaded.eval()(**inputs).logits, expected, rtol=0, atol=0)


def test_the_optimizer_groups_follow_cris_position_embeddings_at_the_heads_rate() -> None:
    args = TrainingConfig.parse(["--synthetic_images", "4", "--learning_rate", "1e-4", "--text_encoder_learning_rate",
                                 "1e-5", "--vision_encoder_learning_rate", "1e-5"]).run
    model, _ = tiny_cris_resnet(seed=0)
    rate = {id(p): group["lr"] for group in parameter_groups(CRISReferringSegmenter(model), args)
            for p in group["params"]}
    names = {id(p): name for name, p in model.named_parameters()}
    head = sorted(names[i] for i, lr in rate.items() if lr == 1e-4 and not names[i].startswith(
        ("neck.", "decoder.", "projector.")))
    # CRIS's build_segmenter: the backbone at lr_multi x base_lr except "positional_embedding", at base_lr
    assert head == ["text_model.embeddings.position_embedding.weight", "vision_model.attnpool.positional_embedding"]
    assert {rate[id(p)] for p in model.pyramid.parameters()} == {1e-5}  # the residual branch, backbone.visual... in CRIS
    assert len(rate) == len(list(model.parameters()))

    def ids(params: list) -> set[int]:
        return {id(p) for p in params}

    parts = CRISReferringSegmenter(model, rate_groups="parts").trainable_parameters()
    assert id(model.vision_model.attnpool.positional_embedding) in ids(parts["vision"])
    frozen_vision = CRISReferringSegmenter(model, trainable="decoder+text").trainable_parameters()
    assert id(model.text_model.embeddings.position_embedding.weight) in ids(frozen_vision["decoder"])
    assert ids(model.pyramid.parameters()) <= ids(frozen_vision["decoder"])  # new, so it trains with the head
    assert not model.vision_model.attnpool.positional_embedding.requires_grad
    with pytest.raises(ValueError, match="rate_groups must be one of"):
        CRISReferringSegmenter(model, rate_groups="backbone")

    vit, _ = tiny_cris(seed=0)
    vit_groups = CRISReferringSegmenter(vit).trainable_parameters()
    assert ids(vit.position_embeddings()) == ids(vit_groups["decoder"]) - ids(vit.parameters(recurse=False)) - {
        id(p) for m in vit.new_modules() for p in m.parameters()}


def _rn50_parts(model: CRISForReferringSegmentation) -> dict[str, int]:
    count = lambda *modules: sum(p.numel() for module in modules for p in module.parameters())  # noqa: E731
    return {"clip_resnet": count(model.vision_model), "residual": count(model.pyramid),
            "text": count(model.text_model, model.text_projection), "neck": count(model.neck),
            "decoder": count(model.decoder), "projector": count(model.projector)}


def _clip_resnet_parameters(layers: list[int], width: int, image_size: int, joint: int) -> int:
    """CLIP's ResNet counted from its definition (Radford et al. 2021; OpenAI's ``model.py``: ``ModifiedResNet``)."""
    bn = lambda channels: 2 * channels  # noqa: E731  (weight and bias)
    total = 3 * (width // 2) * 9 + bn(width // 2) + (width // 2) ** 2 * 9 + bn(width // 2) + (width // 2) * width * 9 + bn(width)
    inplanes = width
    for stage, blocks in enumerate(layers):
        planes = width * 2**stage
        for block in range(blocks):
            total += inplanes * planes + bn(planes) + planes * planes * 9 + bn(planes) + planes * 4 * planes + bn(4 * planes)
            if block == 0:  # stride 2, or widening: the shortcut's 1x1 convolution and batch norm
                total += inplanes * 4 * planes + bn(4 * planes)
            inplanes = 4 * planes
    grid = image_size // 32
    return total + (grid**2 + 1) * inplanes + 3 * (inplanes**2 + inplanes) + inplanes * joint + joint


def _clip_text_parameters(vocab: int, context: int, width: int, layers: int, joint: int) -> int:
    """CLIP's text transformer counted from its definition (OpenAI's ``model.py``: ``Transformer``, ``ln_final``,
    ``text_projection``)."""
    block = 4 * (width**2 + width) + 2 * 2 * width + (width * 4 * width + 4 * width) + (4 * width * width + width)
    return vocab * width + context * width + layers * block + 2 * width + width * joint


def test_cris_r50_has_cris_parameter_count_part_by_part() -> None:
    with torch.device("meta"):  # shapes only: no memory, no initialisation time
        model = CRISForReferringSegmentation(CRISConfig(backbone="clip_resnet"))
    parts = _rn50_parts(model)
    # the backbone from the architecture's definition (RN50: layers 3, 4, 6, 3; width 64; 224 px; joint width 1024;
    # text 49408 tokens, 77 positions, 512 wide, 12 layers); CRIS's residual branch: 1x1 conv 2048 -> 1024 + BN
    assert parts["clip_resnet"] == _clip_resnet_parameters([3, 4, 6, 3], 64, 224, 1024) == 38_316_896
    assert parts["text"] == _clip_text_parameters(49408, 77, 512, 12, 1024) == 63_690_240
    assert parts["residual"] == 2048 * 1024 + 2 * 1024
    # CRIS.pytorch's own modules (commit e596332, config/refcoco/cris_r50.yaml's sizes: FPN([512, 1024, 1024],
    # [256, 512, 1024]), TransformerDecoder(3, 512, 8, 2048), Projector(1024, 256, 3)), instantiated and counted
    assert (parts["neck"], parts["decoder"], parts["projector"]) == (24_142_336, 12_631_552, 5_968_897)
    # CRIS-R50 as CRIS.pytorch builds it has 146,849,122: the same plus CLIP's logit_scale, which CRIS never uses
    assert sum(parts.values()) + 1 == 146_849_122 == sum(p.numel() for p in model.parameters()) + 1

    with torch.device("meta"):
        r101 = CRISForReferringSegmentation(CRISConfig(clip_config=CLIPResNetConfig.openai("RN101")))
    assert r101.neck.c5_proj[0].in_channels == 512 and r101.projector.kernel.in_features == 512  # fpn_in, word_dim
    assert sum(p.numel() for p in r101.parameters()) + 1 == 161_251_682  # CRIS.pytorch's CRIS-R101, counted alike


class _OpenClipLike(torch.nn.Module):
    """What CRIS reads of an open_clip ResNet ``CLIP``: its ``state_dict()`` (OpenAI's names) and its heads."""

    def __init__(self, clip: CLIPResNetModel) -> None:
        super().__init__()
        self.openai = openai_state_dict(clip) | {"logit_scale": torch.zeros(())}
        heads = lambda n: SimpleNamespace(attn=SimpleNamespace(num_heads=n))  # noqa: E731
        self.transformer = SimpleNamespace(resblocks=[heads(clip.config.text_config.num_attention_heads)])
        self.visual = SimpleNamespace(attnpool=SimpleNamespace(num_heads=clip.config.vision_heads))

    def state_dict(self, *args, **kwargs) -> dict:
        return dict(self.openai)


def test_the_loader_builds_cris_on_a_resnet_clip_in_open_clips_format(tmp_path) -> None:
    folder = save_tiny_open_clip_resnet(tmp_path / "rn", seed=2)
    segmenter, processor = load_referring_segmenter(folder, image_size=96, text_length=7)  # CRIS: the only choice
    assert type(segmenter) is CRISReferringSegmenter and segmenter.model.config.backbone == "clip_resnet"
    assert processor.image_processor.size["height"] == 96 and processor.tokenizer.model_max_length == 7
    clip, _ = tiny_clip_resnet(seed=2)
    state = segmenter.model.state_dict()
    assert all(torch.equal(value, state[key]) for key, value in clip.state_dict().items())  # every tower weight read
    batch = RISCollator(processor)(two_boxes_rows())
    assert _logits(segmenter.eval(), batch).shape == (4, 24, 24)
    with pytest.raises(ValueError, match="CRIS stands on one, CLIPSeg needs a ViT CLIP"):
        load_referring_segmenter(folder, model_type="clipseg")

    # from_clip takes the same CLIP as a folder, a CLIPResNetModel, or an open_clip ResNet CLIP module
    built = [CRISForReferringSegmentation.from_clip(source, seed=4) for source in (folder, clip, _OpenClipLike(clip))]
    first = built[0].state_dict()
    assert all(torch.equal(first[key], other.state_dict()[key]) for other in built[1:] for key in first)


def test_open_clips_module_layout_converts_back_and_forth() -> None:
    clip, _ = tiny_clip_resnet(seed=5)
    openai = openai_state_dict(clip)
    assert openai["text_projection"].shape == (32, 16) and "transformer.resblocks.0.attn.in_proj_weight" in openai
    again = CLIPResNetModel.from_open_clip(openai, text_heads=2)
    assert all(torch.equal(a, b) for a, b in zip(clip.state_dict().values(), again.state_dict().values()))
    with pytest.raises(ValueError, match="not a ResNet CLIP"):
        CLIPResNetModel.from_open_clip({k: v for k, v in openai.items() if "attnpool" not in k})
    with pytest.raises(ValueError, match="pass text_heads"):  # 32 wide: OpenAI's width / 64 cannot be its heads
        CLIPResNetModel.from_open_clip(openai)
    with pytest.raises(ValueError, match=r"do not fit a ResNet CLIP: missing \[\], unexpected \['vision_model.proj'\]"):
        CLIPResNetModel.from_open_clip(openai | {"visual.proj": torch.zeros(2)}, text_heads=2)
    with pytest.raises(ValueError, match=r"unknown keys \['text.token_embedding'\]"):
        CLIPResNetModel.from_open_clip(openai | {"text.token_embedding": torch.zeros(2)}, text_heads=2)


@pytest.mark.parametrize(
    ("fields", "message"),
    [({"backbone": "clip_resnet", "feature_layers": [1, 2]}, "feature_layers applies to pyramid='layers' only"),
     ({"backbone": "clip_resnet", "pyramid": "vitdet"}, r"pyramid must be one of \('resnet',\)"),
     ({"backbone": "clip_vit", "clip_config": CLIPResNetConfig()}, "is a clip_resnet configuration, but backbone"),
     ({"backbone": "resnet"}, "backbone must be one of")],
)
def test_config_errors_name_the_value(fields: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CRISConfig(**fields)


@pytest.mark.parametrize(
    ("fields", "message"),
    [({"image_size": 100}, "image_size must be a multiple of 32"),
     ({"vision_layers": [3, 4, 6]}, "vision_layers must be four block counts"),
     ({"vision_width": 8, "vision_heads": 3}, r"32·8 a multiple of vision_heads=3")],
)
def test_resnet_config_errors_name_the_value(fields: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CLIPResNetConfig(**fields)
    with pytest.raises(ValueError, match="unknown OpenAI ResNet CLIP 'RN50x4'"):
        CLIPResNetConfig.openai("RN50x4")
