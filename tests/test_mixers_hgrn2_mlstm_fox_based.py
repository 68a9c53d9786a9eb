"""The issue-12 mixers hgrn2, mlstm, fox, based beyond the generic suite: each computes its paper's
definition (written out naively here), gradients flow through a carried state (split prefill and
two steps give the same parameter gradients as one forward), and the parameters that must not be
weight-decayed are marked."""
import math

import pytest
import torch
import torch.nn.functional as F

from archs import build_mixer
from helpers import assert_rel_close

NAMES = ["hgrn2", "mlstm", "fox", "based"]
D, B = 32, 2


def _build(name, **kw):
    torch.manual_seed(0)
    return build_mixer(name, D, **kw).double()


def _param_grads(m, loss):
    ps = [p for p in m.parameters() if p.requires_grad]
    return torch.autograd.grad(loss, ps, allow_unused=True)


@pytest.mark.parametrize("name", NAMES)
def test_gradients_through_carried_state(name):
    m = _build(name)
    x = torch.randn(B, 9, D, dtype=torch.float64)
    w = torch.randn(B, 9, D, dtype=torch.float64)
    ref = _param_grads(m, (m(x) * w).sum())
    ya, st = m.prefill(x[:, :4])
    yb, st = m.prefill(x[:, 4:7], st)  # prefill after prefill
    ys = [ya, yb]
    for t in (7, 8):  # then two steps
        y_t, st = m.step(x[:, t], st)
        ys.append(y_t[:, None])
    got = _param_grads(m, (torch.cat(ys, 1) * w).sum())
    for (pname, _), a, r in zip(m.named_parameters(), got, ref):
        assert a is not None, f"{name}: no gradient reaches {pname} through the carried state"
        assert_rel_close(a, r, 1e-10, f"{name}: grad {pname} via prefill+prefill+step+step vs forward")


@pytest.mark.parametrize("name,expected", [
    ("hgrn2", {"lower_bound_logit", "norm.weight"}),
    ("mlstm", {"norm.weight", "igate_preact.bias", "fgate_preact.bias"}),
    ("fox", {"fgate_proj.bias"}),
    ("based", set()),
])
def test_no_weight_decay(name, expected):
    m = _build(name)
    assert m.no_weight_decay() == expected
    assert expected <= {n for n, _ in m.named_parameters()}


def test_fox_is_softmax_attention_with_forget_bias():
    m = _build("fox", n_heads=2)
    L, H, Dh = 11, 2, D // 2
    x = torch.randn(B, L, D, dtype=torch.float64)
    q = m.q_proj(x).view(B, L, H, Dh)
    k, v = m.kv_proj(x).view(B, L, 2, H, Dh).unbind(2)
    log_f = F.logsigmoid(m.fgate_proj(x))  # (B, L, H)
    out = torch.zeros(B, L, H, Dh, dtype=torch.float64)
    for i in range(L):
        for h in range(H):
            D_ij = torch.stack([log_f[:, j + 1:i + 1, h].sum(1) for j in range(i + 1)], 1)  # (B, i + 1)
            s = torch.einsum("bd,bjd->bj", q[:, i, h], k[:, :i + 1, h]) / math.sqrt(Dh) + D_ij
            out[:, i, h] = torch.einsum("bj,bjd->bd", s.softmax(-1), v[:, :i + 1, h])
    want = m.o_proj(out.reshape(B, L, D))
    assert_rel_close(m(x), want, 1e-10, "fox vs the FoX definition")
    m.block_size = 4  # the blocked form is the same function
    assert_rel_close(m(x), want, 1e-10, "fox blocked vs the FoX definition")


def test_based_is_normalised_taylor_attention():
    m = _build("based", n_heads=2, feature_dim=4)
    L, H, f, Dv = 13, 2, 4, D // 2
    x = torch.randn(B, L, D, dtype=torch.float64)
    q, k = m.q_proj(x).view(B, L, H, f), m.k_proj(x).view(B, L, H, f)
    v = m.v_proj(x).view(B, L, H, Dv)
    s = torch.einsum("bihd,bjhd->bhij", q, k) / math.sqrt(f)
    A = (1 + s + s ** 2 / 2).tril()  # 2nd-order Taylor of exp, causal
    y = torch.einsum("bhij,bjhd->bihd", A, v) / (A.sum(-1).transpose(1, 2)[..., None] + m.eps)
    assert_rel_close(m(x), m.o_proj(y.reshape(B, L, D)), 1e-10, "based vs its definition")


def test_hgrn2_is_the_state_expanded_recurrence():
    m = _build("hgrn2", n_heads=2, expand_ratio=4, lower_bound=0.3)
    L, H, K, V = 10, 2, 4, D // 2
    x = torch.randn(B, L, D, dtype=torch.float64)
    lb = torch.sigmoid(m.lower_bound_logit).view(H, K)
    f = lb + (1 - lb) * torch.sigmoid(m.f_proj(x).view(B, L, H, K))  # forget gate >= lb
    q, i = F.silu(m.q_proj(x)).view(B, L, H, K), m.i_proj(x).view(B, L, H, V)
    S = torch.zeros(B, H, K, V, dtype=torch.float64)
    outs = []
    for t in range(L):
        S = f[:, t, :, :, None] * S + (1 - f[:, t, :, :, None]) * i[:, t, :, None, :]
        outs.append(torch.einsum("bhk,bhkv->bhv", q[:, t], S) / math.sqrt(K))
    want = m.o_proj(m.norm(torch.stack(outs, 1).reshape(B, L, D)))
    assert_rel_close(m(x), want, 1e-10, "hgrn2 vs its recurrence")


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="hgrn2: lower_bound must be a number in \\(0, 1\\), got 1.5"):
        build_mixer("hgrn2", D, lower_bound=1.5)
    with pytest.raises(ValueError, match="mlstm: forget_gate must be 'sigmoid' or 'exp', got 'tanh'"):
        build_mixer("mlstm", D, forget_gate="tanh")
    with pytest.raises(ValueError, match="mlstm: qk width .* must be divisible by n_heads=3"):
        build_mixer("mlstm", D, n_heads=3)
    with pytest.raises(ValueError, match="based: feature_dim must be a positive int, got 0"):
        build_mixer("based", D, feature_dim=0)
    for name in ("hgrn2", "based", "mlstm"):
        with pytest.raises(ValueError, match=f"{name}: chunk_size must be a positive int, got -4"):
            build_mixer(name, D, chunk_size=-4)
    with pytest.raises(ValueError, match="fox: block_size must be a positive int, got 0"):
        build_mixer("fox", D, block_size=0)


def test_fox_cache_grows_past_its_capacity():
    """Decoding past the initial cache capacity (256 slots) grows keys, values and log-forget together."""
    m = _build("fox", n_heads=2, block_size=64).eval()
    x = torch.randn(1, 300, D, dtype=torch.float64)
    with torch.no_grad():
        y = m(x)
        ya, st = m.prefill(x[:, :250])
        ys = [ya]
        for t in range(250, 300):
            y_t, st = m.step(x[:, t], st)
            ys.append(y_t[:, None])
    assert st.k.shape[2] >= 300 and st.logf.shape[2] == st.k.shape[2] and st.length == 300
    assert st.numel_per_sequence() == m.state_size(300)
    assert_rel_close(torch.cat(ys, 1), y, 1e-10, "fox decode past the initial capacity")
