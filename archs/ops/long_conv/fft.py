"""Causal long convolution by FFT: O((P + L) log(P + L)) instead of the O((P + L) L) direct sum."""
from __future__ import annotations

import torch

from .check import check_long_conv_args

_FFT_DTYPES = (torch.float32, torch.float64)


def long_conv_fft(u, k, bias=None, history=None):
    """Same contract as ``long_conv_ref``. Zero-pads input and filter to n = 2 (P + L) so the
    circular convolution of the FFT equals the linear (causal) one (Hyena's ``fftconv``), then keeps
    the outputs of the new positions. bf16/fp16 inputs are transformed in fp32."""
    P = check_long_conv_args("long_conv_fft", u, k, bias, history)
    L = u.shape[2]
    dtype = u.dtype if u.dtype in _FFT_DTYPES else torch.float32
    w = u if history is None else torch.cat([history.to(u.dtype), u], dim=2)  # (B, C, P + L)
    N = P + L
    n = 2 * N
    w_f = torch.fft.rfft(w.to(dtype), n=n)  # (B, C, n/2 + 1)
    k_f = torch.fft.rfft(k[:, :N].to(dtype), n=n)  # (C, n/2 + 1)
    y = torch.fft.irfft(w_f * k_f, n=n)[:, :, P:N]  # (B, C, L)
    if bias is not None:
        y = y + bias.to(dtype)[:, None] * u.to(dtype)
    return y.to(u.dtype)
