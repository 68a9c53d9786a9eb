"""RG-LRU: Hawk's recurrent block (the recurrent layer of Griffin / RecurrentGemma).

De, Smith, Fernando et al. 2024, "Griffin: Mixing Gated Linear Recurrences with Local Attention
for Efficient Language Models", Section 2.4 (recurrent block, Figure 2) and eqs. (1)-(4):

    y-branch:  g_t = GeLU(W_y x_t + b_y)                                      (lru_width)
    x-branch:  u_t = Conv1D_k(W_x x_t + b_x)          causal depthwise conv, kernel k = 4, with bias
    RG-LRU:    r_t = sigmoid(W_a u_t + b_a)           recurrence gate        (1)
               i_t = sigmoid(W_x' u_t + b_x')         input gate             (2)
               log a_t = -c * softplus(-Lambda) * r_t,  c = 8                 (3': a_t = sigmoid(Lambda)^(c r_t))
               h_t = a_t * h_{t-1} + sqrt(1 - a_t^2) * (i_t * u_t)            (4)
    output:    y_t = W_o (h_t * g_t) + b_o

W_a and W_x' are block-diagonal (``n_heads`` blocks of lru_width / n_heads), as in the paper's
code and in ``transformers``' ``RecurrentGemmaRglru``. The recurrence runs through ``linear_scan``.

Parametrisation and deviations, all matching ``RecurrentGemmaRecurrentBlock`` (a test compares the
two given the same weights, fp64):
- ``a_param`` is the reference code's ``recurrent_param`` = -Lambda, so a_t = exp(-c r_t softplus(a_param)).
  It is initialised so that a = exp(-softplus(a_param)) has a^2 uniform in [a_min^2, a_max^2]
  (default [0.9^2, 0.999^2], the paper's init).
- At absolute position 0 (a fresh state) the input is not scaled by sqrt(1 - a_t^2) (the reference
  code's segment reset: h_0 = i_0 * u_0). The state remembers how many tokens it has seen.
- The GeLU is the tanh approximation (RecurrentGemma's ``gelu_pytorch_tanh``).
- The derivative of sqrt(1 - a^2) is bounded (|d sqrt(z)/dz| <= 1000, as in the reference code) so
  that a -> 1 cannot produce infinite gradients; the forward value is exact.

State: the conv window (B, lru_width, k - 1), the hidden vector h (B, lru_width) and the number of
tokens seen. Constant in the context length.
"""
from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import nn

from ..mixer import Mixer, check_divisible
from ..ops.conv1d import causal_conv1d
from ..ops.linear_rnn import linear_scan
from ..registry import register_mixer
from ..state import MixerState

#: c in log a_t = -c * softplus(a_param) * r_t (the paper's constant)
C_GATE = 8.0
#: the largest derivative allowed for sqrt(z) (the reference code's bound)
MAX_SQRT_GRAD = 1000.0


class _SqrtBoundedGrad(torch.autograd.Function):
    """sqrt(z) whose backward uses max(4 z, 1/MAX_SQRT_GRAD^2) under the root: |grad| <= MAX_SQRT_GRAD."""

    @staticmethod
    def forward(ctx, z: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(z)
        return torch.sqrt(z)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (z,) = ctx.saved_tensors
        return grad / torch.sqrt((4.0 * z).clamp_min(1.0 / MAX_SQRT_GRAD**2))


@dataclasses.dataclass
class RGLRUState(MixerState):
    conv: torch.Tensor  # (B, W, k - 1) the last inputs of the causal conv
    h: torch.Tensor  # (B, W) the RG-LRU hidden vector
    seen: int = 0  # tokens consumed (position 0 gets the reference code's reset)


@register_mixer("rglru")
class RGLRU(Mixer):
    """Hawk / Griffin recurrent block (gated branch * conv -> RG-LRU branch).

    Args:
        d_model: model width.
        lru_width: width W of the recurrence (default d_model).
        n_heads: number of diagonal blocks of the gate weights (W must be divisible by it);
            default: the largest divisor of W not above max(1, W // 64) (blocks of >= 64 channels).
        conv_width: kernel of the causal depthwise conv (4).
        a_min, a_max: range of the initial a = sigmoid(Lambda) (a^2 uniform in [a_min^2, a_max^2]).
    """

    test_variants = {
        "wide_heads_conv2": {"lru_width": 48, "n_heads": 4, "conv_width": 2},
        "fast_decay": {"a_min": 0.3, "a_max": 0.6, "n_heads": 2},
    }

    def __init__(self, d_model: int, lru_width: int | None = None, n_heads: int | None = None, conv_width: int = 4,
                 a_min: float = 0.9, a_max: float = 0.999):
        super().__init__(d_model)
        W = d_model if lru_width is None else lru_width
        if not isinstance(W, int) or isinstance(W, bool) or W <= 0:
            raise ValueError(f"rglru: lru_width must be a positive int or None, got {lru_width!r}")
        if n_heads is None:  # blocks of about 64 channels: the largest divisor of W up to W // 64
            n_heads = next(h for h in range(max(1, W // 64), 0, -1) if W % h == 0)
        if not isinstance(n_heads, int) or isinstance(n_heads, bool) or n_heads <= 0:
            raise ValueError(f"rglru: n_heads must be a positive int or None, got {n_heads!r}")
        check_divisible("rglru", "lru_width", W, "n_heads", n_heads)
        if not isinstance(conv_width, int) or isinstance(conv_width, bool) or conv_width < 1:
            raise ValueError(f"rglru: conv_width must be a positive int, got {conv_width!r}")
        if not 0.0 < a_min < a_max < 1.0:
            raise ValueError(f"rglru: expected 0 < a_min < a_max < 1, got a_min={a_min!r}, a_max={a_max!r}")
        self.lru_width, self.n_heads, self.conv_width = W, n_heads, conv_width
        self.block_width = bw = W // n_heads
        self.linear_y = nn.Linear(d_model, W)
        self.linear_x = nn.Linear(d_model, W)
        self.linear_out = nn.Linear(W, d_model)
        bound = 1.0 / math.sqrt(conv_width)
        self.conv_weight = nn.Parameter(torch.empty(W, conv_width).uniform_(-bound, bound))  # (W, k) depthwise
        self.conv_bias = nn.Parameter(torch.zeros(W))
        std = 1.0 / math.sqrt(bw)
        self.input_gate_weight = nn.Parameter(torch.randn(n_heads, bw, bw) * std)  # (H, bw, bw): u_h @ W_h
        self.input_gate_bias = nn.Parameter(torch.zeros(n_heads, bw))
        self.recurrent_gate_weight = nn.Parameter(torch.randn(n_heads, bw, bw) * std)
        self.recurrent_gate_bias = nn.Parameter(torch.zeros(n_heads, bw))
        # a = exp(-softplus(a_param)) with a^2 uniform in [a_min^2, a_max^2]: a_param = log(1/a - 1)
        a = torch.sqrt(torch.empty(W).uniform_(a_min**2, a_max**2))
        self.a_param = nn.Parameter(torch.log(1.0 / a - 1.0))  # (W,) = -Lambda
        self.a_param._no_weight_decay = True

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, lru_width={self.lru_width}, n_heads={self.n_heads}, conv_width={self.conv_width}"

    # ---- pieces ---------------------------------------------------------------------------
    def _block_diag(self, u: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """u (..., W) -> u_h @ W_h + b_h per block, (..., W)."""
        uh = u.unflatten(-1, (self.n_heads, self.block_width))  # (..., H, bw)
        return (torch.einsum("...hi,hij->...hj", uh, weight) + bias).flatten(-2)

    def _rg_lru_inputs(self, u: torch.Tensor, start: int) -> tuple[torch.Tensor, torch.Tensor]:
        """u (B, L, W) at positions start.. -> decay a and input b of h_t = a_t h_{t-1} + b_t, each (B, L, W)."""
        r = torch.sigmoid(self._block_diag(u, self.recurrent_gate_weight, self.recurrent_gate_bias))
        i = torch.sigmoid(self._block_diag(u, self.input_gate_weight, self.input_gate_bias))
        log_a = -C_GATE * r * F.softplus(self.a_param)  # (B, L, W)
        a = torch.exp(log_a)
        scale = _SqrtBoundedGrad.apply(-torch.expm1(2.0 * log_a))  # sqrt(1 - a^2)
        if start == 0:  # the reference code's reset at position 0: h_0 = i_0 u_0
            first = torch.zeros(u.shape[1], 1, dtype=torch.bool, device=u.device)
            first[0] = True
            scale = torch.where(first, torch.ones_like(scale), scale)
        return a, scale * (i * u)

    def _run(self, x: torch.Tensor, state: RGLRUState | None) -> torch.Tensor:
        """x (B, L, D) -> y (B, L, D); continues from ``state`` (its fields are replaced) if given."""
        g = F.gelu(self.linear_y(x), approximate="tanh")  # (B, L, W)
        xb = self.linear_x(x).transpose(1, 2)  # (B, W, L)
        if state is None:
            u = causal_conv1d(xb, self.conv_weight, self.conv_bias)
            start, h0 = 0, None
        else:
            u, conv = causal_conv1d(xb, self.conv_weight, self.conv_bias, initial_states=state.conv, return_final_states=True)
            start, h0 = state.seen, (state.h if state.seen > 0 else None)
        u = u.transpose(1, 2)  # (B, L, W)
        a, b = self._rg_lru_inputs(u, start)
        h = linear_scan(a, b, h0)  # (B, L, W)
        if state is not None:  # new tensors, no in-place writes: gradients flow through the state
            state.conv, state.h, state.seen = conv.to(state.conv.dtype), h[:, -1], state.seen + x.shape[1]
        return self.linear_out(h * g)

    # ---- interface ------------------------------------------------------------------------
    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(x, None)

    def _prefill(self, x: torch.Tensor, state: RGLRUState):
        return self._run(x, state), state

    def _step(self, x_t: torch.Tensor, state: RGLRUState):
        g = F.gelu(self.linear_y(x_t), approximate="tanh")  # (B, W)
        window = torch.cat([state.conv, self.linear_x(x_t)[:, :, None].to(state.conv.dtype)], dim=2)  # (B, W, k)
        u = (window * self.conv_weight).sum(-1) + self.conv_bias  # (B, W)
        a, b = self._rg_lru_inputs(u[:, None], state.seen)  # (B, 1, W)
        h = b[:, 0] if state.seen == 0 else a[:, 0] * state.h + b[:, 0]
        state.conv, state.h, state.seen = window[:, :, 1:], h, state.seen + 1
        return self.linear_out(h * g), state

    def init_state(self, batch_size: int, device=None, dtype=None, max_seq_len: int | None = None) -> RGLRUState:
        device, dtype = self._state_defaults(device, dtype)
        W = self.lru_width
        return RGLRUState(
            conv=torch.zeros(batch_size, W, self.conv_width - 1, device=device, dtype=dtype),
            h=torch.zeros(batch_size, W, device=device, dtype=dtype),
        )

    def state_size(self, seq_len: int) -> int:
        return self.lru_width * self.conv_width

    def flops_per_token(self, seq_len: int) -> float:
        D, W, bw, k = self.d_model, self.lru_width, self.block_width, self.conv_width
        proj = 2.0 * D * W * 2 + 2.0 * W * D  # linear_y, linear_x, linear_out
        gates = 2 * 2.0 * W * bw  # two block-diagonal gate matmuls
        conv = 2.0 * W * k
        # gelu ~8, sigmoids 2x4, softplus/log-a/exp ~6, sqrt(1 - a^2) ~4, i*u*scale 2, scan 2, h*g 1, biases 4
        elementwise = 35.0 * W
        return proj + gates + conv + elementwise
