"""The model-level knobs the references need (Gemma / RecurrentGemma, xLSTM): their definitions, the
model's equivalences with them on, and that the defaults leave every existing model unchanged."""
from __future__ import annotations

import math

import pytest
import torch

from archs import Block, LanguageModel, RMSNorm, build_language_model
from archs.layers import GatedMLP
from helpers import assert_rel_close

V, D = 61, 32
KNOBS = dict(mlp="geglu_tanh", mlp_bias=True, norm_unit_offset=True, norm_bias=True, embed_scale=D ** 0.5,
             logit_soft_cap=3.0)


def _model(**kw):
    torch.manual_seed(0)
    lm = LanguageModel(V, D, 3, layers=["rglru", "attention"], **kw).double().eval()
    with torch.no_grad():  # norms at their init are 1 (or 0 with the offset) and biases 0: perturb them
        for name, p in lm.named_parameters():
            if p.dim() == 1:
                p.add_(0.3 * torch.randn_like(p))
    return lm


def test_definitions():
    torch.manual_seed(0)
    x = torch.randn(3, 5, D, dtype=torch.float64)
    norm = RMSNorm(D, eps=1e-5, unit_offset=True, bias=True).double()
    with torch.no_grad():
        norm.weight.normal_()
        norm.bias.normal_()
    want = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * (1 + norm.weight) + norm.bias
    assert_rel_close(norm(x), want, 1e-12, "RMSNorm(unit_offset, bias)")
    assert torch.equal(RMSNorm(4, unit_offset=True).weight, torch.zeros(4))  # scale 1 at init
    mlp = GatedMLP(D, 24, activation="gelu_tanh", bias=True).double()
    g, u = mlp.w13(x).chunk(2, -1)
    c = math.sqrt(2 / math.pi)
    gelu_tanh = 0.5 * g * (1 + torch.tanh(c * (g + 0.044715 * g ** 3)))
    assert_rel_close(mlp(x), mlp.w2(gelu_tanh * u), 1e-12, "GeGLU (tanh)")
    lm = _model(**KNOBS)
    tok = torch.randint(0, V, (2, 9))
    with torch.no_grad():
        h = lm.embed(tok) * D ** 0.5
        for b in lm.blocks:
            h = b(h)
        raw = lm.head(lm.norm(h))
        assert_rel_close(lm(tok), 3.0 * torch.tanh(raw / 3.0), 1e-12, "embed_scale + logit_soft_cap")


def test_modes_agree_with_every_knob_on():
    lm = _model(**KNOBS)
    tok = torch.randint(0, V, (2, 19))
    with torch.no_grad():
        logits = lm(tok)
        a, st = lm.prefill(tok[:, :8])
        b, st = lm.prefill(tok[:, 8:13], st)
        steps = [lm.step(tok[:, t], st)[0][:, None] for t in range(13, 19)]
    assert_rel_close(torch.cat([a, b, *steps], 1), logits, 1e-10, "forward == prefill == split prefill == step")
    assert logits.abs().max() < 3.0


def test_knobs_round_trip(tmp_path):
    lm = _model(**KNOBS)
    lm.save_pretrained(tmp_path / "m")
    back = LanguageModel.from_pretrained(tmp_path / "m")
    tok = torch.randint(0, V, (2, 7))
    assert back.config == lm.config and torch.equal(back(tok), lm(tok))


def test_defaults_leave_models_unchanged():
    lm = LanguageModel(V, D, 2, layers="attention")
    assert not {"mlp_bias", "norm_unit_offset", "norm_bias", "embed_scale", "logit_soft_cap"} & set(lm.config)
    per_block = ["norm1.weight", "mixer.q_proj.weight", "mixer.kv_proj.weight", "mixer.o_proj.weight", "norm2.weight",
                 "mlp.w13.weight", "mlp.w2.weight"]
    want = ["embed.weight", "norm.weight", "head.weight"] + [f"blocks.{i}.{n}" for i in range(2) for n in per_block]
    assert sorted(lm.state_dict()) == sorted(want)
    assert all(n.bias is None and not n.unit_offset for b in lm.blocks for n in (b.norm1, b.norm2))
    assert lm.blocks[0].mlp.activation == "silu" and lm.embed_scale is None and lm.logit_soft_cap is None


def test_knob_errors():
    with pytest.raises(ValueError, match="unknown mlp 'gelu'.*swiglu.*geglu_tanh"):
        Block(D, "attention", mlp="gelu")
    with pytest.raises(ValueError, match="embed_scale must be a positive number or None, got -1"):
        LanguageModel(V, D, 1, embed_scale=-1)
    with pytest.raises(ValueError, match="logit_soft_cap must be a positive number or None, got 'x'"):
        LanguageModel(V, D, 1, logit_soft_cap="x")
    with pytest.raises(ValueError, match="unknown activation 'relu'"):
        GatedMLP(D, activation="relu")
    with pytest.raises(ValueError, match=r"rope_dim must be an even int in \[2, head_dim=8\] or None, got 5"):
        Block(D, "attention", n_heads=4, rope_dim=5)


def test_partial_rotary_leaves_the_tail_unrotated():
    """rope_dim < head_dim: the last head_dim - rope_dim dims of q and k are position-free."""
    torch.manual_seed(0)
    att = Block(D, "attention", n_heads=2, rope_dim=6).mixer.double()
    x = torch.randn(1, 1, D, dtype=torch.float64)
    q0, k0, _ = att._qkv(x, 0)
    q5, k5, _ = att._qkv(x, 5)
    assert torch.equal(q0[..., 6:], q5[..., 6:]) and torch.equal(k0[..., 6:], k5[..., 6:])
    assert not torch.allclose(q0[..., :6], q5[..., :6])
    assert_rel_close(q0.norm(dim=-1), q5.norm(dim=-1), 1e-12, "rotation keeps the norm")


def test_arch_config_sets_the_knobs():
    arch = {"layers": "attention", "mlp": "geglu_tanh", "mlp_bias": True, "norm_unit_offset": True,
            "embed_scale": 4.0, "logit_soft_cap": 5.0, "norm_bias": None}
    lm = build_language_model(arch, {"d_model": D, "n_layers": 1}, V)
    assert (lm.embed_scale, lm.logit_soft_cap, lm.norm.unit_offset, lm.blocks[0].norm1.bias) == (4.0, 5.0, True, None)
    assert lm.blocks[0].mlp.activation == "gelu_tanh" and lm.blocks[0].mlp.w2.bias is not None


def test_mixer_eps_and_block_prenorm_eps_do_not_collide():
    """mlstm and based take an ``eps`` of their own: it reaches the mixer, the pre-norms keep norm_eps."""
    lm = LanguageModel(V, 64, 1, layers="mlstm", mixer_kwargs={"mlstm": {"eps": 1e-4}}, norm_eps=1e-5)
    assert lm.blocks[0].mixer.eps == 1e-4 and lm.blocks[0].norm1.eps == 1e-5 and lm.norm.eps == 1e-5
