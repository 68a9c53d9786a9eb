"""RWKV-7 ("Goose") time mixing: the generalized delta rule with a vector-valued in-context learning rate.

Peng et al. 2025, "RWKV-7 'Goose' with Expressive Dynamic State Evolution", section 4 (eqs. 3-20 of
the time mix), following flash-linear-attention's ``RWKV7Attention``:

    x^s      = x_{t-1} - x_t;  x^r = x_t + mu_r o x^s  (likewise w, k, v, a, g: token-shift lerps)
    r, k, v  = W_r x^r, W_k x^k, W_v x^v
    log w_t  = -e^{-1/2} * sigmoid(w0 + tanh(x^w W_w1) W_w2)            (decay in (e^{-e^{-1/2}}, 1), per channel)
    a_t      = sigmoid(a0 + x^a W_a1 W_a2)                               (in-context learning rate, per channel)
    g_t      = sigmoid(x^g W_g1) W_g2                                    (output gate)
    kappa    = L2normalize_per_head(k o xi),  k~ = k o (1 + (a - 1) o alpha)   (removal key; replacement key)
    S_t      = diag(w_t) S_{t-1} - (kappa o a_t) (kappa^T S_{t-1}) + k~_t v_t^T       (S: K x V per head)
    o_t      = S_t^T r_t
    y        = W_o [(GroupNorm_per_head(o_t) + (sum_c r_t k~_t rho)_per_head v_t) o g_t]   (rho: the bonus r_k)

The recurrence is ``chunk_dplr_delta_rule(q=r, k=k~, v, a=-kappa, b=kappa o a, gk=log w, scale=1)``.

Deviations (said here because there is no pure-PyTorch reference to compare against):
- The cross-layer value residual (v_t = lerp(v_t, v_first, sigmoid(x^v W_v1 W_v2)) with v_first the first
  layer's values) is omitted: a mixer here sees only its own input, so every layer acts as RWKV-7's first layer.
- The channel mix (RWKV's FFN) is not part of the mixer: the Block's MLP plays that role.
- Initialisation follows fla's for a layer at relative depth 1/2 (the mixer does not know its depth);
  the output projection is not zero-initialised (the generic tests need a non-trivial output).

State: the matrix state S (B, H, K, K) and the last input token (B, D) for the token shift.
"""
from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ..mixer import Mixer, check_divisible
from ..ops.dplr_delta_rule import chunk_dplr_delta_rule
from ..registry import register_mixer
from ._linear_attn import HeadNorm, MatrixState

_W_SCALE = math.exp(-0.5)  # log w = -e^{-1/2} sigmoid(.): the decay per step stays in (0.545, 1)


@dataclasses.dataclass
class RWKV7State(MatrixState):
    """S (B, H, K, K) matrix state (S_t after the last token); shift (B, D) the last input token."""

    shift: torch.Tensor  # (B, D)


class LowRank(nn.Module):
    """x -> act(x W1) W2 (+ bias): RWKV-7's low-rank "LoRA" projections (act: tanh, sigmoid or none)."""

    def __init__(self, d_in: int, d_out: int, rank: int, act: str | None, bias: bool):
        super().__init__()
        self.act = act
        self.down = nn.Linear(d_in, rank, bias=False)
        self.up = nn.Linear(rank, d_out, bias=bias)
        nn.init.uniform_(self.down.weight, -0.1, 0.1)
        nn.init.uniform_(self.up.weight, -0.1, 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.down(x)
        h = torch.tanh(h) if self.act == "tanh" else torch.sigmoid(h) if self.act == "sigmoid" else h
        return self.up(h)


def _shift_in(x: torch.Tensor, first: torch.Tensor) -> torch.Tensor:
    """x (B, L, D) -> the sequence one step later: (first, x_0, ..., x_{L-2})."""
    return torch.cat([first[:, None], x[:, :-1]], dim=1)


@register_mixer("rwkv7")
class RWKV7(Mixer):
    """RWKV-7 time mix: token-shift lerps, low-rank decay / learning-rate / gate, generalized delta rule,
    group norm, bonus term, gated output.

    Args:
        d_model: model width (also the attention width).
        n_heads: heads (default d_model // 64, at least 1); head size d_model // n_heads.
        decay_rank, a_rank, gate_rank: ranks of the low-rank w, a, g projections (fla's minimum: 32).
        norm_eps: group-norm epsilon per channel (the norm uses head_size * norm_eps, as RWKV-7).
        chunk_size: chunk length of the chunked op.
    """

    test_variants = {"heads4_lowrank": {"n_heads": 4, "decay_rank": 4, "a_rank": 4, "gate_rank": 8, "chunk_size": 16},
                     "heads2": {"n_heads": 2}}

    def __init__(self, d_model: int, n_heads: int | None = None, decay_rank: int = 32, a_rank: int = 32, gate_rank: int = 32,
                 norm_eps: float = 1e-5, chunk_size: int = 32):
        super().__init__(d_model)
        n_heads = n_heads or max(1, d_model // 64)
        check_divisible("rwkv7", "d_model", d_model, "n_heads", n_heads)
        for nm, r in (("decay_rank", decay_rank), ("a_rank", a_rank), ("gate_rank", gate_rank), ("chunk_size", chunk_size)):
            if not isinstance(r, int) or r < 1:
                raise ValueError(f"rwkv7: {nm} must be a positive int, got {r!r}")
        D = d_model
        self.n_heads, self.head_dim, self.chunk_size = n_heads, D // n_heads, chunk_size
        self.ranks = (decay_rank, a_rank, gate_rank)
        self.mix = nn.Parameter(torch.empty(6, D))  # token-shift lerp weights mu for r, w, k, v, a, g
        self.r_proj = nn.Linear(D, D, bias=False)
        self.k_proj = nn.Linear(D, D, bias=False)
        self.v_proj = nn.Linear(D, D, bias=False)
        self.o_proj = nn.Linear(D, D, bias=False)
        self.w_lora = LowRank(D, D, decay_rank, "tanh", bias=True)  # up.bias = w0
        self.a_lora = LowRank(D, D, a_rank, None, bias=True)  # up.bias = a0
        self.g_lora = LowRank(D, D, gate_rank, "sigmoid", bias=False)
        self.k_k = nn.Parameter(torch.empty(D))  # xi: scales k into the removal key kappa
        self.k_a = nn.Parameter(torch.empty(D))  # alpha: how much a_t scales the replacement key
        self.r_k = nn.Parameter(torch.empty(n_heads, self.head_dim))  # rho: the bonus weights
        self.norm = HeadNorm(n_heads, self.head_dim, kind="layer", eps=self.head_dim * norm_eps)
        for p in (self.mix, self.k_k, self.k_a, self.r_k, self.w_lora.up.bias, self.a_lora.up.bias, self.norm.weight, self.norm.bias):
            p._no_weight_decay = True
        self._init_rwkv7()

    @torch.no_grad()
    def _init_rwkv7(self, depth: float = 0.5) -> None:
        """fla's RWKV-7 init for a layer at relative depth ``depth`` (0 = first layer)."""
        D, K = self.d_model, self.head_dim
        n = torch.arange(D, dtype=torch.float64)
        ddd = n / D
        r1 = 1.0 - depth
        self.mix.copy_(torch.stack([1 - ddd ** (p * r1) for p in (0.2, 0.9, 0.7, 0.7, 0.9, 0.2)]))
        linear = n / max(1, D - 1) - 0.5
        zig = ((n % K) - (K - 1) / 2) / max((K - 1) / 2, 1)
        zig = zig * zig.abs()
        www = -6 + 6 * (n / max(1, D - 1)) ** (1 + depth ** 0.3)
        self.w_lora.up.bias.copy_(www + 0.5 + zig * 2.5)
        self.a_lora.up.bias.copy_(-0.19 + zig * 0.3 + linear * 0.4)
        self.k_k.copy_(0.71 - linear * 0.1)
        self.k_a.fill_(1.02)
        self.r_k.fill_(-0.04)
        nn.init.orthogonal_(self.r_proj.weight)
        nn.init.orthogonal_(self.k_proj.weight, gain=0.1)
        nn.init.orthogonal_(self.v_proj.weight)

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, n_heads={self.n_heads}, ranks(w, a, g)={self.ranks}"

    def _inputs(self, x: torch.Tensor, x_prev: torch.Tensor):
        """x, x_prev (B, L, D) (x_prev = the token before each position) -> r, k~, v, log w, -kappa,
        kappa o a (B, L, H, K) and the gate g (B, L, D)."""
        xx = x_prev - x  # (B, L, D)
        xr, xw, xk, xv, xa, xg = (x + xx * self.mix[i] for i in range(6))
        heads = lambda t: rearrange(t, "b l (h d) -> b l h d", d=self.head_dim)
        r, k, v = self.r_proj(xr), self.k_proj(xk), self.v_proj(xv)
        logw = -_W_SCALE * torch.sigmoid(self.w_lora(xw))  # (B, L, D), in (-0.61, 0)
        a = torch.sigmoid(self.a_lora(xa))  # (B, L, D): in-context learning rate
        g = self.g_lora(xg)
        kappa = F.normalize(heads(k * self.k_k), dim=-1)  # (B, L, H, K)
        k = k * (1 + (a - 1) * self.k_a)
        return heads(r), heads(k), heads(v), heads(logw), -kappa, kappa * heads(a), g

    def _out(self, o: torch.Tensor, r, k, v, g: torch.Tensor) -> torch.Tensor:
        """o, r, k, v (B, L, H, K), g (B, L, D) -> (B, L, D): group norm, bonus, gate, projection."""
        o = self.norm(o.to(g.dtype)) + (r * k * self.r_k).sum(-1, keepdim=True) * v
        return self.o_proj(rearrange(o, "b l h d -> b l (h d)") * g)

    def _mix(self, x: torch.Tensor, first: torch.Tensor, S0: torch.Tensor | None):
        r, k, v, logw, a, b, g = self._inputs(x, _shift_in(x, first))
        o, S = chunk_dplr_delta_rule(r, k, v, a, b, logw, scale=1.0, initial_state=S0,
                                     output_final_state=S0 is not None, chunk_size=self.chunk_size)
        return self._out(o, r, k, v, g), S

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._mix(x, torch.zeros_like(x[:, 0]), None)[0]

    def _prefill(self, x: torch.Tensor, state: RWKV7State):
        y, S = self._mix(x, state.shift.to(x.dtype), state.S)
        state.S = S.to(state.S.dtype)
        state.shift = x[:, -1].to(state.shift.dtype)
        return y, state

    def _step(self, x_t: torch.Tensor, state: RWKV7State):
        r, k, v, logw, a, b, g = (t[:, 0] for t in self._inputs(x_t[:, None], state.shift[:, None].to(x_t.dtype)))
        dt = state.S.dtype
        S = state.S
        aS = torch.einsum("bhk,bhkv->bhv", a.to(dt), S)  # (B, H, V): -kappa^T S_{t-1}
        S = logw.to(dt).exp()[..., None] * S + k.to(dt)[..., :, None] * v.to(dt)[..., None, :] + b.to(dt)[..., :, None] * aS[..., None, :]
        o = torch.einsum("bhk,bhkv->bhv", r.to(dt), S)
        state.S, state.shift = S, x_t.to(state.shift.dtype)
        return self._out(o[:, None], r[:, None], k[:, None], v[:, None], g[:, None])[:, 0], state

    def init_state(self, batch_size: int, device=None, dtype=None, max_seq_len: int | None = None) -> RWKV7State:
        device, dtype = self._state_defaults(device, dtype)
        H, K = self.n_heads, self.head_dim
        return RWKV7State(
            S=torch.zeros(batch_size, H, K, K, device=device, dtype=dtype),
            shift=torch.zeros(batch_size, self.d_model, device=device, dtype=dtype),
        )

    def state_size(self, seq_len: int) -> int:
        return self.n_heads * self.head_dim ** 2 + self.d_model

    def flops_per_token(self, seq_len: int) -> float:
        D = self.d_model
        proj = 2.0 * D * D * 4  # r, k, v in; out
        lora = sum(4.0 * D * r for r in self.ranks)  # down and up of w, a, g
        bonus = 4.0 * D
        return proj + lora + bonus + self.n_heads * dplr_delta_rule_flops(seq_len, self.head_dim, self.head_dim, self.chunk_size)


def dplr_delta_rule_flops(seq_len: int, K: int, V: int, chunk: int = 32) -> float:
    """Matmul FLOPs per token and head of ``chunk_dplr_delta_rule``'s chunked form (c = chunk length,
    rounded up to a power of two): the four decayed score matrices on the binary tree (8 K on the
    diagonal + 4 (c - 1) K off it), A_ak V, A_qk V, A_qb W_0 (2 c V each), A_qb W_S (2 c K), the
    inverse of the unit-triangular (I - A_ab) against its c identity columns (c^2 / 3) and its product
    with the K + V right-hand sides (2 c (K + V)), the read of the carried state and the chunk's own state terms
    (6 K V), the state transition (2 K^2) and the state update over chunks (2 K^2 V / c)."""
    c = 1 << (min(chunk, max(1, seq_len)) - 1).bit_length()
    return 8.0 * K + 4.0 * (c - 1) * K + 6.0 * c * V + 2.0 * c * K + c * c / 3.0 + 2.0 * c * (K + V) + 6.0 * K * V + 2.0 * K * K + 2.0 * K * K * V / c
