"""gated_deltanet and rwkv7: gradients flow through a carried state (prefill after prefill, step after
step: the same gradients as one forward over the whole sequence, fp64), no_weight_decay names the decay,
bonus, lerp and norm parameters, and bad constructor arguments give clear errors."""
import pytest
import torch

from archs import build_mixer
from helpers import assert_rel_close

D = 32
NAMES = ["gated_deltanet", "rwkv7"]
KW = {"gated_deltanet": {"n_heads": 4, "n_k_heads": 2, "head_k_dim": 8, "head_v_dim": 12, "chunk_size": 8},
      "rwkv7": {"n_heads": 2, "chunk_size": 8}}


def _grads(m, loss):
    params = [p for p in m.parameters()]
    return torch.autograd.grad(loss, params, allow_unused=True)


@pytest.mark.parametrize("name", NAMES)
def test_gradients_through_carried_state(name):
    torch.manual_seed(0)
    m = build_mixer(name, D, **KW[name]).double()
    x = torch.randn(2, 21, D, dtype=torch.float64)
    w = torch.randn(2, 21, D, dtype=torch.float64)
    g_ref = _grads(m, (m(x) * w).sum())
    ya, st = m.prefill(x[:, :11])  # two prefills (the second crosses a chunk boundary) ...
    yb, st = m.prefill(x[:, 11:19], st)
    ys = []
    for t in (19, 20):  # ... then two steps, all from the carried state
        y_t, st = m.step(x[:, t], st)
        ys.append(y_t[:, None])
    g = _grads(m, (torch.cat([ya, yb, *ys], 1) * w).sum())
    for (pname, _), a, r in zip(m.named_parameters(), g, g_ref):
        assert a is not None and r is not None, pname
        assert_rel_close(a, r, 1e-9, f"{name}: grad of {pname} through the carried state")


def test_no_weight_decay_names():
    assert build_mixer("gated_deltanet", D).no_weight_decay() == {"A_log", "dt_bias", "norm.weight"}
    assert build_mixer("rwkv7", D).no_weight_decay() == {
        "mix", "k_k", "k_a", "r_k", "w_lora.up.bias", "a_lora.up.bias", "norm.weight", "norm.bias"}


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="n_heads=4 must be divisible by n_k_heads=3"):
        build_mixer("gated_deltanet", D, n_heads=4, n_k_heads=3)
    with pytest.raises(ValueError, match="d_model=32 must be divisible by n_heads=3"):
        build_mixer("gated_deltanet", D, n_heads=3)
    with pytest.raises(ValueError, match="conv_size must be an int >= 2, got 1"):
        build_mixer("gated_deltanet", D, conv_size=1)
    with pytest.raises(ValueError, match="d_model=32 must be divisible by n_heads=5"):
        build_mixer("rwkv7", D, n_heads=5)
    with pytest.raises(ValueError, match="decay_rank must be a positive int, got 0"):
        build_mixer("rwkv7", D, decay_rank=0)


def test_rwkv7_state_update_is_the_papers():
    """RWKV-7's update in the paper's row form, S_t = S_{t-1} (diag(w_t) - kappa_t^T (a_t o kappa_t)) + v_t^T k_t
    (S: V x K, o_t = S_t r_t), is what rwkv7 gets from chunk_dplr_delta_rule with a = -kappa, b = kappa o a."""
    from archs.ops import chunk_dplr_delta_rule

    gen = torch.Generator().manual_seed(0)
    mk = lambda *s: torch.randn(*s, generator=gen, dtype=torch.float64)
    B, T, H, K = 2, 11, 2, 4
    r, k, v = mk(B, T, H, K), mk(B, T, H, K), mk(B, T, H, K)
    kappa = torch.nn.functional.normalize(mk(B, T, H, K), dim=-1)
    a, w = torch.sigmoid(mk(B, T, H, K)), torch.exp(-0.6 * torch.sigmoid(mk(B, T, H, K)))
    S = torch.zeros(B, H, K, K, dtype=torch.float64)  # (V, K)
    outs = []
    for t in range(T):
        trans = torch.diag_embed(w[:, t]) - kappa[:, t, :, :, None] * (a[:, t] * kappa[:, t])[:, :, None, :]  # (B, H, K, K)
        S = S @ trans + v[:, t, :, :, None] * k[:, t, :, None, :]
        outs.append(torch.einsum("bhvk,bhk->bhv", S, r[:, t]))
    o, S_op = chunk_dplr_delta_rule(r, k, v, -kappa, kappa * a, w.log(), scale=1.0, output_final_state=True, chunk_size=4)
    assert_rel_close(o, torch.stack(outs, 1), 1e-12, "outputs")
    assert_rel_close(S_op, S.transpose(-1, -2), 1e-12, "state (K x V = the paper's transposed)")
