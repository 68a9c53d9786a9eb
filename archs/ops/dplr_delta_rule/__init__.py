"""Generalized (diagonal-plus-low-rank) delta rule: RWKV-7's memory (fla.ops signature).

    chunk_dplr_delta_rule(q, k, v, a, b, gk, scale=None, initial_state=None, output_final_state=False)
        q, k, a, b, gk (B, T, H, K); v (B, T, H, V); state (B, H, K, V)
        S_t = diag(exp(gk_t)) S_{t-1} + k_t v_t^T + b_t (a_t^T S_{t-1}); o_t = scale S_t^T q_t
        -> (o (B, T, H, V), final state or None)
    dplr_delta_rule_ref   the sequential definition (test oracle), same signature

On CUDA with flash-linear-attention installed, fla's Triton kernel
(``fla.ops.generalized_delta_rule.chunk_dplr_delta_rule``) is used; otherwise the chunked form in
``chunk.py``.
"""
from __future__ import annotations

from .._common import call_fla
from .chunk import decayed_scores, dplr_delta_rule_chunked
from .ref import dplr_delta_rule_ref

__all__ = ["chunk_dplr_delta_rule", "dplr_delta_rule_ref", "dplr_delta_rule_chunked", "decayed_scores"]


def chunk_dplr_delta_rule(q, k, v, a, b, gk, scale=None, initial_state=None, output_final_state=False, chunk_size=32):
    """Chunked DPLR delta rule; same contract as :func:`dplr_delta_rule_ref` (see its docstring).

    ``chunk_size`` only affects the pure-PyTorch path (fla's kernel picks its own). The default 32 is
    the fastest fwd+bwd on CPU at T = 2048, K = V = 64 (1 thread: ~1.15x faster than 64 and than 16;
    ``python -m eval.bench.delta_rules``)."""
    kern = call_fla("fla.ops.generalized_delta_rule", "chunk_dplr_delta_rule", q, k, v, a, b, gk, scale=scale,
                    initial_state=initial_state, output_final_state=output_final_state)
    if kern is not None:
        return kern
    return dplr_delta_rule_chunked(q, k, v, a, b, gk, scale, initial_state, output_final_state, chunk_size)
