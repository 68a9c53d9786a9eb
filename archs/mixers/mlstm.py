"""mLSTM: xLSTM's matrix-memory LSTM layer.

Beck et al. 2024, "xLSTM: Extended Long Short-Term Memory" (NeurIPS), mLSTM eqs. (19)-(27) with the
stabilizer of eqs. (15)-(17); layer as in "xLSTM 7B" (Beck et al. 2025) and HF transformers'
``xLSTMLayer`` (weight_mode "single"), which a test reproduces to fp64 precision given its weights:

    q, k = W_q x, W_k x (qk width), v = W_v x (v width), per head
    i~_t = cap * tanh((W_i x + b_i) / cap),  f~_t = cap * tanh((W_f x + b_f) / cap)   (gate soft-cap)
    log f_t = logsigmoid(f~_t)  (sigmoid forget gate; ``forget_gate="exp"``: log f_t = f~_t)
    input gate exp(i~_t); memory C, normalizer n, stabilizer m (``archs.ops.mlstm``):
        h_t = C_t^T q_t / sqrt(K) / (max(|n_t . q_t| / sqrt(K), exp(-m_t)) + eps)
    y_t = W_out (sigmoid(W_o x_t) * LayerNorm_per_head(h_t))

Deviations: none in the function (the paper's xLSTM-block up-projection and causal conv belong to
the older block design; the 7B layer above has neither). Gate bias init follows xLSTM 7B (input
gate -10, forget gate linspace(3, 6) over heads).

Training, forward and prefill use the exact chunkwise form ``chunk_mlstm``; ``step`` runs the
recurrence. State: (C (B, H, K, V), n (B, H, K), m (B, H)).
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ..mixer import Mixer, check_divisible
from ..ops.mlstm import chunk_mlstm, mlstm_step
from ..registry import register_mixer
from ..state import MixerState
from ._linear_attn import HeadNorm, chunked_attn_flops


@dataclasses.dataclass
class MLSTMState(MixerState):
    C: torch.Tensor  # (B, H, K, V) stabilized matrix memory
    n: torch.Tensor  # (B, H, K) stabilized normalizer
    m: torch.Tensor  # (B, H) stabilizer (log scale of C and n)


@register_mixer("mlstm")
class MLSTM(Mixer):
    """xLSTM's mLSTM layer.

    Args:
        d_model: model width.
        n_heads: heads (default d_model // 64, at least 1).
        qk_dim_factor: query/key width as a multiple of d_model (xLSTM 7B: 0.5).
        v_dim_factor: value width as a multiple of d_model (xLSTM 7B: 1).
        gate_soft_cap: soft cap of the gate pre-activations (cap * tanh(x / cap)); None = none.
        norm_eps: eps of the per-head LayerNorm.
        eps: eps added to the mLSTM denominator.
        bias: biases in the q, k, v, output-gate and output projections and the norm (xLSTM 7B: no).
        forget_gate: "sigmoid" (xLSTM 7B) or "exp" (the paper's alternative).
        igate_bias_init, fgate_bias_init: initial gate biases (fgate: (lo, hi) spread over heads).
        chunk_size: chunk length of ``chunk_mlstm``.
    """

    test_variants = {
        "heads2_open_gates": {"n_heads": 2, "igate_bias_init": 0.0, "fgate_bias_init": (0.0, 2.0), "chunk_size": 16},
        "exp_gate_bias": {"n_heads": 4, "forget_gate": "exp", "bias": True, "gate_soft_cap": None,
                          "igate_bias_init": 0.0, "fgate_bias_init": (-1.0, -0.5), "qk_dim_factor": 1.0},
    }

    def __init__(self, d_model: int, n_heads: int | None = None, qk_dim_factor: float = 0.5, v_dim_factor: float = 1.0,
                 gate_soft_cap: float | None = 15.0, norm_eps: float = 1e-6, eps: float = 1e-6, bias: bool = False,
                 forget_gate: str = "sigmoid", igate_bias_init: float = -10.0,
                 fgate_bias_init: tuple[float, float] = (3.0, 6.0), chunk_size: int = 64):
        super().__init__(d_model)
        n_heads = n_heads or max(1, d_model // 64)
        qk_dim, v_dim = int(d_model * qk_dim_factor), int(d_model * v_dim_factor)
        if qk_dim <= 0 or v_dim <= 0:
            raise ValueError(f"mlstm: qk_dim_factor and v_dim_factor must be positive, got {qk_dim_factor!r}, {v_dim_factor!r}")
        check_divisible("mlstm", "qk width (qk_dim_factor * d_model)", qk_dim, "n_heads", n_heads)
        check_divisible("mlstm", "v width (v_dim_factor * d_model)", v_dim, "n_heads", n_heads)
        if forget_gate not in ("sigmoid", "exp"):
            raise ValueError(f"mlstm: forget_gate must be 'sigmoid' or 'exp', got {forget_gate!r}")
        if gate_soft_cap is not None and not (isinstance(gate_soft_cap, (int, float)) and gate_soft_cap > 0):
            raise ValueError(f"mlstm: gate_soft_cap must be a positive number or None, got {gate_soft_cap!r}")
        if not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValueError(f"mlstm: chunk_size must be a positive int, got {chunk_size!r}")
        self.n_heads, self.head_qk, self.head_v = n_heads, qk_dim // n_heads, v_dim // n_heads
        self.gate_soft_cap, self.eps, self.forget_gate, self.chunk_size = gate_soft_cap, float(eps), forget_gate, chunk_size
        self.q = nn.Linear(d_model, qk_dim, bias=bias)
        self.k = nn.Linear(d_model, qk_dim, bias=bias)
        self.v = nn.Linear(d_model, v_dim, bias=bias)
        self.ogate_preact = nn.Linear(d_model, v_dim, bias=bias)
        self.igate_preact = nn.Linear(d_model, n_heads, bias=True)
        self.fgate_preact = nn.Linear(d_model, n_heads, bias=True)
        self.norm = HeadNorm(n_heads, self.head_v, kind="layer", eps=norm_eps)
        if not bias:
            self.norm.bias = None
        self.out_proj = nn.Linear(v_dim, d_model, bias=bias)
        with torch.no_grad():
            self.igate_preact.bias.fill_(float(igate_bias_init))
            lo, hi = fgate_bias_init
            self.fgate_preact.bias.copy_(torch.linspace(float(lo), float(hi), n_heads))
        self.norm.weight._no_weight_decay = True
        if self.norm.bias is not None:
            self.norm.bias._no_weight_decay = True
        self.igate_preact.bias._no_weight_decay = True
        self.fgate_preact.bias._no_weight_decay = True

    def extra_repr(self) -> str:
        return (f"d_model={self.d_model}, n_heads={self.n_heads}, head_qk={self.head_qk}, head_v={self.head_v}, "
                f"forget_gate={self.forget_gate}, gate_soft_cap={self.gate_soft_cap}")

    def _cap(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.gate_soft_cap is None else self.gate_soft_cap * torch.tanh(x / self.gate_soft_cap)

    def _inputs(self, x: torch.Tensor):
        """x (B, L, D) -> q, k (B, L, H, K), v (B, L, H, V), input gate i and log forget gate (B, L, H)."""
        split = lambda t, d: rearrange(t, "b l (h d) -> b l h d", d=d)
        i = self._cap(self.igate_preact(x))
        f = self._cap(self.fgate_preact(x))
        log_f = F.logsigmoid(f) if self.forget_gate == "sigmoid" else f
        return split(self.q(x), self.head_qk), split(self.k(x), self.head_qk), split(self.v(x), self.head_v), i, log_f

    def _out(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """h (B, L, H, V), x (B, L, D) -> (B, L, D): per-head LayerNorm, sigmoid output gate, projection."""
        y = rearrange(self.norm(h.to(x.dtype)), "b l h d -> b l (h d)") * torch.sigmoid(self.ogate_preact(x))
        return self.out_proj(y)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        h, _ = chunk_mlstm(*self._inputs(x), eps=self.eps, chunk_size=self.chunk_size)
        return self._out(h, x)

    def _prefill(self, x: torch.Tensor, state: MLSTMState):
        h, (C, n, m) = chunk_mlstm(*self._inputs(x), initial_state=(state.C, state.n, state.m), output_final_state=True,
                                   eps=self.eps, chunk_size=self.chunk_size)
        dt = state.C.dtype
        state.C, state.n, state.m = C.to(dt), n.to(dt), m.to(dt)
        return self._out(h, x), state

    def _step(self, x_t: torch.Tensor, state: MLSTMState):
        dt = state.C.dtype
        q, k, v, i, log_f = (t[:, 0].to(dt) for t in self._inputs(x_t[:, None]))  # (B, H, K|V), (B, H)
        h, (state.C, state.n, state.m) = mlstm_step(q, k, v, i, log_f, (state.C, state.n, state.m), self.head_qk ** -0.5, self.eps)
        return self._out(h[:, None], x_t[:, None])[:, 0], state

    def init_state(self, batch_size: int, device=None, dtype=None, max_seq_len: int | None = None) -> MLSTMState:
        device, dtype = self._state_defaults(device, dtype)
        if dtype in (torch.float16, torch.bfloat16):
            dtype = torch.float32  # the stabilized memory needs fp32 (as the xLSTM kernels keep it)
        H, K, V = self.n_heads, self.head_qk, self.head_v
        z = lambda *s: torch.zeros(batch_size, *s, device=device, dtype=dtype)
        return MLSTMState(C=z(H, K, V), n=z(H, K), m=z(H))

    def state_size(self, seq_len: int) -> int:
        return self.n_heads * (self.head_qk * self.head_v + self.head_qk + 1)

    def flops_per_token(self, seq_len: int) -> float:
        D, H, Dk, Dv = self.d_model, self.n_heads, self.n_heads * self.head_qk, self.n_heads * self.head_v
        proj = 2.0 * D * (2 * Dk + 2 * Dv + 2 * H) + 2.0 * Dv * D
        return proj + chunked_attn_flops(seq_len, H, self.head_qk, self.head_v, self.chunk_size)
