"""CRIS (Wang et al., "CLIP-Driven Referring Image Segmentation", CVPR 2022) on a CLIP's towers: a ResNet's, as CRIS, or a ViT's.

- :class:`CRISConfig` — the CLIP (``backbone`` ``"clip_resnet"``: a :class:`CLIPResNetConfig`;
  ``"clip_vit"``: a ``CLIPConfig``) and the new layers' sizes (``model_type`` ``"nemo_cris"``);
- :class:`CRISForReferringSegmentation` — the ``PreTrainedModel``: ``forward(pixel_values,
  input_ids, attention_mask, labels=None)`` → ``CRISOutput(loss, logits)``;
  ``from_clip(...)`` builds one on a CLIP's weights (a ``transformers`` ``CLIPModel``, or an
  OpenAI/open_clip ResNet CLIP);
- :class:`CRISReferringSegmenter` — the adapter that training and evaluation use, with
  CRIS's learning-rate groups;
- :class:`CLIPResNetModel`, :class:`CLIPResNetConfig` — OpenAI's ResNet CLIPs (RN50, RN101),
  which ``transformers`` lacks.

One module per part: :mod:`.clip_resnet` (the ResNet CLIP), :mod:`.features` (three scales
from a ResNet or a ViT), :mod:`.neck`, :mod:`.decoder`, :mod:`.projector`, :mod:`.model`.
Importing this package registers the config and model with ``AutoConfig`` and ``AutoModel``:

    >>> from transformers import AutoConfig, AutoModel
    >>> tower = {"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 3, "num_attention_heads": 2}
    >>> clip = {"text_config": tower, "vision_config": {**tower, "patch_size": 8, "image_size": 32}, "projection_dim": 16}
    >>> type(AutoModel.from_config(AutoConfig.for_model("nemo_cris", clip_config=clip))).__name__
    'CRISForReferringSegmentation'
"""

from transformers import AutoConfig, AutoModel

from nemo_hf.modeling.cris.clip_resnet import CLIPResNetConfig, CLIPResNetModel
from nemo_hf.modeling.cris.configuration import CRISConfig
from nemo_hf.modeling.cris.model import CRISForReferringSegmentation, CRISOutput, CRISPreTrainedModel
from nemo_hf.modeling.cris.segmenter import CRISReferringSegmenter

__all__ = ["CLIPResNetConfig", "CLIPResNetModel", "CRISConfig", "CRISForReferringSegmentation", "CRISOutput",
           "CRISPreTrainedModel", "CRISReferringSegmenter"]

# exist_ok: a reload of this module (or of nemo_hf.modeling) registers the same classes again
AutoConfig.register(CRISConfig.model_type, CRISConfig, exist_ok=True)
AutoModel.register(CRISConfig, CRISForReferringSegmentation, exist_ok=True)
