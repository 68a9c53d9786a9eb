"""archs.from_transformers: tiny random HF models of every supported type and variant, converted,
compute the same logits (fp64, 1e-4 relative: HF runs its norms and RoPE in fp32 even in fp64) and
the same greedy generation (prefill + cached decode on both sides)."""
from __future__ import annotations

import copy

import pytest
import torch

import archs

tr = pytest.importorskip("transformers")

V = 61  # vocab
_LLAMA = dict(vocab_size=V, hidden_size=32, intermediate_size=40, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=64)
_ROPE = dict(rope_theta=10000.0)

# name -> (model class, config class, config kwargs)
CASES = {
    "mamba/tied": ("MambaForCausalLM", "MambaConfig",
                   dict(vocab_size=V, hidden_size=16, state_size=8, num_hidden_layers=2, time_step_rank=4)),
    "mamba/untied_bias_eps1e-6": ("MambaForCausalLM", "MambaConfig",
                                  dict(vocab_size=V, hidden_size=16, state_size=4, num_hidden_layers=2, time_step_rank=3,
                                       conv_kernel=3, use_bias=True, tie_word_embeddings=False, layer_norm_epsilon=1e-6)),
    "mamba2/groups1": ("Mamba2ForCausalLM", "Mamba2Config",
                       dict(vocab_size=V, hidden_size=16, state_size=8, num_hidden_layers=2, num_heads=4, head_dim=8,
                            n_groups=1, chunk_size=8)),
    "mamba2/groups8": ("Mamba2ForCausalLM", "Mamba2Config",
                       dict(vocab_size=V, hidden_size=32, state_size=4, num_hidden_layers=2, num_heads=8, head_dim=8,
                            n_groups=8, chunk_size=8)),
    "mamba2/groups2_tied_dtlimit": ("Mamba2ForCausalLM", "Mamba2Config",
                                    dict(vocab_size=V, hidden_size=16, state_size=4, num_hidden_layers=2, num_heads=4,
                                         head_dim=8, n_groups=2, chunk_size=8, tie_word_embeddings=True,
                                         time_step_limit=(0.02, 0.08), layer_norm_epsilon=1e-6)),
    "llama/gqa_eps1e-5": ("LlamaForCausalLM", "LlamaConfig", dict(_LLAMA, rms_norm_eps=1e-5)),
    "llama/tied_bias_head_dim12": ("LlamaForCausalLM", "LlamaConfig",
                                   dict(_LLAMA, head_dim=12, attention_bias=True, tie_word_embeddings=True)),
    "llama/rope_llama3": ("LlamaForCausalLM", "LlamaConfig",
                          dict(_LLAMA, rope_parameters=dict(_ROPE, rope_type="llama3", factor=8.0, low_freq_factor=1.0,
                                                            high_freq_factor=4.0, original_max_position_embeddings=16))),
    "llama/rope_linear": ("LlamaForCausalLM", "LlamaConfig",
                          dict(_LLAMA, rope_parameters=dict(_ROPE, rope_type="linear", factor=3.0))),
    "llama/rope_yarn": ("LlamaForCausalLM", "LlamaConfig",
                        dict(_LLAMA, rope_parameters=dict(_ROPE, rope_type="yarn", factor=4.0, original_max_position_embeddings=16))),
    "llama/rope_dynamic": ("LlamaForCausalLM", "LlamaConfig",
                           dict(_LLAMA, max_position_embeddings=9, rope_parameters=dict(_ROPE, rope_type="dynamic", factor=2.0))),
    "mistral/window5_head_dim12": ("MistralForCausalLM", "MistralConfig",
                                   dict(_LLAMA, head_dim=12, sliding_window=5, rms_norm_eps=1e-5)),
    "qwen2/qkv_bias_tied": ("Qwen2ForCausalLM", "Qwen2Config", dict(_LLAMA, tie_word_embeddings=True)),
    "qwen2/window_top_layers_yarn": ("Qwen2ForCausalLM", "Qwen2Config",
                                     dict(_LLAMA, num_hidden_layers=3, use_sliding_window=True, sliding_window=4,
                                          max_window_layers=1, rope_parameters=dict(_ROPE, rope_type="yarn", factor=2.0,
                                                                                    original_max_position_embeddings=32))),
}


def build_hf(name: str, seed: int = 0):
    model_cls, config_cls, kwargs = CASES[name]
    torch.manual_seed(seed)
    hf = getattr(tr, model_cls)(getattr(tr, config_cls)(**kwargs)).double().eval()
    with torch.no_grad():  # HF inits norms to 1 and biases to 0: perturb them so a wrong map shows
        for pname, p in hf.named_parameters():
            if "norm" in pname or "bias" in pname or pname.endswith(".D"):
                p.add_(0.2 * torch.randn_like(p))
    return hf


def hf_conformance(hf, vocab: int, seq_len: int = 20, prompt_len: int = 7, new_tokens: int = 10) -> tuple[float, bool]:
    """(max |logit difference| / max |logit|, greedy generations equal) of the HF model ``hf`` and
    ``archs.from_transformers`` of it, on the same random tokens (fp64 difference)."""
    lm = archs.from_transformers(copy.deepcopy(hf))  # fresh HF copies: dynamic RoPE keeps state across calls
    tokens = torch.randint(0, vocab, (2, seq_len), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = copy.deepcopy(hf)(tokens).logits
        ours = lm(tokens)
    err = ((ref.double() - ours.double()).abs().max() / ref.abs().max()).item()
    prompt = tokens[:, :prompt_len]
    hf_gen = copy.deepcopy(hf)
    hf_gen.generation_config.eos_token_id = None  # plain greedy: no stop token, no logit processors
    ref_gen = hf_gen.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=new_tokens,
                              do_sample=False, pad_token_id=0)
    ours_gen = lm.generate(prompt, new_tokens, temperature=0)
    return err, torch.equal(ref_gen, ours_gen)


def conformance(name: str, **kw) -> tuple[float, bool]:
    """``hf_conformance`` for case ``name``."""
    return hf_conformance(build_hf(name), V, **kw)


@pytest.mark.parametrize("name", list(CASES))
def test_same_logits_and_greedy_generation(name):
    err, same = conformance(name)
    assert err < 1e-4, f"{name}: logits differ by {err:.2e} relative"
    assert same, f"{name}: greedy generation differs"


def test_converted_model_keeps_hf_dtype_and_options():
    hf = build_hf("qwen2/window_top_layers_yarn")
    lm = archs.from_transformers(hf)
    assert lm.embed.weight.dtype == torch.float64
    windows = [b.mixer.window for b in lm.blocks]
    assert windows == [None, 4, 4]  # Qwen2: sliding window from max_window_layers on
    att = lm.blocks[0].mixer
    assert att.q_proj.bias is not None and att.o_proj.bias is None
    assert lm.blocks[0].norm1.eps == hf.config.rms_norm_eps and lm.norm.eps == hf.config.rms_norm_eps


def test_mamba2_groups_norm_is_per_group():
    """n_groups > 1 must normalise each group on its own (the bug that made n_groups=8 a different model)."""
    lm = archs.from_transformers(build_hf("mamba2/groups8"))
    norm = lm.blocks[0].mixer.norm
    assert norm.group_size == lm.blocks[0].mixer.d_inner // 8


def test_unsupported_model_type_lists_supported():
    cfg = tr.GPT2Config(vocab_size=V, n_embd=16, n_layer=1, n_head=2)
    with pytest.raises(ValueError, match=r"unsupported model_type 'gpt2'.*llama.*mamba.*mamba2.*mistral.*qwen2"):
        archs.from_transformers(tr.GPT2LMHeadModel(cfg))
    with pytest.raises(TypeError, match="HuggingFace"):
        archs.from_transformers(torch.nn.Linear(2, 2))


def test_unsupported_option_is_named():
    model_cls, config_cls, kwargs = CASES["llama/gqa_eps1e-5"]
    hf = getattr(tr, model_cls)(getattr(tr, config_cls)(**dict(kwargs, mlp_bias=True)))
    with pytest.raises(ValueError, match="mlp_bias=True"):
        archs.from_transformers(hf)


def test_converted_model_round_trips_through_save_pretrained(tmp_path):
    lm = archs.from_transformers(build_hf("mistral/window5_head_dim12"))
    lm.save_pretrained(tmp_path / "m")
    back = archs.LanguageModel.from_pretrained(tmp_path / "m")
    tokens = torch.randint(0, V, (1, 12))
    assert torch.equal(lm(tokens), back(tokens))


def test_deltanet_l2_norm_is_the_reference_one():
    """DeltaNet normalises q, k as fla and HF do, x * rsqrt(|x|^2 + 1e-6), also for tiny vectors
    (where x / max(|x|, eps) differs)."""
    from transformers.models.qwen3_next.modeling_qwen3_next import l2norm

    from archs.mixers.deltanet import l2_norm

    x = torch.randn(3, 5, 16, dtype=torch.float64) * torch.tensor([1.0, 1e-3, 1e-4], dtype=torch.float64)[:, None, None]
    torch.testing.assert_close(l2_norm(x), l2norm(x), rtol=1e-12, atol=0)
    assert not torch.allclose(l2_norm(x[2]), torch.nn.functional.normalize(x[2], dim=-1, eps=1e-6))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mamba/tied", "mamba2/groups8", "llama/rope_llama3", "mistral/window5_head_dim12",
                                  "qwen2/window_top_layers_yarn", "llama/rope_dynamic"])
def test_long_cached_decode_matches(name):
    """300 greedy tokens through the caches of both implementations (windows wrap, dynamic RoPE grows)."""
    err, same = conformance(name, seq_len=64, prompt_len=16, new_tokens=300)
    assert err < 1e-4 and same, (name, err, same)
