"""Rotary position embedding (RoPE), applied at absolute positions so caches can continue."""
from __future__ import annotations

import torch
from torch import nn


class Rotary(nn.Module):
    """Rotates pairs (x[..., i], x[..., i + d/2]) by angle pos * base^(-2i/d) (the "rotate-half" layout)."""

    def __init__(self, head_dim: int, base: float = 10000.0):
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"Rotary: head_dim must be even, got {head_dim}")
        inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
        self.register_buffer("inv_freq", inv_freq, persistent=False)  # (Dh/2,) fp64: exact angles at 64k

    def cos_sin(self, start: int, length: int, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
        pos = torch.arange(start, start + length, device=self.inv_freq.device, dtype=torch.float64)
        ang = torch.outer(pos, self.inv_freq)  # (L, Dh/2)
        ang = torch.cat([ang, ang], dim=-1)  # (L, Dh)
        return ang.cos().to(device=device, dtype=dtype), ang.sin().to(device=device, dtype=dtype)

    @staticmethod
    def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """x (B, H, L, Dh); cos, sin (L, Dh)."""
        x1, x2 = x.chunk(2, dim=-1)
        return x * cos + torch.cat([-x2, x1], dim=-1) * sin
