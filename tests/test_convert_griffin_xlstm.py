"""archs.from_transformers for RecurrentGemmaForCausalLM and xLSTMForCausalLM: tiny random HF models of
each variant, converted, compute the same logits (fp64 models, 1e-4 relative: HF computes its norms,
RoPE, scan accumulators and xLSTM's logits in fp32 even in fp64) and the same greedy generation
(prefill + cached decode on both sides); the converted model round-trips through save_pretrained."""
from __future__ import annotations

from unittest import mock

import pytest
import torch

import archs
from test_convert_hf import hf_conformance

tr = pytest.importorskip("transformers")

V = 61  # vocab
_RG = dict(vocab_size=V, hidden_size=32, intermediate_size=48, num_hidden_layers=3, num_attention_heads=4,
           num_key_value_heads=1, lru_width=32, conv1d_width=4, attention_window_size=5)
# HF's xLSTM cache rounds the q/k and v widths up to multiples of 64 while its layer does not:
# hidden_size * qk_dim_factor must be a multiple of 64 for its generate() to run
_XL = dict(vocab_size=V, hidden_size=128, num_hidden_layers=2, num_heads=4, chunk_size=8, ffn_proj_factor=1.5,
           ffn_round_up_to_multiple_of=16, autocast_kernel_dtype="float32", mode="inference")

CASES = {
    # the 2b block pattern (recurrent, recurrent, attention), MQA, RoPE on half of each head, window 5
    "recurrent_gemma/griffin_mqa": ("recurrent_gemma", _RG),
    "recurrent_gemma/untied_gqa_qkv_bias_lru48_cap2": (
        "recurrent_gemma", dict(_RG, num_hidden_layers=4, num_key_value_heads=2, lru_width=48, attention_bias=True,
                                tie_word_embeddings=False, logits_soft_cap=2.0, rms_norm_eps=1e-5)),
    "recurrent_gemma/attention_first_rotary_quarter": (
        "recurrent_gemma", dict(_RG, block_types=["attention", "recurrent"], partial_rotary_factor=0.25,
                                attention_window_size=16, conv1d_width=3)),
    "xlstm/single": ("xlstm", _XL),
    "xlstm/single_bias_caps_eps": ("xlstm", dict(_XL, use_bias=True, output_logit_soft_cap=2.0, gate_soft_cap=3.0,
                                                 norm_eps=1e-5, eps=1e-4)),
    "xlstm/fused_bias": ("xlstm", dict(_XL, weight_mode="fused", use_bias=True)),
}


def _perturb(hf, keep=("recurrent_param",)) -> None:
    """Random weights at a useful scale everywhere (HF zeroes biases, sets norms to 1 (or 0 with a unit
    offset) and gives tiny embeddings), so that a wrong map or a missing knob shows."""
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if any(k in name for k in keep):
                continue
            if "norm" in name or p.dim() == 1 or "bias" in name:
                p.add_(0.2 * torch.randn_like(p))
            elif "embed" in name:
                p.normal_(0.0, 0.05)
            else:
                p.normal_(0.0, p.shape[-1] ** -0.5)


def build_hf(name: str, seed: int = 0):
    model_type, kwargs = CASES[name]
    torch.manual_seed(seed)
    if model_type == "recurrent_gemma":
        hf = tr.RecurrentGemmaForCausalLM(tr.RecurrentGemmaConfig(**kwargs))
    else:
        config = tr.xLSTMConfig(**kwargs)
        if config.weight_mode == "fused":  # HF's own init fails on the fused ifgate (it slices 2H biases by H)
            from transformers.models.xlstm import modeling_xlstm
            with mock.patch.object(modeling_xlstm.xLSTMPreTrainedModel, "_init_weights", lambda self, module: None):
                hf = tr.xLSTMForCausalLM(config)
            with torch.no_grad():
                for pname, p in hf.named_parameters():
                    p.copy_(torch.ones_like(p) if "norm" in pname else torch.zeros_like(p))
        else:
            hf = tr.xLSTMForCausalLM(config)
    hf = hf.double().eval()
    _perturb(hf)
    return hf


def conformance(name: str, **kw) -> tuple[float, bool]:
    """``hf_conformance`` (tests/test_convert_hf.py) for case ``name``."""
    return hf_conformance(build_hf(name), V, **kw)


@pytest.mark.parametrize("name", list(CASES))
def test_same_logits_and_greedy_generation(name):
    err, same = conformance(name)
    print(f"{name}: logit error {err:.2e}, greedy generation equal: {same}")
    assert err < 1e-4, f"{name}: logits differ by {err:.2e} relative"
    assert same, f"{name}: greedy generation differs"


@pytest.mark.parametrize("name", ["recurrent_gemma/untied_gqa_qkv_bias_lru48_cap2", "xlstm/fused_bias"])
def test_converted_model_round_trips_through_save_pretrained(tmp_path, name):
    lm = archs.from_transformers(build_hf(name))
    lm.save_pretrained(tmp_path / "m")
    back = archs.LanguageModel.from_pretrained(tmp_path / "m")
    assert back.config == lm.config
    tokens = torch.randint(0, V, (2, 12))
    assert torch.equal(lm(tokens), back(tokens))
    assert torch.equal(lm.generate(tokens[:, :5], 6, temperature=0), back.generate(tokens[:, :5], 6, temperature=0))


def test_recurrent_gemma_knobs_are_set():
    hf = build_hf("recurrent_gemma/griffin_mqa")
    lm = archs.from_transformers(hf)
    assert [type(b.mixer).__name__ for b in lm.blocks] == ["RGLRU", "RGLRU", "Attention"]
    att = lm.blocks[2].mixer
    assert (att.n_kv_heads, att.window, att.rope_dim, att.head_dim) == (1, 5, 4, 8)
    assert att.o_proj.bias is not None and att.q_proj.bias is None
    assert lm.embed_scale == float(hf.model.normalizer) != 32 ** 0.5  # HF's bf16-rounded sqrt(hidden_size)
    assert lm.logit_soft_cap == 30.0 and lm.norm.unit_offset and lm.blocks[0].mlp.activation == "gelu_tanh"
    assert lm.tie_embeddings


def test_xlstm_head_is_untied_even_when_config_says_tied():
    """HF's xLSTMForCausalLM never ties its head (it declares no tied weights): the converter follows
    the weights, not the flag."""
    model_type, kwargs = CASES["xlstm/single"]
    torch.manual_seed(0)
    hf = tr.xLSTMForCausalLM(tr.xLSTMConfig(**dict(kwargs, tie_word_embeddings=True))).double().eval()
    _perturb(hf)
    lm = archs.from_transformers(hf)
    assert not lm.tie_embeddings
    assert torch.equal(lm.head.weight, hf.lm_head.weight)


def test_unsupported_options_are_named():
    cfg = tr.RecurrentGemmaConfig(**dict(_RG, hidden_activation="relu"))
    with pytest.raises(ValueError, match="hidden_activation='relu'"):
        archs.from_transformers(tr.RecurrentGemmaForCausalLM(cfg))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["recurrent_gemma/griffin_mqa", "recurrent_gemma/attention_first_rotary_quarter",
                                  "xlstm/single", "xlstm/fused_bias"])
def test_long_cached_decode_matches(name):
    """300 greedy tokens through the caches of both implementations (the local-attention window wraps,
    the mLSTM state runs through many chunks)."""
    err, same = conformance(name, seq_len=64, prompt_len=16, new_tokens=300)
    assert err < 1e-4 and same, (name, err, same)
