"""Fidelity: our ``mlstm`` mixer computes the same function as the mLSTM layer of HF transformers'
``xLSTMForCausalLM`` (its pure-PyTorch backend) given the same weights, in fp64: outputs and the
final (C, n, m) state, for a length that is a multiple of the chunk (HF: chunkwise only) and one
that is not (HF: chunkwise, then its recurrent kernel), and when continuing from a carried state."""
import functools

import pytest
import torch

from archs import build_mixer

transformers = pytest.importorskip("transformers")

D, H, CHUNK = 64, 2, 16


def _hf_layer():
    cfg = transformers.xLSTMConfig(
        vocab_size=32, hidden_size=D, num_hidden_layers=1, num_heads=H, chunk_size=CHUNK, mode="inference",
        autocast_kernel_dtype="float32", norm_reduction_force_float32=False,  # no fp32 reductions: a true fp64 run
    )
    torch.manual_seed(0)
    layer = transformers.xLSTMForCausalLM(cfg).double().eval().backbone.blocks[0].mlstm_layer
    with torch.no_grad():  # open the gates (HF's init: input gate bias -10) so every term matters
        layer.igate_preact.bias.normal_()
        layer.fgate_preact.bias.normal_(2.0, 1.0)
        layer.multihead_norm.weight.normal_(1.0, 0.2)
    # HF's recurrent kernels cast the state to config.inference_state_dtype (fp32 only): keep fp64
    fn = layer.mlstm_backend._inference_fn
    kw = dict(fn.keywords)
    for key in ("mlstm_sequence_kernel", "mlstm_step_kernel"):
        kw[key] = functools.partial(kw[key].func, **{**kw[key].keywords, "dtype_state": torch.float64})
    layer.mlstm_backend._inference_fn = functools.partial(fn.func, *fn.args, **kw)
    return layer, cfg


def _ours_from(layer, cfg):
    m = build_mixer("mlstm", D, n_heads=H, qk_dim_factor=cfg.qk_dim_factor, v_dim_factor=cfg.v_dim_factor,
                    gate_soft_cap=cfg.gate_soft_cap, norm_eps=cfg.norm_eps, eps=cfg.eps, bias=cfg.use_bias,
                    chunk_size=CHUNK).double()
    with torch.no_grad():
        for name in ("q", "k", "v", "ogate_preact", "igate_preact", "fgate_preact", "out_proj"):
            for pname, p in getattr(layer, name).named_parameters():
                getattr(getattr(m, name), pname).copy_(p)
        m.norm.weight.copy_(layer.multihead_norm.weight.view(H, -1))
    return m


def _rel(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.mark.parametrize("L", [32, 37])
def test_mlstm_matches_hf_xlstm_layer(L):
    layer, cfg = _hf_layer()
    ours = _ours_from(layer, cfg)
    Kh, Vh = ours.head_qk, ours.head_v
    x = torch.randn(2, L + 11, D, dtype=torch.float64)
    zeros = (torch.zeros(2, H, Kh, Vh, dtype=torch.float64), torch.zeros(2, H, Kh, dtype=torch.float64),
             torch.zeros(2, H, 1, dtype=torch.float64))
    with torch.no_grad():
        y_hf, (C, n, m) = layer(x[:, :L], zeros)
        y, st = ours.prefill(x[:, :L])
        errs = {"output": _rel(y, y_hf), "C": _rel(st.C, C), "n": _rel(st.n, n), "m": _rel(st.m, m[..., 0])}
        y_hf2, _ = layer(x[:, L:], (C, n, m))  # continue from the carried state
        y2, _ = ours.prefill(x[:, L:], st)
        errs["continued output"] = _rel(y2, y_hf2)
        errs["forward"] = _rel(ours(x[:, :L]), y_hf)
    print(f"mlstm vs HF xLSTM layer, L={L}: max relative errors {errs}")
    assert max(errs.values()) < 1e-12, errs
