"""CLIP's ResNet (OpenAI's RN50, RN101 CLIPs) for CRIS: its configuration, both towers, and OpenAI's weights read in.

CRIS's published models (Wang et al., CVPR 2022) stand on OpenAI's ResNet CLIPs. ``transformers``
has no CLIP ResNet, and the libraries that do (open_clip, timm) import torchvision when they are
imported, which this project neither needs nor can rely on (torchvision's wheels are built
against one exact torch). So the image tower is written here from CLIP's architecture
(Radford et al., 2021, §2.4: a ResNet with a three-convolution stem, anti-aliased strided
blocks — an average pool before each stride — and an attention pool in place of global
average pooling), its parameters named as OpenAI's and open_clip's checkpoints name them, so
that those weights load by a change of prefix. The text tower is ``transformers``'
``CLIPTextModel``, which is CLIP's text transformer (OpenAI's ``transformer.resblocks.*``
weights are converted to its names by :func:`openai_to_transformers`).

- :class:`CLIPResNetConfig` — the architecture (``model_type`` ``"nemo_clip_resnet"``):
  ``CLIPResNetConfig.openai("RN50")`` or ``("RN101")``, or any sizes;
- :class:`CLIPResNetVision` — the image tower: ``pixel_values → (layer1, …, layer4)`` maps at
  strides 4, 8, 16, 32; its :class:`AttentionPool` (``.attnpool``) attends at every position of
  a grid of any size (its position table resized bicubically), as CRIS reads it;
- :class:`CLIPResNetModel` — both towers and the text projection, a ``PreTrainedModel``;
  :meth:`CLIPResNetModel.from_open_clip` reads OpenAI's layout: an open_clip or OpenAI
  ``CLIP`` module, its ``state_dict()``, or a folder or Hub repository in open_clip's format
  (``open_clip_config.json`` + ``open_clip_model.safetensors``, as
  ``timm/resnet50_clip.openai`` and ``timm/resnet101_clip.openai`` publish OpenAI's weights);
- :func:`load_clip_resnet` — such a checkpoint and its processor (the checkpoint's CLIP
  tokenizer; OpenAI's mean and std); :func:`load_any_clip` — a ``transformers`` CLIP or such a one.

    >>> import torch
    >>> config = CLIPResNetConfig(vision_layers=[1, 1, 1, 1], vision_width=8, image_size=64, projection_dim=16,
    ...                           text_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
    ...                                        "num_attention_heads": 2})  # CLIP's 49408 tokens
    >>> clip = CLIPResNetModel(config).eval()
    >>> [tuple(m.shape) for m in clip.vision_model(torch.zeros(1, 3, 96, 64))]  # widths 4w, 8w, 16w, 32w
    [(1, 32, 24, 16), (1, 64, 12, 8), (1, 128, 6, 4), (1, 256, 3, 2)]
    >>> openai = openai_state_dict(clip)  # OpenAI's names: what open_clip's CLIP holds
    >>> sorted(key for key in openai if "positional_embedding" in key)
    ['positional_embedding', 'visual.attnpool.positional_embedding']
    >>> again = CLIPResNetModel.from_open_clip(openai, text_heads=2)
    >>> all(torch.equal(a, b) for a, b in zip(clip.state_dict().values(), again.state_dict().values()))
    True
"""

from __future__ import annotations

import json
import math
import os
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import (
    AutoTokenizer,
    CLIPModel,
    CLIPProcessor,
    CLIPTextConfig,
    CLIPTextModel,
    PreTrainedConfig,
    PreTrainedModel,
)
from transformers import initialization as init
from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil

from nemo_hf.mining.clip import load_clip
from nemo_hf.pretrained import resolve_pretrained

__all__ = [
    "OPENAI_MEAN",
    "OPENAI_STD",
    "OPEN_CLIP_CONFIG",
    "OPEN_CLIP_WEIGHTS",
    "AttentionPool",
    "CLIPResNetConfig",
    "CLIPResNetModel",
    "CLIPResNetVision",
    "default_init_weights",
    "is_open_clip_checkpoint",
    "load_any_clip",
    "load_clip_resnet",
    "openai_state_dict",
    "openai_to_transformers",
]

OPEN_CLIP_CONFIG = "open_clip_config.json"
OPEN_CLIP_WEIGHTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
# OpenAI's CLIP preprocessing (its clip.py; open_clip's OPENAI_DATASET_MEAN/STD), which CRIS uses too
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
# the vision sizes of OpenAI's ResNet CLIPs (their checkpoints' shapes; open_clip's RN50.json, RN101.json); both
# have the same text tower, CLIPTextConfig's defaults: 512 wide, 12 layers, 8 heads, 77 positions, 49408 tokens
_OPENAI_RESNETS = {"RN50": {"vision_layers": [3, 4, 6, 3], "projection_dim": 1024},
                   "RN101": {"vision_layers": [3, 4, 23, 3], "projection_dim": 512}}
_DROPPED = {"logit_scale", "attn_mask", "input_resolution", "context_length", "vocab_size"}  # not part of the towers


class CLIPResNetConfig(PreTrainedConfig):
    """A ResNet CLIP's architecture: the text tower (``text_config``, a ``CLIPTextConfig``) and the ResNet's sizes.

    Args:
        text_config: the text transformer (default: CLIP's, as in RN50 and RN101).
        vision_layers: bottleneck blocks in each of the ResNet's four stages (RN50: 3, 4, 6, 3).
        vision_width: the stem's width; stage ``i`` is ``4·2^(i-1)·width`` wide, the attention
            pool ``32·width``.
        vision_heads: the attention pool's heads (default: CLIP's ``32·width / 64``).
        image_size: the side CLIP was trained at; the attention pool's position table covers
            its ``image_size / 32`` grid.
        projection_dim: the joint embedding's width (the attention pool's output, the text
            projection's).

    >>> config = CLIPResNetConfig.openai("RN101")
    >>> config.vision_layers, config.vision_heads, config.projection_dim, config.text_config.hidden_size
    ([3, 4, 23, 3], 32, 512, 512)
    """

    model_type = "nemo_clip_resnet"
    sub_configs_defaults = {"text_config": CLIPTextConfig}

    text_config: dict | CLIPTextConfig | None = None
    vision_layers: list[int] | None = None
    vision_width: int = 64
    vision_heads: int | None = None
    image_size: int = 224
    projection_dim: int = 1024

    def __post_init__(self, **kwargs) -> None:
        super().__post_init__(**kwargs)
        self.vision_layers = [int(blocks) for blocks in (self.vision_layers or _OPENAI_RESNETS["RN50"]["vision_layers"])]
        if self.vision_heads is None:
            self.vision_heads = self.vision_width * 32 // 64
        if len(self.vision_layers) != 4 or min(self.vision_layers) < 1:
            raise ValueError(f"vision_layers must be four block counts of at least 1, got {self.vision_layers}")
        pool_width = 32 * self.vision_width
        if self.vision_width < 2 or self.vision_width % 2 or self.vision_heads < 1 or pool_width % self.vision_heads:
            raise ValueError(f"vision_width must be even and its attention pool's width 32·{self.vision_width} a "
                             f"multiple of vision_heads={self.vision_heads}")
        if self.image_size < 32 or self.image_size % 32:
            raise ValueError(f"image_size must be a multiple of 32 (the ResNet's stride), got {self.image_size}")

    @classmethod
    def openai(cls, name: str, **overrides: Any) -> CLIPResNetConfig:
        """The architecture of OpenAI's ``"RN50"`` or ``"RN101"`` CLIP (``overrides``: any field)."""
        if name not in _OPENAI_RESNETS:
            raise ValueError(f"unknown OpenAI ResNet CLIP {name!r}: {sorted(_OPENAI_RESNETS)} are defined here")
        return cls(**{**_OPENAI_RESNETS[name], **overrides})

    @property
    def stage_widths(self) -> list[int]:
        """Channels of the four stages' outputs (bottleneck expansion 4)."""
        return [4 * self.vision_width * 2**stage for stage in range(4)]


def _conv_bn(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1) -> tuple[nn.Conv2d, nn.BatchNorm2d]:
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2, bias=False)
    return conv, nn.BatchNorm2d(out_channels)


class Bottleneck(nn.Module):
    """CLIP's anti-aliased bottleneck: 1×1, 3×3, an average pool for the stride, 1×1 ×4; the shortcut pooled likewise."""

    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1, self.bn1 = _conv_bn(in_channels, planes, 1)
        self.conv2, self.bn2 = _conv_bn(planes, planes, 3)
        self.avgpool = nn.AvgPool2d(stride) if stride > 1 else nn.Identity()
        self.conv3, self.bn3 = _conv_bn(planes, planes * self.expansion, 1)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride > 1 or in_channels != planes * self.expansion:
            conv, bn = _conv_bn(in_channels, planes * self.expansion, 1)
            # OpenAI's names: "-1" the pool (no weights), "0" the convolution, "1" the batch norm
            self.downsample = nn.Sequential(OrderedDict([("-1", nn.AvgPool2d(stride)), ("0", conv), ("1", bn)]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.avgpool(self.relu(self.bn2(self.conv2(out))))
        out = self.bn3(self.conv3(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)


class AttentionPool(nn.Module):
    """CLIP's attention pool, run at every position of the grid: ``(B, C, H, W) → (B, out, H, W)``.

    CLIP pools with one query, the grid's mean; CRIS keeps the grid instead: each position
    attends to all positions (multi-head, the same projections), its position embedding
    the table's grid part resized bicubically to ``H × W`` (the class row has no place on
    a grid). Parameter names are OpenAI's (``positional_embedding``, ``q_proj``, ``k_proj``,
    ``v_proj``, ``c_proj``).

    >>> pool = AttentionPool(grid=2, width=8, heads=2, output_width=4)
    >>> pool(torch.randn(1, 8, 3, 5)).shape
    torch.Size([1, 4, 3, 5])
    """

    def __init__(self, grid: int, width: int, heads: int, output_width: int) -> None:
        super().__init__()
        self.grid, self.heads = grid, heads
        self.positional_embedding = nn.Parameter(torch.randn(grid * grid + 1, width) / width**0.5)
        self.k_proj = nn.Linear(width, width)
        self.q_proj = nn.Linear(width, width)
        self.v_proj = nn.Linear(width, width)
        self.c_proj = nn.Linear(width, output_width)

    def grid_positions(self, height: int, width: int) -> torch.Tensor:
        """``(H·W, C)``: the position table's ``grid × grid`` part, resized bicubically to ``height × width``."""
        table = self.positional_embedding[1:]
        if (height, width) == (self.grid, self.grid):
            return table
        grid = table.reshape(1, self.grid, self.grid, -1).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=(height, width), mode="bicubic", align_corners=False)
        return grid.flatten(2)[0].transpose(0, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = features.shape
        tokens = features.flatten(2).transpose(1, 2) + self.grid_positions(height, width).to(features.dtype)

        def heads(projection: nn.Linear) -> torch.Tensor:
            return projection(tokens).view(batch, height * width, self.heads, -1).transpose(1, 2)

        attended = F.scaled_dot_product_attention(heads(self.q_proj), heads(self.k_proj), heads(self.v_proj))
        out = self.c_proj(attended.transpose(1, 2).reshape(batch, height * width, channels))
        return out.transpose(1, 2).reshape(batch, -1, height, width).contiguous()  # not channels-last strides


class CLIPResNetVision(nn.Module):
    """CLIP's ResNet: ``pixel_values → [layer1, layer2, layer3, layer4]`` at strides 4, 8, 16, 32; ``.attnpool`` beside.

    The attention pool is not applied here: CRIS runs it over the whole ``layer4`` map
    (:class:`AttentionPool`). Parameter names are OpenAI's ``visual.*`` without the prefix.
    """

    def __init__(self, config: CLIPResNetConfig) -> None:
        super().__init__()
        width = config.vision_width
        self.conv1, self.bn1 = _conv_bn(3, width // 2, 3, stride=2)
        self.conv2, self.bn2 = _conv_bn(width // 2, width // 2, 3)
        self.conv3, self.bn3 = _conv_bn(width // 2, width, 3)
        self.avgpool = nn.AvgPool2d(2)
        self.relu = nn.ReLU(inplace=True)
        in_channels = width
        for stage, blocks in enumerate(config.vision_layers):
            planes = width * 2**stage
            layer = [Bottleneck(in_channels, planes, stride=1 if stage == 0 else 2)]
            in_channels = planes * Bottleneck.expansion
            layer += [Bottleneck(in_channels, planes) for _ in range(blocks - 1)]
            self.add_module(f"layer{stage + 1}", nn.Sequential(*layer))
        self.attnpool = AttentionPool(config.image_size // 32, in_channels, config.vision_heads, config.projection_dim)

    def forward(self, pixel_values: torch.Tensor) -> list[torch.Tensor]:
        x = pixel_values.to(self.conv1.weight.dtype)
        for conv, bn in ((self.conv1, self.bn1), (self.conv2, self.bn2), (self.conv3, self.bn3)):
            x = self.relu(bn(conv(x)))
        x = self.avgpool(x)
        stages = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            stages.append(x)
        return stages


def default_init_weights(module: nn.Module) -> None:
    """PyTorch's default initialisation of ``module`` (convolutions, linear layers, norms), CLIP's for a position table.

    What the ResNet's and CRIS's new layers start from; written with
    ``transformers.initialization``, which spares weights already loaded.
    """
    if isinstance(module, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
        init.kaiming_uniform_(module.weight, a=math.sqrt(5))
        if module.bias is not None:
            fan_in, _ = nn.init._calculate_fan_in_and_fan_out(module.weight)
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
            init.uniform_(module.bias, -bound, bound)
    elif isinstance(module, AttentionPool):
        init.normal_(module.positional_embedding, std=module.positional_embedding.shape[1] ** -0.5)
    elif isinstance(module, (nn.LayerNorm, nn.BatchNorm1d, nn.BatchNorm2d)):
        init.ones_(module.weight)
        init.zeros_(module.bias)
        if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            init.zeros_(module.running_mean)
            init.ones_(module.running_var)
            init.zeros_(module.num_batches_tracked)


class CLIPResNetModel(PreTrainedModel):
    """A ResNet CLIP's two towers: ``text_model`` (``CLIPTextModel``), ``text_projection``, ``vision_model`` (ResNet).

    What :meth:`~nemo_hf.modeling.CRISForReferringSegmentation.from_clip` takes the towers
    of; :meth:`from_open_clip` reads OpenAI's and open_clip's checkpoints.
    """

    config_class = CLIPResNetConfig
    config: CLIPResNetConfig
    base_model_prefix = "clip_resnet"
    main_input_name = "pixel_values"
    _supports_sdpa = True

    def __init__(self, config: CLIPResNetConfig) -> None:
        super().__init__(config)
        self.text_model = CLIPTextModel(config.text_config)
        self.text_projection = nn.Linear(config.text_config.hidden_size, config.projection_dim, bias=False)
        self.vision_model = CLIPResNetVision(config)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        default_init_weights(module)

    @classmethod
    def from_open_clip(
        cls,
        source: str | os.PathLike[str] | nn.Module | Mapping[str, torch.Tensor],
        *,
        text_heads: int | None = None,
        tokenizer: Any = None,
        revision: str | None = None,
        token: str | bool | None = None,
    ) -> CLIPResNetModel:
        """A ResNet CLIP in OpenAI's layout: an open_clip/OpenAI ``CLIP`` module, its state dict, or a checkpoint.

        A checkpoint is a folder or Hub repository in open_clip's format
        (``open_clip_config.json`` and ``open_clip_model.safetensors``, e.g.
        ``timm/resnet50_clip.openai``). The architecture is read from the weights' shapes,
        as OpenAI's ``build_model`` reads it; the text tower's heads, which shapes do not
        show, from the module, from ``open_clip_config.json``, from ``text_heads``, or
        OpenAI's rule (width / 64). ``tokenizer`` (default: a checkpoint's own) gives the
        text config its start, end and padding ids: the sentence is read at the first end token.
        """
        config_file: dict[str, Any] = {}
        vision_heads = None
        if isinstance(source, nn.Module):
            blocks = getattr(getattr(source, "transformer", None), "resblocks", None)
            text_heads = text_heads or (blocks[0].attn.num_heads if blocks is not None else None)
            vision_heads = getattr(getattr(getattr(source, "visual", None), "attnpool", None), "num_heads", None)
            state = source.state_dict()
        elif isinstance(source, Mapping):
            state = dict(source)
        else:
            folder = os.fspath(source)
            config_file = _open_clip_file_json(folder, revision, token) or {}
            if not config_file:
                raise ValueError(f"{folder!r} is not an open_clip checkpoint: it has no {OPEN_CLIP_CONFIG}")
            state = _open_clip_weights(folder, revision, token)
            if tokenizer is None:
                tokenizer = _checkpoint_tokenizer(folder, revision, token)
        model_config = config_file.get("model_cfg", {})
        text_heads = text_heads or model_config.get("text_cfg", {}).get("heads")
        config = _config_from_openai(state, text_heads=text_heads, vision_heads=vision_heads, tokenizer=tokenizer)
        model = cls(config)
        converted = openai_to_transformers(state)
        expected = model.state_dict()
        for key in expected:  # a checkpoint written before PyTorch counted batch-norm batches lacks the counters
            if key.endswith("num_batches_tracked"):
                converted.setdefault(key, expected[key])
        missing, unexpected = sorted(expected.keys() - converted.keys()), sorted(converted.keys() - expected.keys())
        if missing or unexpected:
            raise ValueError(f"the weights do not fit a ResNet CLIP: missing {missing[:8]}, unexpected {unexpected[:8]}")
        model.load_state_dict(converted)  # copied into float32 parameters, whatever the checkpoint's dtype
        return model.eval()


def openai_to_transformers(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """OpenAI's (and open_clip's) ResNet-CLIP weight names → :class:`CLIPResNetModel`'s.

    ``visual.*`` keeps its names under ``vision_model.``; the text transformer's become
    ``CLIPTextModel``'s (the packed ``in_proj`` split into ``q_proj``, ``k_proj``, ``v_proj``;
    the projection matrix transposed into a linear layer). ``logit_scale`` and buffers are dropped.

    >>> sorted(openai_to_transformers({"text_projection": torch.zeros(4, 2), "logit_scale": torch.zeros(())}))
    ['text_projection.weight']
    """
    out: dict[str, torch.Tensor] = {}
    unknown = []
    for key, value in state.items():
        key = key.removeprefix("module.")
        if key in _DROPPED:
            continue
        if (renamed := _rename(key, _RENAMES)) is not None:
            out[renamed] = value
        elif key == "text_projection":
            out["text_projection.weight"] = value.t().contiguous()
        elif key.startswith("transformer.resblocks."):
            index, name = key.removeprefix("transformer.resblocks.").split(".", 1)
            prefix = f"text_model.encoder.layers.{index}."
            if name in ("attn.in_proj_weight", "attn.in_proj_bias"):
                kind = name.rsplit("_", 1)[1]
                for projection, part in zip(("q_proj", "k_proj", "v_proj"), value.chunk(3)):
                    out[f"{prefix}self_attn.{projection}.{kind}"] = part.contiguous()
            elif name in _TEXT_BLOCK_NAMES:
                out[prefix + _TEXT_BLOCK_NAMES[name]] = value
            else:
                unknown.append(key)
        else:
            unknown.append(key)
    if unknown:
        raise ValueError(f"not ResNet-CLIP weights in OpenAI's layout: unknown keys {unknown[:8]}")
    return out


# OpenAI's name → ours, for the weights that only move: a name ending in "." renames every key under it
_RENAMES = [("visual.", "vision_model."), ("token_embedding.weight", "text_model.embeddings.token_embedding.weight"),
            ("positional_embedding", "text_model.embeddings.position_embedding.weight"),
            ("ln_final.", "text_model.final_layer_norm.")]


def _rename(key: str, renames: list[tuple[str, str]]) -> str | None:
    """``key`` under its new name from ``renames`` (``(old, new)`` pairs, as :data:`_RENAMES`), or None."""
    for old, new in renames:
        if key == old or (old.endswith(".") and key.startswith(old)):
            return new + key.removeprefix(old)
    return None


_TEXT_BLOCK_NAMES = {
    f"{openai}.{kind}": f"{ours}.{kind}"
    for openai, ours in (("attn.out_proj", "self_attn.out_proj"), ("ln_1", "layer_norm1"), ("ln_2", "layer_norm2"),
                         ("mlp.c_fc", "mlp.fc1"), ("mlp.c_proj", "mlp.fc2"))
    for kind in ("weight", "bias")
}


def openai_state_dict(model: CLIPResNetModel) -> dict[str, torch.Tensor]:
    """:class:`CLIPResNetModel`'s weights under OpenAI's names: the inverse of :func:`openai_to_transformers`.

    What an open_clip ResNet ``CLIP`` (less its ``logit_scale``) loads, and what
    open_clip's checkpoint format stores.
    """
    back = {ours: openai for openai, ours in _TEXT_BLOCK_NAMES.items()}
    state: dict[str, torch.Tensor] = {}
    packed: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in model.state_dict().items():
        if (renamed := _rename(key, [(ours, openai) for openai, ours in _RENAMES])) is not None:
            state[renamed] = value
        elif key == "text_projection.weight":
            state["text_projection"] = value.t().contiguous()
        elif key.startswith("text_model.encoder.layers."):
            index, name = key.removeprefix("text_model.encoder.layers.").split(".", 1)
            prefix = f"transformer.resblocks.{index}."
            if name.startswith("self_attn.") and name.split(".")[1] in ("q_proj", "k_proj", "v_proj"):
                packed.setdefault(f"{prefix}attn.in_proj_{name.rsplit('.', 1)[1]}", {})[name.split(".")[1]] = value
            else:
                state[prefix + back[name]] = value
    for key, parts in packed.items():
        state[key] = torch.cat([parts["q_proj"], parts["k_proj"], parts["v_proj"]])
    return state


def _config_from_openai(
    state: Mapping[str, torch.Tensor], *, text_heads: int | None, vision_heads: int | None, tokenizer: Any
) -> CLIPResNetConfig:
    """The architecture a state dict in OpenAI's layout has (as OpenAI's ``build_model`` reads it)."""
    state = {key.removeprefix("module."): value for key, value in state.items()}
    if "visual.attnpool.positional_embedding" not in state:
        raise ValueError("not a ResNet CLIP: no visual.attnpool.positional_embedding (a ViT CLIP loads as a "
                         "transformers CLIPModel instead)")
    stages = [len({key.split(".")[2] for key in state if key.startswith(f"visual.layer{stage}.")}) for stage in (1, 2, 3, 4)]
    grid = round((state["visual.attnpool.positional_embedding"].shape[0] - 1) ** 0.5)
    width = state["ln_final.weight"].shape[0]
    if text_heads is None and width % 64:
        raise ValueError(f"the text tower's heads are not in its weights, and its width {width} does not follow "
                         "OpenAI's rule (width / 64): pass text_heads")
    text = {
        "vocab_size": state["token_embedding.weight"].shape[0],
        "hidden_size": width,
        "intermediate_size": state["transformer.resblocks.0.mlp.c_fc.weight"].shape[0],
        "num_hidden_layers": len({key.split(".")[2] for key in state if key.startswith("transformer.resblocks.")}),
        "num_attention_heads": text_heads or width // 64,
        "max_position_embeddings": state["positional_embedding"].shape[0],
        "projection_dim": state["text_projection"].shape[1],
    }
    if tokenizer is not None:
        text |= {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
                 "pad_token_id": tokenizer.pad_token_id}
    return CLIPResNetConfig(
        text_config=text, vision_layers=stages, vision_width=state["visual.layer1.0.conv1.weight"].shape[0],
        vision_heads=vision_heads, image_size=grid * 32, projection_dim=state["text_projection"].shape[1])


def _hub_file(name: str, filename: str, revision: str | None, token: str | bool | None) -> Path | None:
    """``filename`` of a local folder or Hub repository, or None when it has none."""
    if os.path.isdir(name):
        path = Path(name) / filename
        return path if path.is_file() else None
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    try:
        return Path(hf_hub_download(name, filename, revision=revision, token=token))
    except (EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError):
        return None


def _open_clip_file_json(name: str, revision: str | None, token: str | bool | None) -> dict[str, Any] | None:
    path = _hub_file(name, OPEN_CLIP_CONFIG, revision, token)
    return None if path is None else json.loads(path.read_text())


def is_open_clip_checkpoint(name: str | os.PathLike[str], revision: str | None = None,
                            token: str | bool | None = None) -> bool:
    """Whether ``name`` (a folder or Hub id) is a checkpoint in open_clip's format (it has ``open_clip_config.json``).

    >>> import tempfile
    >>> is_open_clip_checkpoint(tempfile.mkdtemp())
    False
    """
    return _hub_file(os.fspath(name), OPEN_CLIP_CONFIG, revision, token) is not None


def _open_clip_weights(name: str, revision: str | None, token: str | bool | None) -> dict[str, torch.Tensor]:
    for filename in OPEN_CLIP_WEIGHTS:
        path = _hub_file(name, filename, revision, token)
        if path is None:
            continue
        if filename.endswith(".safetensors"):
            from safetensors.torch import load_file

            return load_file(path)
        return torch.load(path, map_location="cpu", weights_only=True)
    raise ValueError(f"{name!r} has {OPEN_CLIP_CONFIG} but no weights ({' or '.join(OPEN_CLIP_WEIGHTS)})")


def _checkpoint_tokenizer(name: str, revision: str | None, token: str | bool | None) -> Any:
    try:
        return AutoTokenizer.from_pretrained(name, revision=revision, token=token)
    except (OSError, ValueError) as error:
        raise ValueError(f"{name!r} has no tokenizer files that transformers reads (the Hub's timm/resnet*_clip.openai "
                         f"repositories have them; or pass tokenizer=): {error}") from error


def load_clip_resnet(
    name: str | os.PathLike[str], revision: str | None = None, token: str | bool | None = None
) -> tuple[CLIPResNetModel, CLIPProcessor]:
    """A ResNet CLIP in open_clip's format (folder or Hub id) and its processor.

    The processor's tokenizer is the checkpoint's (OpenAI's CLIP BPE on the Hub's
    ``timm/resnet*_clip.openai``); its images are normalised with the checkpoint's
    ``preprocess_cfg`` mean and std (OpenAI's by default), at the CLIP's side.
    """
    name = os.fspath(name)
    preprocess = (_open_clip_file_json(name, revision, token) or {}).get("preprocess_cfg", {})
    tokenizer = _checkpoint_tokenizer(name, revision, token)
    model = CLIPResNetModel.from_open_clip(name, tokenizer=tokenizer, revision=revision, token=token)
    side = model.config.image_size
    image_processor = ViTImageProcessorPil(
        size={"height": side, "width": side}, image_mean=list(preprocess.get("mean", OPENAI_MEAN)),
        image_std=list(preprocess.get("std", OPENAI_STD)), resample=3)  # 3: PIL's bicubic, as CLIP resizes
    return model, CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer)


def load_any_clip(
    name: str | os.PathLike[str], revision: str | None = None, token: str | bool | None = None
) -> tuple[CLIPModel | CLIPResNetModel, CLIPProcessor]:
    """A CLIP and its processor by name: a ``transformers`` ``CLIPModel`` checkpoint, or a ResNet CLIP in open_clip's format.

    A shipped name (``nemo-hf/synthetic-clip``) is resolved first; a local folder is told
    by its files, a Hub repository by trying ``transformers``' format first.

    >>> model, _ = load_any_clip("nemo-hf/synthetic-clip")
    >>> type(model).__name__
    'CLIPModel'
    """
    name = resolve_pretrained(os.fspath(name))
    if os.path.isdir(name):
        if is_open_clip_checkpoint(name):
            return load_clip_resnet(name)
        return load_clip(name, revision=revision)
    try:
        return load_clip(name, revision=revision)
    except ValueError:
        if not is_open_clip_checkpoint(name, revision, token):
            raise
    return load_clip_resnet(name, revision=revision, token=token)
