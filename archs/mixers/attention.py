"""Softmax attention (the Transformer): multi-head / grouped-query, RoPE, optional sliding window,
optional short convolution on q, k, v.

Vaswani et al. 2017, "Attention Is All You Need"; GQA: Ainslie et al. 2023; RoPE: Su et al. 2021.
The short causal depthwise conv (``conv_size``) is the one the efficient mixers carry (Mamba,
DeltaNet) and that Zoology (Arora et al. 2023) puts in front of every mixer, attention included:
it makes "the token before me" a feature for free, which a 2-layer Transformer otherwise has to
learn as a previous-token head before it can do associative recall.
State: a KV cache of the keys (RoPE applied) and values of every past token, or of the last
``window`` tokens (a ring buffer) with a sliding window. It grows by doubling, so appending a
token copies nothing but that token (amortised). With ``conv_size`` it also holds the conv
window: the last ``conv_size - 1`` projected q, k, v inputs.
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ..mixer import Mixer, check_divisible
from ..registry import register_mixer
from ..rope import Rotary
from ..short_conv import causal_conv_tokens, near_identity_conv_weight
from ..state import MixerState, can_update_in_place


@dataclasses.dataclass
class KVCache(MixerState):
    k: torch.Tensor  # (B, Hkv, C, Dh) keys, RoPE applied; C = capacity
    v: torch.Tensor  # (B, Hkv, C, Dh)
    pos: torch.Tensor  # (C,) long: absolute position held in each slot, -1 = empty
    length: int = 0  # tokens seen so far
    window: int | None = None  # ring buffer of `window` slots when set
    first: int = 0  # absolute position held in slot 0 (> 0 once ``keep_last`` dropped older tokens)
    conv: torch.Tensor | None = None  # (B, (H + 2 Hkv) Dh, conv_size - 1) short-conv window, or None

    def tensors(self) -> list[torch.Tensor]:
        return [self.k, self.v] + ([] if self.conv is None else [self.conv])

    def numel_per_sequence(self) -> int:
        held = self.length - self.first if self.window is None else min(self.length, self.window)
        conv = 0 if self.conv is None else self.conv[0].numel()
        return 2 * self.k.shape[1] * held * self.k.shape[3] + conv

    def nbytes_per_sequence(self) -> int:
        return self.numel_per_sequence() * self.k.element_size()

    def append(self, k: torch.Tensor, v: torch.Tensor) -> None:
        """Write L new tokens (B, Hkv, L, Dh) at positions length .. length+L-1: in place with
        autograd off, else into new cache tensors (gradients flow through the cache)."""
        L = k.shape[2]
        start = self.length
        inplace = can_update_in_place(self.k, self.v, k, v)
        if self.window is not None:
            keep = min(L, self.window)  # only the last `window` tokens can ever be attended again
            positions = torch.arange(start + L - keep, start + L, device=self.pos.device)
            slots = positions % self.window
            k, v = k[:, :, L - keep:], v[:, :, L - keep:]
        else:
            lo, need = start - self.first, start - self.first + L  # slots of the new tokens
            if need > self.k.shape[2]:
                self._grow(max(need, 2 * self.k.shape[2]))
            positions = torch.arange(start, start + L, device=self.pos.device)
            slots = slice(lo, need)
        if inplace:
            self.k[:, :, slots] = k
            self.v[:, :, slots] = v
        else:
            index = positions - self.first if self.window is None else slots
            self.k = self.k.index_copy(2, index, k.to(self.k.dtype))
            self.v = self.v.index_copy(2, index, v.to(self.v.dtype))
            self.pos = self.pos.clone()  # out of place too: a detached copy of this state may share it
        self.pos[slots] = positions  # (C,) long, never part of a graph
        self.length += L

    def _grow(self, capacity: int) -> None:
        B, H, C, Dh = self.k.shape
        pad = (0, 0, 0, capacity - C)  # zeros after the held slots (out of place: keeps the graph)
        self.k, self.v = F.pad(self.k, pad), F.pad(self.v, pad)
        self.pos = F.pad(self.pos, (0, capacity - C), value=-1)

    def held(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The filled slots: keys, values (B, Hkv, n, Dh) and their positions (n,)."""
        n = self.length - self.first if self.window is None else min(self.length, self.window)
        return self.k[:, :, :n], self.v[:, :, :n], self.pos[:n]

    def keep_last(self, n: int) -> None:
        """Drop all but the last ``n`` tokens (a sliding-window ring buffer never holds more than
        ``window``: it is left as it is). Positions stay absolute, so RoPE and the causal mask hold."""
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"KVCache.keep_last: n must be a positive int, got {n!r}")
        held = self.length - self.first
        if self.window is not None or held <= n:
            return
        drop = held - n
        self.k, self.v, self.pos = self.k[:, :, drop:held], self.v[:, :, drop:held], self.pos[drop:held]
        self.first += drop


@register_mixer("attention")
class Attention(Mixer):
    """Causal multi-head softmax attention with RoPE and a KV cache.

    Args:
        d_model: model width.
        n_heads: query heads (default: d_model // 64, at least 1).
        n_kv_heads: key/value heads for grouped-query attention (default: n_heads).
        window: sliding-window size (each token sees itself and the window-1 before it); None = full.
        rope_base: RoPE frequency base.
        rope_scaling: an HF-style RoPE scaling dict (``rope_type`` linear, dynamic, yarn or llama3;
            see ``archs.rope``) or None.
        head_dim: size of each head (default d_model // n_heads); may differ from d_model / n_heads
            (Gemma, Qwen3, Mistral-Nemo): q is (H * head_dim), o_proj maps H * head_dim back to d_model.
        bias: biases in the q, k, v and output projections.
        qkv_bias, o_bias: override ``bias`` for the q, k, v projections or for the output one
            (Qwen2: q/k/v bias, no output bias).
        conv_size: kernel of a short causal depthwise conv over the projected q, k, v (before
            RoPE); None = no conv (the plain Transformer).
        rope_dim: RoPE rotates only the first ``rope_dim`` (even) dims of each head, the rest pass
            unrotated (partial rotary: RecurrentGemma rotates head_dim / 2, GPT-NeoX rotary_pct);
            default head_dim.
    """

    test_variants = {
        "gqa": {"n_heads": 4, "n_kv_heads": 2},
        "mqa_window": {"n_heads": 2, "n_kv_heads": 1, "window": 5},
        "conv4_gqa": {"n_heads": 4, "n_kv_heads": 2, "conv_size": 4},
        "conv3_window": {"n_heads": 2, "window": 5, "conv_size": 3},
        "head_dim_qkv_bias_yarn": {"n_heads": 4, "n_kv_heads": 2, "head_dim": 6, "qkv_bias": True, "o_bias": False,
                                   "rope_scaling": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16}},
        "mqa_partial_rope_window": {"n_heads": 2, "n_kv_heads": 1, "window": 6, "rope_dim": 4, "o_bias": True},
        "llama3_rope": {"n_heads": 2, "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                                        "high_freq_factor": 4.0, "original_max_position_embeddings": 32}},
    }

    def __init__(self, d_model: int, n_heads: int | None = None, n_kv_heads: int | None = None, window: int | None = None,
                 rope_base: float = 10000.0, bias: bool = False, conv_size: int | None = None,
                 head_dim: int | None = None, qkv_bias: bool | None = None, o_bias: bool | None = None,
                 rope_scaling: dict | None = None, rope_dim: int | None = None):
        super().__init__(d_model)
        n_heads = n_heads or max(1, d_model // 64)
        n_kv_heads = n_kv_heads or n_heads
        if head_dim is None:
            check_divisible("attention", "d_model", d_model, "n_heads", n_heads)
        elif not isinstance(head_dim, int) or head_dim < 2 or head_dim % 2:
            raise ValueError(f"attention: head_dim must be an even int >= 2 or None, got {head_dim!r}")
        check_divisible("attention", "n_heads", n_heads, "n_kv_heads", n_kv_heads)
        if window is not None and (not isinstance(window, int) or window < 1):
            raise ValueError(f"attention: window must be a positive int or None, got {window!r}")
        if conv_size is not None and (not isinstance(conv_size, int) or conv_size < 2):
            raise ValueError(f"attention: conv_size must be an int >= 2 or None, got {conv_size!r}")
        self.n_heads, self.n_kv_heads, self.window, self.conv_size = n_heads, n_kv_heads, window, conv_size
        self.head_dim = head_dim if head_dim is not None else d_model // n_heads
        self.rope_dim = self.head_dim if rope_dim is None else rope_dim
        if (not isinstance(self.rope_dim, int) or isinstance(self.rope_dim, bool) or self.rope_dim < 2 or self.rope_dim % 2
                or self.rope_dim > self.head_dim):
            raise ValueError(f"attention: rope_dim must be an even int in [2, head_dim={self.head_dim}] or None, got {rope_dim!r}")
        qkv_bias = bias if qkv_bias is None else qkv_bias
        o_bias = bias if o_bias is None else o_bias
        self.q_proj = nn.Linear(d_model, n_heads * self.head_dim, bias=qkv_bias)
        self.kv_proj = nn.Linear(d_model, 2 * n_kv_heads * self.head_dim, bias=qkv_bias)  # [k; v]
        self.o_proj = nn.Linear(n_heads * self.head_dim, d_model, bias=o_bias)
        self.rotary = Rotary(self.rope_dim, rope_base, rope_scaling)
        if conv_size is not None:
            # one depthwise conv over the concatenated q, k, v channels, starting near the identity
            self.conv_weight = nn.Parameter(near_identity_conv_weight(self._qkv_width(), conv_size))

    def _qkv_width(self) -> int:
        return (self.n_heads + 2 * self.n_kv_heads) * self.head_dim

    def extra_repr(self) -> str:
        conv = f", conv_size={self.conv_size}" if self.conv_size else ""
        rope = f", rope_dim={self.rope_dim}" if self.rope_dim != self.head_dim else ""
        return (f"d_model={self.d_model}, n_heads={self.n_heads}, n_kv_heads={self.n_kv_heads}, head_dim={self.head_dim}, "
                f"window={self.window}{conv}{rope}")

    # ---- projections ---------------------------------------------------------------------
    def _project(self, x: torch.Tensor, state: KVCache | None) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, L, D) -> q (B, L, H Dh), kv (B, L, 2 Hkv Dh), through the short conv if any
        (carrying its window in ``state.conv`` when a state is given)."""
        q, kv = self.q_proj(x), self.kv_proj(x)
        if self.conv_size is None:
            return q, kv
        qkv, window = causal_conv_tokens(torch.cat([q, kv], dim=-1), self.conv_weight, None if state is None else state.conv)
        if state is not None:
            state.conv = window
        return qkv.split([q.shape[-1], kv.shape[-1]], dim=-1)

    def _qkv(self, x: torch.Tensor, start: int, state: KVCache | None = None):
        """x (B, L, D) at positions start.. -> q (B, H, L, Dh), k, v (B, Hkv, L, Dh), RoPE applied."""
        q, kv = self._project(x, state)
        q = rearrange(q, "b l (h d) -> b h l d", d=self.head_dim)
        k, v = rearrange(kv, "b l (two h d) -> two b h l d", two=2, d=self.head_dim)
        cos, sin = self.rotary.cos_sin(start, x.shape[1], x.device, q.dtype)  # (L, rope_dim)
        return self._rope(q, cos, sin), self._rope(k, cos, sin), v

    def _rope(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """RoPE on the first rope_dim dims of each head of x (B, H, L, Dh); the rest unchanged."""
        if self.rope_dim == self.head_dim:
            return self.rotary.rotate(x, cos, sin)
        return torch.cat([self.rotary.rotate(x[..., :self.rope_dim], cos, sin), x[..., self.rope_dim:]], dim=-1)

    def _attend(self, q, k, v, mask=None, is_causal=False):
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal, enable_gqa=self.n_kv_heads != self.n_heads)
        return self.o_proj(rearrange(y, "b h l d -> b l (h d)"))

    def _window_mask(self, q_pos: torch.Tensor, k_pos: torch.Tensor) -> torch.Tensor:
        """(Lq, Lk) bool, True where query may see key: causal, within the window, slot filled."""
        diff = q_pos[:, None] - k_pos[None, :]
        ok = (diff >= 0) & (k_pos[None, :] >= 0)
        if self.window is not None:
            ok &= diff < self.window
        return ok

    # ---- interface -----------------------------------------------------------------------
    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._attend_fresh(*self._qkv(x, 0))

    def _prefill(self, x: torch.Tensor, state: KVCache):
        L, start = x.shape[1], state.length
        q, k, v = self._qkv(x, start, state)
        if start == 0:
            y = self._attend_fresh(q, k, v)
        else:
            ck, cv, cpos = state.held()
            kk, vv = torch.cat([ck, k], dim=2), torch.cat([cv, v], dim=2)
            q_pos = torch.arange(start, start + L, device=x.device)
            mask = self._window_mask(q_pos, torch.cat([cpos, q_pos]))
            # NB: never is_causal here: with Lq != Lk, SDPA aligns the causal mask top-left
            y = self._attend(q, kk, vv, mask=mask)
        state.append(k, v)
        return y, state

    def _attend_fresh(self, q, k, v):
        """Causal (windowed) attention of a sequence starting at position 0."""
        L = q.shape[2]
        if self.window is None or self.window >= L:
            return self._attend(q, k, v, is_causal=True)
        pos = torch.arange(L, device=q.device)
        return self._attend(q, k, v, mask=self._window_mask(pos, pos))

    def _step(self, x_t: torch.Tensor, state: KVCache):
        q, k, v = self._qkv(x_t[:, None], state.length, state)  # (B, H, 1, Dh)
        state.append(k, v)
        ck, cv, _ = state.held()  # every held key is causal and inside the window: no mask
        return self._attend(q, ck, cv)[:, 0], state

    def init_state(self, batch_size: int, device=None, dtype=None, max_seq_len: int | None = None) -> KVCache:
        device, dtype = self._state_defaults(device, dtype)
        if self.window is not None:
            cap = self.window
        else:
            cap = max_seq_len if max_seq_len else 256
        shape = (batch_size, self.n_kv_heads, cap, self.head_dim)
        return KVCache(
            k=torch.zeros(shape, device=device, dtype=dtype),
            v=torch.zeros(shape, device=device, dtype=dtype),
            pos=torch.full((cap,), -1, device=device, dtype=torch.long),
            window=self.window,
            conv=None if self.conv_size is None else torch.zeros(batch_size, self._qkv_width(), self.conv_size - 1, device=device, dtype=dtype),
        )

    def trim_state(self, state: KVCache, keep_tokens: int) -> KVCache:
        """Keep the last ``keep_tokens`` keys and values (truncated BPTT over a stream: each token
        then attends to at most ``keep_tokens`` carried tokens plus its own window's)."""
        state.keep_last(keep_tokens)
        return state

    def state_size(self, seq_len: int) -> int:
        held = seq_len if self.window is None else min(seq_len, self.window)
        conv = 0 if self.conv_size is None else self._qkv_width() * (self.conv_size - 1)
        return 2 * self.n_kv_heads * self.head_dim * held + conv

    def flops_per_token(self, seq_len: int) -> float:
        D, H, Hkv, Dh = self.d_model, self.n_heads, self.n_kv_heads, self.head_dim
        proj = 2.0 * D * (H * Dh + 2 * Hkv * Dh) + 2.0 * H * Dh * D
        if self.conv_size is not None:
            proj += 2.0 * self._qkv_width() * self.conv_size
        # token i (1-based) attends to min(i, window) keys: QK^T and AV each 2 * H * Dh per key
        n, w = seq_len, self.window or seq_len
        if w >= n:
            keys = (n + 1) / 2
        else:
            keys = (w * (w + 1) / 2 + (n - w) * w) / n
        return proj + 4.0 * H * Dh * keys
