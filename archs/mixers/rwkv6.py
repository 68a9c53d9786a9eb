"""RWKV-6 ("Finch") time mixing.

Peng et al. 2024, "Eagle and Finch: RWKV with Matrix-Valued States and Dynamic Recurrence".
Token shift with data-dependent interpolation (ddlerp: each of the w, k, v, r, g inputs is
x + (x_prev - x) * (mu + lora(x)) with a shared low-rank tanh projection), a data-dependent
per-channel decay w_t = exp(-exp(d + lora(x))), and the matrix-valued recurrence

    o_t = r_t^T (S_{t-1} + diag(u) k_t v_t^T),   S_t = diag(w_t) S_{t-1} + k_t v_t^T

(the "bonus" u weights the current token, which is read before it is written). The output is
group-normed per head, gated by SiLU(W_g x) and projected. The channel mix of RWKV is not part of
this mixer: the Block's SwiGLU MLP plays that role.

The sequence form runs ``chunk_gla`` on keys, values and decays shifted by one token, so that
its state at step t is the RWKV state S_{t-1}; the bonus term is added outside the recurrence.

State: the matrix state S (B, H, K, V) and the last input token (B, D) for the token shift.
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ..mixer import Mixer, check_divisible
from ..ops.gla import chunk_gla
from ..registry import register_mixer
from ._linear_attn import HeadNorm, MatrixState, chunked_attn_flops


@dataclasses.dataclass
class RWKV6State(MatrixState):
    """S (B, H, K, V) matrix state (S_t after the last token); shift (B, D) the last input token."""

    shift: torch.Tensor  # (B, D)


def _shift_in(x: torch.Tensor, first: torch.Tensor) -> torch.Tensor:
    """x (B, L, ...) -> the sequence one step later: (first, x_0, ..., x_{L-2})."""
    return torch.cat([first[:, None], x[:, :-1]], dim=1)


@register_mixer("rwkv6")
class RWKV6(Mixer):
    """RWKV-6 time mix: ddlerp token shift, data-dependent decay, bonus u, head group norm, SiLU gate.

    Args:
        d_model: model width (also the attention width).
        n_heads: heads (default d_model // 64, at least 1); head size = d_model // n_heads.
        mix_rank: rank of the shared ddlerp projection (RWKV-6: 32).
        decay_rank: rank of the decay projection (RWKV-6: 64).
        chunk_size: chunk length of the chunked op.
        norm_eps: eps of the per-head output GroupNorm ``ln_x`` (RWKV-6: 64e-5).
    """

    test_variants = {"heads4_lowrank": {"n_heads": 4, "mix_rank": 4, "decay_rank": 8}, "heads2": {"n_heads": 2}}

    def __init__(self, d_model: int, n_heads: int | None = None, mix_rank: int = 32, decay_rank: int = 64, chunk_size: int = 64,
                 norm_eps: float = 64e-5):
        super().__init__(d_model)
        n_heads = n_heads or max(1, d_model // 64)
        check_divisible("rwkv6", "d_model", d_model, "n_heads", n_heads)
        for nm, r in (("mix_rank", mix_rank), ("decay_rank", decay_rank)):
            if not isinstance(r, int) or r < 1:
                raise ValueError(f"rwkv6: {nm} must be a positive int, got {r!r}")
        D = d_model
        self.n_heads, self.head_dim, self.chunk_size = n_heads, D // n_heads, chunk_size
        self.mix_rank, self.decay_rank = mix_rank, decay_rank
        # token shift with data-dependent lerp (ddlerp); rows of maa: w, k, v, r, g
        self.maa_x = nn.Parameter(torch.empty(D))
        self.maa = nn.Parameter(torch.empty(5, D))
        self.maa_w1 = nn.Parameter(torch.empty(D, 5 * mix_rank))
        self.maa_w2 = nn.Parameter(torch.empty(5, mix_rank, D))
        # data-dependent decay: log w_t = -exp(decay + tanh(x_w W1) W2)
        self.decay = nn.Parameter(torch.empty(D))
        self.decay_w1 = nn.Parameter(torch.empty(D, decay_rank))
        self.decay_w2 = nn.Parameter(torch.empty(decay_rank, D))
        self.bonus = nn.Parameter(torch.empty(n_heads, self.head_dim))  # u ("time_faaaa")
        self.receptance = nn.Linear(D, D, bias=False)
        self.key = nn.Linear(D, D, bias=False)
        self.value = nn.Linear(D, D, bias=False)
        self.gate = nn.Linear(D, D, bias=False)
        self.output = nn.Linear(D, D, bias=False)
        self.ln_x = HeadNorm(n_heads, self.head_dim, kind="layer", eps=norm_eps)
        self._init_rwkv()

    @torch.no_grad()
    def _init_rwkv(self, depth_ratio: float = 0.5) -> None:
        """RWKV-6's init for a layer at relative depth ``depth_ratio`` (0 = first layer)."""
        D = self.d_model
        r1 = 1.0 - depth_ratio  # 1 -> ~0 with depth
        ddd = torch.arange(D, dtype=torch.float64) / D
        self.maa_x.copy_(1 - ddd ** r1)
        self.maa.copy_(torch.stack([1 - ddd ** r1, 1 - ddd ** r1, 1 - (ddd ** r1 + 0.3 * depth_ratio),
                                    1 - ddd ** (0.5 * r1), 1 - ddd ** (0.5 * r1)]))
        n = torch.arange(D, dtype=torch.float64) / max(1, D - 1)
        self.decay.copy_(-6 + 5 * n ** (0.7 + 1.3 * depth_ratio))
        u = depth_ratio * (1 - n) + ((torch.arange(D) + 1) % 3 - 1) * 0.1
        self.bonus.copy_(u.view(self.n_heads, self.head_dim))
        for p in (self.maa_w1, self.maa_w2, self.decay_w1, self.decay_w2):
            nn.init.uniform_(p, -1e-2, 1e-2)

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, n_heads={self.n_heads}, mix_rank={self.mix_rank}, decay_rank={self.decay_rank}"

    def _inputs(self, x: torch.Tensor, x_prev: torch.Tensor):
        """x, x_prev (B, L, D) (x_prev = the token before each position) ->
        r, k, v, log decay (B, L, H, K) and the SiLU gate (B, L, D)."""
        xx = x_prev - x  # (B, L, D)
        m = torch.tanh((x + xx * self.maa_x) @ self.maa_w1)  # (B, L, 5R)
        m = torch.einsum("blfr,frd->fbld", rearrange(m, "b l (f r) -> b l f r", f=5), self.maa_w2)  # (5, B, L, D)
        xw, xk, xv, xr, xg = (x + xx * (self.maa[i] + m[i]) for i in range(5))
        logw = -torch.exp(self.decay + torch.tanh(xw @ self.decay_w1) @ self.decay_w2)  # (B, L, D), <= 0
        heads = lambda t: rearrange(t, "b l (h d) -> b l h d", d=self.head_dim)
        return (heads(self.receptance(xr)), heads(self.key(xk)), heads(self.value(xv)), heads(logw),
                F.silu(self.gate(xg)))

    def _out(self, o: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        """o (B, L, H, K), gate (B, L, D) -> (B, L, D)."""
        return self.output(rearrange(self.ln_x(o.to(gate.dtype)), "b l h d -> b l (h d)") * gate)

    def _mix(self, x: torch.Tensor, first: torch.Tensor, S0: torch.Tensor | None):
        """Run the time mix over x (B, L, D) whose previous token is ``first`` (B, D), from RWKV state S0.
        Returns (y (B, L, D), S_L (B, H, K, V) or None when S0 is None)."""
        r, k, v, logw, gate = self._inputs(x, _shift_in(x, first))
        # chunk_gla on (k, v, log w) shifted by one step: its state after step t is RWKV's S_{t-1}
        zero = torch.zeros_like(k[:, 0])
        o, S = chunk_gla(r, _shift_in(k, zero), _shift_in(v, zero), _shift_in(logw, zero), scale=1.0,
                         initial_state=S0, output_final_state=S0 is not None, chunk_size=self.chunk_size)
        o = o + (r * self.bonus * k).sum(-1, keepdim=True) * v  # the current token, weighted by u
        if S is not None:  # S = RWKV's S_{L-2}: apply the last step
            S = logw[:, -1].to(S.dtype).exp()[..., None] * S + (k[:, -1, :, :, None] * v[:, -1, :, None, :]).to(S.dtype)
        return self._out(o, gate), S

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._mix(x, torch.zeros_like(x[:, 0]), None)[0]

    def _prefill(self, x: torch.Tensor, state: RWKV6State):
        y, S = self._mix(x, state.shift, state.S)
        state.S = S.to(state.S.dtype)
        state.shift = x[:, -1].to(state.shift.dtype)
        return y, state

    def _step(self, x_t: torch.Tensor, state: RWKV6State):
        r, k, v, logw, gate = (t[:, 0] for t in self._inputs(x_t[:, None], state.shift[:, None].to(x_t.dtype)))
        dt = state.S.dtype
        r, k, v = r.to(dt), k.to(dt), v.to(dt)  # (B, H, K)
        o = torch.einsum("bhk,bhkv->bhv", r, state.S) + (r * self.bonus * k).sum(-1, keepdim=True) * v
        state.S = logw.to(dt).exp()[..., None] * state.S + k[..., :, None] * v[..., None, :]
        state.shift = x_t.to(state.shift.dtype)
        return self._out(o[:, None], gate[:, None])[:, 0], state

    def init_state(self, batch_size: int, device=None, dtype=None, max_seq_len: int | None = None) -> RWKV6State:
        device, dtype = self._state_defaults(device, dtype)
        H, K = self.n_heads, self.head_dim
        return RWKV6State(
            S=torch.zeros(batch_size, H, K, K, device=device, dtype=dtype),
            shift=torch.zeros(batch_size, self.d_model, device=device, dtype=dtype),
        )

    def state_size(self, seq_len: int) -> int:
        return self.n_heads * self.head_dim ** 2 + self.d_model

    def flops_per_token(self, seq_len: int) -> float:
        D, R, Rd = self.d_model, self.mix_rank, self.decay_rank
        proj = 2.0 * D * 4 * D + 2.0 * D * D  # r, k, v, g in; out
        lora = 2.0 * D * 5 * R + 2.0 * 5 * R * D + 2.0 * D * Rd + 2.0 * Rd * D  # ddlerp and decay
        bonus = 4.0 * D
        return proj + lora + bonus + chunked_attn_flops(seq_len, self.n_heads, self.head_dim, self.head_dim, self.chunk_size)

    def no_weight_decay(self) -> set[str]:
        """The token-shift mix coefficients (maa_x, maa), the decay base and the bonus u (RWKV-LM keeps
        them out of weight decay), plus the default: the head norm ln_x."""
        return super().no_weight_decay() | {"maa_x", "maa", "decay", "bonus"}
