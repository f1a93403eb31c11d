"""The data layer: RefCOCO-family files read safely, the ``RefCOCO`` builder, views.

One config per dataset and split scheme:

>>> sorted(VARIANTS)
['grefcoco_unc', 'refcoco_google', 'refcoco_unc', 'refcocog_google', 'refcocog_umd', 'refcocoplus_unc']
"""

from nemo_hf.data.builder import RefCOCO, RefCOCOConfig
from nemo_hf.data.configs import VARIANTS, get_variant
from nemo_hf.data.load import load_refcoco, per_sentence, stats_table
from nemo_hf.data.refer_files import ReferDataWarning, ReferFileError

__all__ = [
    "RefCOCO",
    "RefCOCOConfig",
    "ReferDataWarning",
    "ReferFileError",
    "VARIANTS",
    "get_variant",
    "load_refcoco",
    "per_sentence",
    "stats_table",
]
