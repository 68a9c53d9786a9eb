"""Qwen2ForCausalLM: q, k, v biases without an output bias; the sliding window only on the layers
``config.layer_types`` marks "sliding_attention" (with ``use_sliding_window``, those from
``max_window_layers`` on)."""
from __future__ import annotations

from . import register_converter
from ._decoder import convert_decoder


def layer_windows(c) -> list[int | None]:
    types = getattr(c, "layer_types", None)
    if types is None:  # transformers < 4.53: derived from use_sliding_window / max_window_layers
        use = getattr(c, "use_sliding_window", False) and c.sliding_window is not None
        types = ["sliding_attention" if use and i >= c.max_window_layers else "full_attention"
                 for i in range(c.num_hidden_layers)]
    return [c.sliding_window if t == "sliding_attention" else None for t in types]


@register_converter("qwen2")
def convert_qwen2(hf_model):
    return convert_decoder(hf_model, "qwen2", qkv_bias=True, o_bias=False, windows=layer_windows(hf_model.config))
