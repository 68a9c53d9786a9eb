"""seqarena models: one mixer interface, blocks, a language model and every mixer.

    from archs import build_mixer, Block, LanguageModel
    layer = build_mixer("attention", d_model=512)   # (B, L, D) -> (B, L, D)
"""
from .block import Block
from .convert import from_transformers, supported_model_types
from .layers import GatedRMSNorm, RMSNorm, SwiGLU
from .mixer import Mixer
from .model import LanguageModel, build_language_model
from .registry import build_mixer, mixer_class, mixer_names, register_mixer
from .short_conv import ShortConv
from .state import MixerState

__all__ = [
    "Block", "GatedRMSNorm", "LanguageModel", "Mixer", "MixerState", "RMSNorm", "ShortConv", "SwiGLU",
    "build_language_model", "build_mixer", "from_transformers", "mixer_class", "mixer_names", "register_mixer",
    "supported_model_types",
]
