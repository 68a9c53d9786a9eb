"""gated_deltanet computes the function of transformers' Qwen3NextGatedDeltaNet (Qwen3-Next's linear
attention layer) given the same weights: a tiny random layer with grouped heads (2 key heads, 4 value
heads, d_k != d_v), fp64 weights and inputs. transformers runs its gated delta rule in fp32 whatever the
input dtype (``torch_chunk_gated_delta_rule`` / ``torch_recurrent_gated_delta_rule`` cast to float32), so
the comparison is at fp32 precision (measured max relative error ~4e-7 forward, ~1e-7 cached)."""
import pytest
import torch

pytest.importorskip("transformers.models.qwen3_next.modeling_qwen3_next")

from transformers import Qwen3NextConfig  # noqa: E402
from transformers.cache_utils import DynamicCache  # noqa: E402
from transformers.models.qwen3_next.modeling_qwen3_next import Qwen3NextGatedDeltaNet  # noqa: E402

from archs import build_mixer  # noqa: E402

D = 32
TOL = 1e-5  # relative to max |y|: fp32 core inside transformers


def _pair():
    cfg = Qwen3NextConfig(
        hidden_size=D, linear_num_key_heads=2, linear_num_value_heads=4, linear_key_head_dim=8, linear_value_head_dim=6,
        linear_conv_kernel_dim=4, rms_norm_eps=1e-6, hidden_act="silu", num_hidden_layers=1, layer_types=["linear_attention"],
        num_attention_heads=2, num_key_value_heads=1, head_dim=16, vocab_size=64, intermediate_size=64, num_experts=2,
        num_experts_per_tok=1, moe_intermediate_size=16, shared_expert_intermediate_size=16)
    torch.manual_seed(0)
    hf = Qwen3NextGatedDeltaNet(cfg, 0).double().eval()
    with torch.no_grad():  # move the parameters HF initialises to constants off their defaults
        hf.dt_bias.normal_()
        hf.norm.weight.normal_()
    ours = build_mixer("gated_deltanet", D, n_heads=4, n_k_heads=2, head_k_dim=8, head_v_dim=6, conv_size=4, norm_eps=1e-6).double().eval()
    ours.load_state_dict({
        "in_proj_qkvz.weight": hf.in_proj_qkvz.weight, "in_proj_ba.weight": hf.in_proj_ba.weight,
        "conv_weight": hf.conv1d.weight[:, 0], "A_log": hf.A_log, "dt_bias": hf.dt_bias,
        "norm.weight": hf.norm.weight, "out_proj.weight": hf.out_proj.weight,
    })
    return cfg, hf, ours


def _rel(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


def test_forward_matches_qwen3next():
    _, hf, ours = _pair()
    x = torch.randn(2, 70, D, dtype=torch.float64)  # two chunks of 64, the second partial
    with torch.no_grad():
        y_hf, y = hf(x), ours(x)
    assert _rel(y, y_hf) < TOL, f"max relative error {_rel(y, y_hf):.2e} vs Qwen3NextGatedDeltaNet"


def test_prefill_and_step_match_qwen3next_cache():
    """Our prefill + token steps == HF's cached path (prefill into a DynamicCache, then one token at a time)."""
    cfg, hf, ours = _pair()
    x = torch.randn(2, 45, D, dtype=torch.float64)
    cache = DynamicCache(config=cfg)
    with torch.no_grad():
        hf_out = [hf(x[:, :40], cache=cache)] + [hf(x[:, t:t + 1], cache=cache) for t in range(40, 45)]
        y, st = ours.prefill(x[:, :40])
        out = [y]
        for t in range(40, 45):
            y_t, st = ours.step(x[:, t], st)
            out.append(y_t[:, None])
    y_hf, y = torch.cat(hf_out, 1), torch.cat(out, 1)
    assert _rel(y, y_hf) < TOL, f"max relative error {_rel(y, y_hf):.2e} vs Qwen3NextGatedDeltaNet with a cache"
