"""Causal long convolution (Hyena's implicit-filter convolution, H3's "fftconv").

    long_conv(u, k, bias=None, history=None) -> y
        u (B, C, L); k (C, K >= P + L) the filter, k[:, 0] on the current input; bias (C,) the skip
        term; history (B, C, P) the inputs before u. y_t = sum_s k[P + t - s] w_s + bias * u_t,
        w = cat(history, u).
    long_conv_ref   the sequential definition (test oracle)

The fast form is an FFT convolution of length 2 (P + L) in pure PyTorch (``torch.fft`` runs on CPU
and, through cuFFT, on CUDA). No GPU kernel is dispatched: FlashFFTConv has no installable package
with a stable API, so there is nothing in ``archs/ops/_dispatch.py`` for this family.
"""
from __future__ import annotations

from .fft import long_conv_fft
from .ref import long_conv_ref

__all__ = ["long_conv", "long_conv_ref"]


def long_conv(u, k, bias=None, history=None):
    """Causal long convolution (see the module docstring): the FFT form."""
    return long_conv_fft(u, k, bias, history)
