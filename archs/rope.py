"""Rotary position embedding (RoPE), applied at absolute positions so caches can continue.

Su et al. 2021, "RoFormer" (eq. 34, the "rotate-half" pairing of HF/Llama). Frequency scalings, as
HF ``transformers`` computes them (``modeling_rope_utils``), from a ``rope_scaling`` dict with
``rope_type`` (or ``type``):

- ``linear`` (Chen et al. 2023, position interpolation): inv_freq / factor.
- ``dynamic`` (dynamic NTK): for a sequence of total length s > max_position_embeddings the base
  becomes base * (factor * s / max_pos - (factor - 1)) ** (d / (d - 2)). The frequencies depend on
  the length seen so far, so keys cached at earlier steps keep the rotation of their time (as in
  HF's cache); forward over L tokens and token-by-token decode are therefore not the same function
  beyond max_pos. Deviation: HF's module keeps the largest length it ever saw across calls; here
  each call uses its own total length (the same as HF on a fresh model and within one generate).
- ``yarn`` (Peng et al. 2023, eqs. 17-22 and the attention factor 0.1 ln(s) + 1, applied to cos
  and sin as HF does): beta_fast, beta_slow, truncate, mscale, mscale_all_dim, attention_factor.
- ``llama3``: factor, low_freq_factor, high_freq_factor, original_max_position_embeddings.

Precision: the frequencies live in fp64 and angles are formed in fp64; ``.to(torch.bfloat16)`` (and
Lightning's bf16-true, which calls it) does not cast them (``_apply`` recomputes them in fp64). In
fp16/bf16 the rotation itself is done in fp32 and cast back.
"""
from __future__ import annotations

import math

import torch
from torch import nn

ROPE_TYPES = ("default", "linear", "dynamic", "yarn", "llama3")


def normalize_rope_scaling(scaling: dict | None) -> dict | None:
    """Check a rope_scaling dict; returns a plain dict with ``rope_type`` set, or None for the default."""
    if scaling is None:
        return None
    if not isinstance(scaling, dict):
        raise ValueError(f"rope_scaling must be a dict with 'rope_type' in {ROPE_TYPES} or None, got {scaling!r}")
    s = {k: v for k, v in dict(scaling).items() if k not in ("rope_theta", "type")}
    s["rope_type"] = scaling.get("rope_type", scaling.get("type", "default"))
    if s["rope_type"] not in ROPE_TYPES:
        raise ValueError(f"rope_scaling: unknown rope_type {s['rope_type']!r}; supported: {list(ROPE_TYPES)}")
    if s["rope_type"] == "default":
        return None
    if float(s.get("partial_rotary_factor", 1.0)) != 1.0:
        raise ValueError(f"rope_scaling: partial_rotary_factor={s['partial_rotary_factor']} is not supported (only 1.0)")
    need = {"linear": ["factor"], "dynamic": ["factor", "max_position_embeddings"],
            "yarn": ["factor", "original_max_position_embeddings"],
            "llama3": ["factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"]}[s["rope_type"]]
    missing = [k for k in need if s.get(k) is None]
    if missing:
        raise ValueError(f"rope_scaling of type {s['rope_type']!r} needs {missing}, got {scaling!r}")
    return s


def rope_inv_freq(head_dim: int, base: float, scaling: dict | None = None, seq_len: int | None = None
                  ) -> tuple[torch.Tensor, float]:
    """(inv_freq (head_dim/2,) fp64, attention_factor) for ``scaling`` (normalised) at total length ``seq_len``."""
    d = head_dim
    exps = torch.arange(0, d, 2, dtype=torch.float64) / d  # (d/2,)
    inv = base ** -exps
    kind = scaling["rope_type"] if scaling else "default"
    if kind == "default":
        return inv, 1.0
    factor = float(scaling["factor"])
    if kind == "linear":
        return inv / factor, 1.0
    if kind == "dynamic":
        max_pos = int(scaling["max_position_embeddings"])
        s = max(seq_len or max_pos, max_pos)
        b = base * ((factor * s / max_pos) - (factor - 1)) ** (d / (d - 2))
        return b ** -exps, 1.0
    if kind == "llama3":
        old = float(scaling["original_max_position_embeddings"])
        lo, hi = float(scaling["low_freq_factor"]), float(scaling["high_freq_factor"])
        wavelen = 2 * math.pi / inv
        smooth = (old / wavelen - lo) / (hi - lo)  # 0 at the low-frequency edge, 1 at the high one
        mid = (1 - smooth) * inv / factor + smooth * inv
        out = torch.where(wavelen > old / lo, inv / factor, inv)
        return torch.where((wavelen >= old / hi) & (wavelen <= old / lo), mid, out), 1.0
    # yarn
    orig = float(scaling["original_max_position_embeddings"])
    beta_fast = scaling.get("beta_fast") or 32
    beta_slow = scaling.get("beta_slow") or 1

    def mscale(scale, m=1.0):
        return 1.0 if scale <= 1 else 0.1 * m * math.log(scale) + 1.0

    att = scaling.get("attention_factor")
    if att is None:
        m, m_all = scaling.get("mscale"), scaling.get("mscale_all_dim")
        att = mscale(factor, m) / mscale(factor, m_all) if (m and m_all) else mscale(factor)

    def dim_for(rotations):  # the dimension that turns `rotations` times over the original context
        return d * math.log(orig / (rotations * 2 * math.pi)) / (2 * math.log(base))

    low, high = dim_for(beta_fast), dim_for(beta_slow)
    if scaling.get("truncate", True):
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, d - 1)
    if low == high:
        high += 0.001
    ramp = ((torch.arange(d // 2, dtype=torch.float64) - low) / (high - low)).clamp(0, 1)  # 1 = interpolate
    return inv / factor * ramp + inv * (1 - ramp), float(att)


class Rotary(nn.Module):
    """Rotates pairs (x[..., i], x[..., i + d/2]) by angle pos * inv_freq[i] (the "rotate-half" layout).

    ``scaling``: an HF-style rope_scaling dict (see the module docstring) or None.
    """

    def __init__(self, head_dim: int, base: float = 10000.0, scaling: dict | None = None):
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"Rotary: head_dim must be even, got {head_dim}")
        self.head_dim, self.base = head_dim, float(base)
        self.scaling = normalize_rope_scaling(scaling)
        self.dynamic = self.scaling is not None and self.scaling["rope_type"] == "dynamic"
        inv_freq, self.attention_factor = rope_inv_freq(head_dim, self.base, self.scaling)
        self.register_buffer("inv_freq", inv_freq, persistent=False)  # (Dh/2,) fp64: exact angles at 64k

    def _apply(self, fn, recurse=True):
        # .to(bf16) / .half() would cast the frequencies: recompute them in fp64 where the buffer now lives
        super()._apply(fn, recurse)
        if self.inv_freq.dtype != torch.float64:
            self.inv_freq = rope_inv_freq(self.head_dim, self.base, self.scaling)[0].to(self.inv_freq.device)
        return self

    def cos_sin(self, start: int, length: int, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin (L, Dh) for positions start .. start+length-1, times the attention factor (yarn)."""
        inv_freq = self.inv_freq
        if self.dynamic:
            inv_freq = rope_inv_freq(self.head_dim, self.base, self.scaling, start + length)[0].to(inv_freq.device)
        pos = torch.arange(start, start + length, device=inv_freq.device, dtype=torch.float64)
        ang = torch.outer(pos, inv_freq)  # (L, Dh/2)
        ang = torch.cat([ang, ang], dim=-1)  # (L, Dh)
        cos, sin = ang.cos(), ang.sin()
        if self.attention_factor != 1.0:
            cos, sin = cos * self.attention_factor, sin * self.attention_factor
        if dtype in (torch.float16, torch.bfloat16):
            dtype = torch.float32  # rotate() works in fp32 for half inputs
        return cos.to(device=device, dtype=dtype), sin.to(device=device, dtype=dtype)

    @staticmethod
    def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """x (B, H, L, Dh); cos, sin (L, Dh). Half-precision x is rotated in fp32 and cast back."""
        xf = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        x1, x2 = xf.chunk(2, dim=-1)
        return (xf * cos + torch.cat([-x2, x1], dim=-1) * sin).to(x.dtype)

    def extra_repr(self) -> str:
        return f"head_dim={self.head_dim}, base={self.base}, scaling={self.scaling}"
