"""Gated delta rule (Gated DeltaNet's memory; fla.ops signature).

    chunk_gated_delta_rule(q, k, v, g, beta, scale=None, initial_state=None, output_final_state=False)
        q, k (B, T, H, K); v (B, T, H, V); g log decay (B, T, H); beta (B, T, H); state (B, H, K, V)
        S_t = a_t S_{t-1} + beta_t k_t (v_t - a_t S_{t-1}^T k_t)^T, a_t = exp(g_t); o_t = scale S_t^T q_t
        -> (o (B, T, H, V), final state or None)
    gated_delta_rule_ref   the sequential definition (test oracle), same signature

On CUDA with flash-linear-attention installed, fla's Triton kernel (``fla.ops.gated_delta_rule``) is
used; otherwise the chunked WY form in ``chunk.py``.
"""
from __future__ import annotations

from .._common import call_fla
from .chunk import gated_delta_rule_chunked
from .ref import gated_delta_rule_ref

__all__ = ["chunk_gated_delta_rule", "gated_delta_rule_ref", "gated_delta_rule_chunked"]


def chunk_gated_delta_rule(q, k, v, g, beta, scale=None, initial_state=None, output_final_state=False, chunk_size=64):
    """Chunked gated delta rule; same contract as :func:`gated_delta_rule_ref` (see its docstring).

    ``chunk_size`` only affects the pure-PyTorch path (fla's kernel picks its own)."""
    kern = call_fla("fla.ops.gated_delta_rule", "chunk_gated_delta_rule", q, k, v, g, beta, scale=scale,
                    initial_state=initial_state, output_final_state=output_final_state)
    if kern is not None:
        return kern
    return gated_delta_rule_chunked(q, k, v, g, beta, scale, initial_state, output_final_state, chunk_size)
