"""Random-weight tiny models built from configs, for offline tests and examples.

:mod:`nemo_hf.testing.tiny_models` holds a tiny CLIP and its in-code tokenizer,
:mod:`nemo_hf.testing.tiny_clipseg` a tiny CLIPSeg built on them.
"""
