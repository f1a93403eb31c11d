"""The data layer: RefCOCO-family files read safely, the ``RefCOCO`` builder, views."""

from .builder import RefCOCO, RefCOCOConfig
from .configs import VARIANTS, get_variant
from .load import load_refcoco, per_sentence, stats_table
from .refer_files import ReferDataWarning, ReferFileError

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
