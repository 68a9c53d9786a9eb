"""Hyena: gated implicit long convolutions (the Hyena operator, order N, default 2).

Poli, Massaroli, Nguyen, Fu, Dao, Baccus, Bengio, Ermon & Re 2023, "Hyena Hierarchy: Towards
Larger Convolutional Language Models" (ICML), Definition 3.1 / Algorithm 1 (operator) and
Algorithm 2 / eq. (7) (implicit filter), following the layout of the authors' ``HyenaOperator``:

    (x^1 .. x^N, v) = ShortConv(W_in u)            N + 1 streams of width D, causal depthwise conv
    z^0 = v
    z^n = h^n * (x^{N+1-n} . z^{n-1}) + b^n . (x^{N+1-n} . z^{n-1}),   n = 1 .. N-1
    y   = W_out (x^1 . z^{N-1})
         (. elementwise, * causal long convolution over time, b^n the per-channel skip "bias")

    implicit filter   h^n_t = Window(t) . FFN(PE(t))            for every position t >= 0
        PE(t)     = [t / T, cos(2 pi f_j t / T), -sin(2 pi f_j t / T)]_j,  f_j = linspace(1e-4, J-1, J)
        FFN       = Linear -> Sin -> Linear -> Sin -> Linear -> Sin -> Linear (no bias),
                    Sin(x) = sin(omega . x) with a learned frequency omega per unit
        Window(t) = exp(-|alpha_c| t / T),  alpha_c = linspace(ln(1e-2)/1.5, ln(1e-2)/0.3) over channels

The long convolution is ``archs.ops.long_conv`` (an FFT convolution of length 2L; the sequential
definition is its reference). N = 2 is the paper's language-model setting: one long convolution
between two multiplicative gates.

Deviation (documented): the reference normalises positions by the maximum sequence length
(t / (L - 1) and 2 pi f t / L), so its filter depends on L. Here positions are scaled by a fixed
``filter_scale`` T instead, so the filter is defined for every position, forward/prefill/step agree
at any length and no maximum length is needed: T sets the time scale of the features and the decay
window (the slowest channel decays to 1% at t = 1.5 T), not a limit.

Decode keeps the input history of every long convolution (the state grows with the context:
``state_size`` = (N - 1) D per token plus the short-conv window) and computes the step as a direct
causal convolution over that history (O(t) per token, by design: a long convolution has no
constant-size state). Outside autograd the filter taps are cached, keyed by the parameters'
storage and version, and regrown by doubling.
"""
from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ..mixer import Mixer
from ..ops.conv1d import causal_conv1d
from ..ops.long_conv import long_conv
from ..registry import register_mixer
from ..state import MixerState


class Sin(nn.Module):
    """sin(omega . x) with a learned frequency per unit (the implicit filter's activation)."""

    def __init__(self, dim: int, w: float = 1.0):
        super().__init__()
        self.freq = nn.Parameter(torch.full((dim,), float(w)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.freq * x)


class ImplicitFilter(nn.Module):
    """Filter taps h (C, n) at positions 0 .. n-1 for C = channels: a sine-activated MLP over
    positional features, times an exponential decay window (eq. 7 of the paper)."""

    def __init__(self, channels: int, emb_dim: int = 33, filter_order: int = 64, scale: float = 1024.0,
                 w: float = 1.0, fast_decay_pct: float = 0.3, slow_decay_pct: float = 1.5, target: float = 1e-2):
        super().__init__()
        self.channels, self.emb_dim, self.scale = channels, emb_dim, float(scale)
        bands = (emb_dim - 1) // 2
        self.register_buffer("freqs", torch.linspace(1e-4, bands - 1, bands), persistent=False)  # (J,)
        fo = filter_order
        self.mlp = nn.Sequential(
            nn.Linear(emb_dim, fo), Sin(fo, w), nn.Linear(fo, fo), Sin(fo, w), nn.Linear(fo, fo), Sin(fo, w),
            nn.Linear(fo, channels, bias=False),
        )
        lo, hi = math.log(target) / slow_decay_pct, math.log(target) / fast_decay_pct
        self.register_buffer("decay", torch.linspace(lo, hi, channels).abs(), persistent=False)  # (C,)

    def positions(self, n: int, device, dtype) -> torch.Tensor:
        """Positional features (n, emb_dim) of positions 0 .. n-1."""
        t = torch.arange(n, device=device, dtype=dtype)[:, None] / self.scale  # (n, 1)
        ang = 2 * math.pi * t * self.freqs.to(dtype)  # (n, J)
        return torch.cat([t, torch.cos(ang), -torch.sin(ang)], dim=-1)

    def forward(self, n: int, device=None, dtype=None) -> torch.Tensor:
        """Taps (C, n) of positions 0 .. n-1."""
        w = self.mlp[0].weight
        device = device or w.device
        pdt = torch.promote_types(dtype or w.dtype, torch.float32)  # positions beyond 256 need more than bf16
        z = self.positions(n, device, pdt)  # (n, E)
        h = self.mlp(z.to(w.dtype))  # (n, C)
        t = torch.arange(n, device=device, dtype=pdt)[:, None] / self.scale
        return (h * torch.exp(-t * self.decay.to(pdt)).to(h.dtype)).T.contiguous()  # (C, n), time contiguous

    def flops_per_position(self) -> float:
        E, fo, C = self.emb_dim, self.mlp[0].out_features, self.channels
        return 2.0 * (E * fo + 2 * fo * fo + fo * C) + 3 * 2.0 * fo + 3.0 * C + 4.0 * E


@dataclasses.dataclass
class HyenaState(MixerState):
    conv: torch.Tensor  # (B, (N + 1) D, k - 1) the last inputs of the short conv
    hist: torch.Tensor  # (B, N - 1, D, capacity) inputs of every long conv so far (first `length` filled)
    length: int = 0  # tokens seen

    def numel_per_sequence(self) -> int:
        return self.conv[0].numel() + self.hist.shape[1] * self.hist.shape[2] * self.length

    def nbytes_per_sequence(self) -> int:
        return self.numel_per_sequence() * self.hist.element_size()


@register_mixer("hyena")
class Hyena(Mixer):
    """Hyena operator of order N (N - 1 implicit long convolutions between N gates).

    Args:
        d_model: model width D.
        order: N >= 2 (2: the paper's language models).
        filter_order: width of the implicit filter's MLP (64).
        emb_dim: positional features, odd >= 3 (1 + 2 bands; 33).
        filter_scale: position scale T of the features and of the decay window (see the module docstring).
        short_conv_size: kernel of the causal depthwise conv on the N + 1 streams (3).
        sin_freq: initial frequency of the filter MLP's sine activations (1.0).
    """

    test_variants = {
        "order3_short_scale": {"order": 3, "filter_order": 16, "emb_dim": 5, "filter_scale": 16.0, "short_conv_size": 2},
        "no_short_conv": {"short_conv_size": 1, "filter_order": 8, "emb_dim": 3},
    }

    def __init__(self, d_model: int, order: int = 2, filter_order: int = 64, emb_dim: int = 33,
                 filter_scale: float = 1024.0, short_conv_size: int = 3, sin_freq: float = 1.0):
        super().__init__(d_model)
        for what, v, lo in (("order", order, 2), ("filter_order", filter_order, 1), ("short_conv_size", short_conv_size, 1)):
            if not isinstance(v, int) or isinstance(v, bool) or v < lo:
                raise ValueError(f"hyena: {what} must be an int >= {lo}, got {v!r}")
        if not isinstance(emb_dim, int) or isinstance(emb_dim, bool) or emb_dim < 3 or emb_dim % 2 == 0:
            raise ValueError(f"hyena: emb_dim must be an odd int >= 3 (1 + 2 bands), got {emb_dim!r}")
        if not isinstance(filter_scale, (int, float)) or not filter_scale > 0:
            raise ValueError(f"hyena: filter_scale must be a positive number, got {filter_scale!r}")
        self.order, self.short_conv_size = order, short_conv_size
        D = d_model
        self.in_proj = nn.Linear(D, (order + 1) * D)
        bound = 1.0 / math.sqrt(short_conv_size)
        self.short_conv_weight = nn.Parameter(torch.empty((order + 1) * D, short_conv_size).uniform_(-bound, bound))
        self.short_conv_bias = nn.Parameter(torch.empty((order + 1) * D).uniform_(-bound, bound))
        self.filter = ImplicitFilter((order - 1) * D, emb_dim, filter_order, filter_scale, sin_freq)
        self.filter_bias = nn.Parameter(torch.randn(order - 1, D))  # (N-1, D) the skip term b^n
        self.out_proj = nn.Linear(D, D)
        # no weight decay on the implicit filter and the skip term (the reference sets wd=0 on them)
        for p in (*self.filter.parameters(), self.filter_bias):
            p._no_weight_decay = True
        self._tap_cache: tuple | None = None

    def extra_repr(self) -> str:
        f = self.filter
        return (f"d_model={self.d_model}, order={self.order}, filter_order={f.mlp[0].out_features}, "
                f"emb_dim={f.emb_dim}, filter_scale={f.scale}, short_conv_size={self.short_conv_size}")

    # ---- pieces ---------------------------------------------------------------------------
    def _taps(self, n: int) -> torch.Tensor:
        """Filter taps (N-1, D, n) of positions 0 .. n-1."""
        return rearrange(self.filter(n), "(o d) n -> o d n", o=self.order - 1)

    def _streams(self, x: torch.Tensor, conv: torch.Tensor | None):
        """x (B, L, D) -> gates [x^1 .. x^N] and v, each (B, D, L), and the new conv window (or None)."""
        xp = rearrange(self.in_proj(x), "b l e -> b e l")  # (B, (N+1) D, L)
        if conv is None:
            uc, window = causal_conv1d(xp, self.short_conv_weight, self.short_conv_bias), None
        else:
            uc, window = causal_conv1d(xp, self.short_conv_weight, self.short_conv_bias, initial_states=conv,
                                       return_final_states=True)
        *gates, v = uc.split(self.d_model, dim=1)
        return gates, v, window

    def _run(self, x: torch.Tensor, state: HyenaState | None) -> torch.Tensor:
        """x (B, L, D) -> y (B, L, D), continuing from ``state`` (fields replaced/appended) if given."""
        gates, z, window = self._streams(x, None if state is None else state.conv)
        P = 0 if state is None else state.length
        k = self._taps(P + x.shape[1])  # (N-1, D, P + L)
        inputs = []
        for n in range(self.order - 1):
            u = gates[self.order - 1 - n] * z  # (B, D, L) input of long conv n
            inputs.append(u)
            hist = None if state is None or P == 0 else state.hist[:, n, :, :P]
            z = long_conv(u, k[n], self.filter_bias[n], hist)  # (B, D, L)
        if state is not None:
            state.conv = window.to(state.conv.dtype)
            self._append(state, torch.stack(inputs, dim=1))
        return self.out_proj(rearrange(gates[0] * z, "b d l -> b l d"))

    @staticmethod
    def _append(state: HyenaState, u: torch.Tensor) -> None:
        """Append u (B, N-1, D, L) to the history: in place into a doubling buffer, or (when autograd
        tracks either) as a new tensor, so gradients flow through the carried state."""
        P, L = state.length, u.shape[-1]
        u = u.to(state.hist.dtype)
        if torch.is_grad_enabled() and (u.requires_grad or state.hist.requires_grad):
            state.hist = torch.cat([state.hist[..., :P], u], dim=-1)
        else:
            if P + L > state.hist.shape[-1]:
                grown = state.hist.new_zeros(*state.hist.shape[:-1], max(P + L, 2 * state.hist.shape[-1]))
                grown[..., :P] = state.hist[..., :P]
                state.hist = grown
            state.hist[..., P:P + L] = u
        state.length = P + L

    def _reversed_taps(self, n: int) -> torch.Tensor:
        """(N-1, D, C) taps of positions C-1 .. 0 (reversed), C >= n; cached outside autograd."""
        if torch.is_grad_enabled() and any(p.requires_grad for p in self.filter.parameters()):
            return self._taps(n).flip(-1)
        params = list(self.filter.parameters())
        key = tuple((p.data_ptr(), p._version, p.dtype, p.device) for p in params)
        cache = self._tap_cache
        if cache is None or cache[0] != key or cache[1].shape[-1] < n:
            size = max(n, 256 if cache is None or cache[0] != key else 2 * cache[1].shape[-1])
            with torch.no_grad():
                self._tap_cache = cache = (key, self._taps(size).flip(-1).contiguous())
        return cache[1]

    # ---- interface ------------------------------------------------------------------------
    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(x, None)

    def _prefill(self, x: torch.Tensor, state: HyenaState):
        return self._run(x, state), state

    def _step(self, x_t: torch.Tensor, state: HyenaState):
        xp = self.in_proj(x_t)  # (B, (N+1) D)
        window = torch.cat([state.conv, xp[:, :, None].to(state.conv.dtype)], dim=2)  # (B, (N+1) D, k)
        uc = (window * self.short_conv_weight).sum(-1) + self.short_conv_bias
        *gates, z = uc.split(self.d_model, dim=1)  # (B, D) each
        t = state.length
        k_rev = self._reversed_taps(t + 1)  # (N-1, D, C): k_rev[..., C-1-j] = k[j]
        C = k_rev.shape[-1]
        inputs = []
        for n in range(self.order - 1):
            u = gates[self.order - 1 - n] * z  # (B, D)
            inputs.append(u)
            past = state.hist[:, n, :, :t]  # (B, D, t)
            z = (past * k_rev[n, :, C - 1 - t:C - 1]).sum(-1) + (k_rev[n, :, C - 1] + self.filter_bias[n]) * u
        state.conv = window[:, :, 1:]
        self._append(state, torch.stack(inputs, dim=1)[..., None])
        return self.out_proj(gates[0] * z), state

    def init_state(self, batch_size: int, device=None, dtype=None, max_seq_len: int | None = None) -> HyenaState:
        device, dtype = self._state_defaults(device, dtype)
        cap = max_seq_len if max_seq_len else 256
        return HyenaState(
            conv=torch.zeros(batch_size, (self.order + 1) * self.d_model, self.short_conv_size - 1, device=device, dtype=dtype),
            hist=torch.zeros(batch_size, self.order - 1, self.d_model, cap, device=device, dtype=dtype),
        )

    def state_size(self, seq_len: int) -> int:
        D, N = self.d_model, self.order
        return (N + 1) * D * (self.short_conv_size - 1) + (N - 1) * D * seq_len

    def flops_per_token(self, seq_len: int) -> float:
        """Forward FLOPs per token at batch 1 (the filter is computed once per sequence and shared
        by the batch). FFTs count 2.5 n log2 n per real transform of size n (half a complex FFT's
        5 n log2 n), the spectral product 6 per complex bin."""
        D, N, L, ks = self.d_model, self.order, seq_len, self.short_conv_size
        proj = 2.0 * D * (N + 1) * D + 2.0 * D * D
        short = 2.0 * (N + 1) * D * ks
        n = 2 * L
        fft = (2 * 2.5 * n * math.log2(n) + 2.5 * n * math.log2(n) + 6.0 * (n // 2 + 1)) / L  # rfft u, k; irfft
        long = (N - 1) * D * (fft + 4.0)  # + gate and skip (2 each)
        return proj + short + long + D + self.filter.flops_per_position()
