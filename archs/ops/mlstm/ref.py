"""Sequential definition of the mLSTM recurrence (the test oracle).

Beck et al. 2024, "xLSTM: Extended Long Short-Term Memory", eqs. (19)-(27) (matrix memory, exponential
input gate, normalizer state) with the max-stabilizer of eqs. (15)-(17), in the form of the xLSTM
kernels (the ``mlstm_recurrent_step_native`` of HF transformers): for each head, with log forget
gate lf_t, input gate pre-activation i_t and the scaled query q_t' = scale * q_t,

    m_t = max(lf_t + m_{t-1}, i_t)                                     (stabilizer)
    C_t = exp(lf_t + m_{t-1} - m_t) C_{t-1} + exp(i_t - m_t) k_t v_t^T (matrix memory, K x V)
    n_t = exp(lf_t + m_{t-1} - m_t) n_{t-1} + exp(i_t - m_t) k_t       (normalizer, K)
    h_t = C_t^T q_t' / (max(|n_t . q_t'|, exp(-m_t)) + eps)

The state (C, n, m) is the stabilized one: the true memory is exp(m) C. An empty state is
(0, 0, m = 0), as in the xLSTM kernels.
"""
from __future__ import annotations

import torch

from .check import check_mlstm, compute_dtype, default_scale


def mlstm_step(q, k, v, i, log_f, state, scale, eps):
    """One step. q, k (B, H, K); v (B, H, V); i, log_f (B, H); state (C, n, m) -> (h (B, H, V), state)."""
    C, n, m = state
    m_new = torch.maximum(log_f + m, i)  # (B, H)
    a = (log_f + m - m_new).exp()  # (B, H) decay of the old state
    b = (i - m_new).exp()  # (B, H) weight of the new token
    C = a[..., None, None] * C + b[..., None, None] * (k[..., :, None] * v[..., None, :])  # (B, H, K, V)
    n = a[..., None] * n + b[..., None] * k  # (B, H, K)
    qs = scale * q
    num = torch.einsum("bhk,bhkv->bhv", qs, C)  # (B, H, V)
    den = torch.maximum((qs * n).sum(-1).abs(), (-m_new).exp()) + eps  # (B, H)
    return num / den[..., None], (C, n, m_new)


def mlstm_ref(q, k, v, i, log_f, scale=None, initial_state=None, output_final_state=False, eps=1e-6):
    """mLSTM over a sequence, one token at a time (the definition; see the module docstring).

    q, k: (B, T, H, K); v: (B, T, H, V); i: (B, T, H) input gate pre-activation (the gate is exp(i));
    log_f: (B, T, H) log forget gate (logsigmoid(f~) for xLSTM's sigmoid gate, f~ for an exp gate);
    initial_state: (C (B, H, K, V), n (B, H, K), m (B, H)) or None. scale defaults to K^-0.5.
    Returns (h (B, T, H, V), (C, n, m) or None).
    """
    B, T, H, K, V = check_mlstm("mlstm_ref", q, k, v, i, log_f, initial_state, eps)
    out_dtype = v.dtype
    cd = compute_dtype(q, k, v, i, log_f)
    q, k, v, i, log_f = (t.to(cd) for t in (q, k, v, i, log_f))
    if initial_state is None:
        state = (q.new_zeros(B, H, K, V), q.new_zeros(B, H, K), q.new_zeros(B, H))
    else:
        state = tuple(s.to(cd) for s in initial_state)
    scale = default_scale(scale, K)
    hs = []
    for t in range(T):
        h, state = mlstm_step(q[:, t], k[:, t], v[:, t], i[:, t], log_f[:, t], state, scale, eps)
        hs.append(h)
    h = torch.stack(hs, dim=1) if hs else v.new_zeros(B, 0, H, V, dtype=cd)  # (B, T, H, V)
    return h.to(out_dtype), (state if output_final_state else None)
