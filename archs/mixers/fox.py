"""FoX: the Forgetting Transformer, softmax attention with a data-dependent forget gate.

Lin et al. 2025, "Forgetting Transformer: Softmax Attention with a Forget Gate" (ICLR), eqs. (3)-(6):
per head a scalar forget gate f_t = sigmoid(w_f^T x_t + b_f) down-weights the past multiplicatively,

    o_i = sum_{j<=i} exp(q_i . k_j / sqrt(d) + D_ij) v_j / sum_{j<=i} exp(q_i . k_j / sqrt(d) + D_ij),
    D_ij = sum_{l=j+1..i} log f_l = c_i - c_j,   c_t = sum_{l<=t} log f_l

i.e. attention with an additive score bias (F.scaled_dot_product_attention with a float mask).
This is the basic FoX (a Transformer without RoPE plus the forget gate); RoPE, grouped-query heads
and a short q/k/v conv are options shared with ``attention`` (whose projections and KV cache this
class reuses). The "Pro" block's output gate and QK-norm are not included.

Queries are processed in blocks of ``block_size``: each block attends to the keys up to its last
query, so the (block x keys) bias, not an (L x L) one, is ever materialised (prefill of long contexts
in bounded memory).

State: the KV cache plus the cumulative log forget c_j of every held key (B, H, n); the current
c_t is the last entry.
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ..registry import register_mixer
from .attention import Attention, KVCache


@dataclasses.dataclass
class FoxCache(KVCache):
    logf: torch.Tensor | None = None  # (B, H, C) cumulative log forget gate c_j of each held key

    def tensors(self) -> list[torch.Tensor]:
        return super().tensors() + [self.logf]

    def numel_per_sequence(self) -> int:
        return super().numel_per_sequence() + self.logf.shape[1] * self.length

    def nbytes_per_sequence(self) -> int:
        return super().nbytes_per_sequence() + self.logf.shape[1] * self.length * self.logf.element_size()

    def last_logf(self) -> torch.Tensor:
        """c of the newest token (B, H); 0 for an empty cache."""
        if self.length == 0:
            return self.logf.new_zeros(self.logf.shape[:2])
        return self.logf[:, :, self.length - 1]

    def append_with_logf(self, k: torch.Tensor, v: torch.Tensor, c: torch.Tensor) -> None:
        """Append L tokens: keys, values (B, Hkv, L, Dh) and their cumulative log forget c (B, H, L).

        While autograd records, the cache grows out of place (``torch.cat``): earlier steps' attention
        still needs the old tensors for the backward pass. Otherwise it is written in place."""
        start, L = self.length, k.shape[2]
        if torch.is_grad_enabled() and any(t.requires_grad for t in (k, v, c, self.k, self.v, self.logf)):
            self.k = torch.cat([self.k[:, :, :start], k], dim=2)
            self.v = torch.cat([self.v[:, :, :start], v], dim=2)
            self.logf = torch.cat([self.logf[:, :, :start], c.to(self.logf.dtype)], dim=2)
            self.pos = torch.arange(start + L, device=self.pos.device)
            self.length = start + L
            return
        self.append(k, v)  # grows k, v, pos (and logf, via _grow) as needed
        self.logf[:, :, start:start + L] = c

    def _grow(self, capacity: int) -> None:
        C = self.k.shape[2]
        super()._grow(capacity)
        logf = self.logf.new_zeros(self.logf.shape[0], self.logf.shape[1], capacity)
        logf[:, :, :C] = self.logf
        self.logf = logf


@register_mixer("fox")
class Fox(Attention):
    """Forgetting Transformer attention.

    Args:
        d_model: model width.
        n_heads: query heads (default d_model // 64, at least 1); one forget gate per query head.
        n_kv_heads: key/value heads (grouped-query attention; default n_heads).
        rope: apply RoPE to q and k (FoX: no; the forget gate carries the position information).
        rope_base: RoPE frequency base.
        bias: biases in the q, k, v and output projections (the forget gate always has one).
        conv_size: kernel of a short causal conv over the projected q, k, v; None = none.
        block_size: queries per block of the blocked attention.
    """

    test_variants = {
        "gqa_rope": {"n_heads": 4, "n_kv_heads": 2, "rope": True},
        "conv3_block16": {"n_heads": 2, "conv_size": 3, "block_size": 16},
    }

    def __init__(self, d_model: int, n_heads: int | None = None, n_kv_heads: int | None = None, rope: bool = False,
                 rope_base: float = 10000.0, bias: bool = False, conv_size: int | None = None, block_size: int = 1024):
        super().__init__(d_model, n_heads=n_heads, n_kv_heads=n_kv_heads, window=None, rope_base=rope_base,
                         bias=bias, conv_size=conv_size)
        if not isinstance(block_size, int) or block_size < 1:
            raise ValueError(f"fox: block_size must be a positive int, got {block_size!r}")
        self.use_rope, self.block_size = bool(rope), block_size
        self.fgate_proj = nn.Linear(d_model, self.n_heads, bias=True)
        self.fgate_proj.bias._no_weight_decay = True  # sets the default forgetting rate: a decay parameter

    def extra_repr(self) -> str:
        return super().extra_repr() + f", rope={self.use_rope}"

    def _qkv(self, x: torch.Tensor, start: int, state: KVCache | None = None):
        """x (B, L, D) at positions start.. -> q (B, H, L, Dh), k, v (B, Hkv, L, Dh) (RoPE only if ``rope``)."""
        if self.use_rope:
            return super()._qkv(x, start, state)
        q, kv = self._project(x, state)
        q = rearrange(q, "b l (h d) -> b h l d", d=self.head_dim)
        k, v = rearrange(kv, "b l (two h d) -> two b h l d", two=2, d=self.head_dim)
        return q, k, v

    def _log_forget(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, L, D) -> log f (B, H, L), in fp32 at least (it is summed over the whole context)."""
        lf = F.logsigmoid(self.fgate_proj(x))
        return rearrange(lf.to(torch.promote_types(lf.dtype, torch.float32)), "b l h -> b h l")

    def _attend_biased(self, q, k, v, c_q, c_k):
        """Queries q (B, H, Lq, Dh) at the last Lq of n key positions; k, v (B, Hkv, n, Dh); cumulative log
        forget of queries c_q (B, H, Lq) and keys c_k (B, H, n). -> (B, Lq, D), in query blocks."""
        Lq, n = q.shape[2], k.shape[2]
        off = n - Lq  # query i sits at key position off + i
        outs = []
        for a in range(0, Lq, self.block_size):
            b = min(a + self.block_size, Lq)
            keys = off + b  # this block sees keys 0 .. off + b - 1
            bias = c_q[:, :, a:b, None] - c_k[:, :, None, :keys]  # (B, H, b - a, keys) = D_ij
            causal = torch.arange(keys, device=q.device)[None, :] <= torch.arange(off + a, off + b, device=q.device)[:, None]
            bias = bias.masked_fill(~causal, float("-inf")).to(q.dtype)
            outs.append(self._attend(q[:, :, a:b], k[:, :, :keys], v[:, :, :keys], mask=bias))
        return torch.cat(outs, dim=1)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self._qkv(x, 0)
        c = self._log_forget(x).cumsum(-1)  # (B, H, L)
        return self._attend_biased(q, k, v, c, c)

    def _prefill(self, x: torch.Tensor, state: FoxCache):
        q, k, v = self._qkv(x, state.length, state)
        c = state.last_logf()[..., None] + self._log_forget(x).cumsum(-1)  # (B, H, L)
        state.append_with_logf(k, v, c)
        ck, cv, _ = state.held()
        return self._attend_biased(q, ck, cv, c, state.logf[:, :, :state.length]), state

    def _step(self, x_t: torch.Tensor, state: FoxCache):
        q, k, v = self._qkv(x_t[:, None], state.length, state)  # (B, H, 1, Dh)
        c = state.last_logf()[..., None] + self._log_forget(x_t[:, None])  # (B, H, 1)
        state.append_with_logf(k, v, c)
        ck, cv, _ = state.held()
        bias = (c - state.logf[:, :, :state.length]).to(q.dtype)[:, :, None]  # (B, H, 1, n): every held key is causal
        return self._attend(q, ck, cv, mask=bias)[:, 0], state

    def init_state(self, batch_size: int, device=None, dtype=None, max_seq_len: int | None = None) -> FoxCache:
        kv = super().init_state(batch_size, device=device, dtype=dtype, max_seq_len=max_seq_len)
        logf_dtype = torch.promote_types(kv.k.dtype, torch.float32)
        return FoxCache(k=kv.k, v=kv.v, pos=kv.pos, length=0, window=None, conv=kv.conv,
                        logf=torch.zeros(batch_size, self.n_heads, kv.k.shape[2], device=kv.k.device, dtype=logf_dtype))

    def state_size(self, seq_len: int) -> int:
        return super().state_size(seq_len) + self.n_heads * seq_len

    def flops_per_token(self, seq_len: int) -> float:
        D, H, Hkv, Dh = self.d_model, self.n_heads, self.n_kv_heads, self.head_dim
        proj = 2.0 * D * (H * Dh + 2 * Hkv * Dh + H) + 2.0 * H * Dh * D
        if self.conv_size is not None:
            proj += 2.0 * self._qkv_width() * self.conv_size
        # the blocked form scores each query block against every key up to the block's end
        n, bs = max(1, seq_len), self.block_size
        keys = sum((min(a + bs, n) - a) * min(a + bs, n) for a in range(0, n, bs)) / n
        return proj + 4.0 * H * Dh * keys
