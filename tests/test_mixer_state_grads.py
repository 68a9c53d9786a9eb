"""Gradients through a carried state, for every registered mixer and its ``test_variants``
(and each wrapped in ``ShortConv``): token-by-token ``step``s, ``prefill`` after ``prefill``
(truncated BPTT's pattern) and ``prefill`` then ``step``s are all backward-able and give the
gradients of the full-sequence ``forward`` (fp64), for the input and every parameter.
"""
from __future__ import annotations

import pytest
import torch

from helpers import assert_rel_close
from test_mixer_equivalence import CASES, _build

B, L, D = 2, 9, 32
GRAD_TOL = 1e-8  # fp64


def _loss_and_grads(m, x, run):
    """sum(run(m, x) * c) for a fixed random cotangent c -> grads of x and every parameter."""
    x = x.detach().clone().requires_grad_(True)
    y = run(m, x)
    c = torch.randn(y.shape, dtype=y.dtype, generator=torch.Generator().manual_seed(3))
    params = [p for p in m.parameters() if p.requires_grad]
    grads = torch.autograd.grad((y * c).sum(), [x, *params], allow_unused=True)
    names = ["input"] + [n for n, p in m.named_parameters() if p.requires_grad]
    return dict(zip(names, grads))


def _steps(m, x, state=None):
    state = m.init_state(x.shape[0], dtype=x.dtype) if state is None else state
    ys = []
    for t in range(x.shape[1]):
        y, state = m.step(x[:, t], state)
        ys.append(y)
    return torch.stack(ys, 1), state


def _by_steps(m, x):
    return _steps(m, x)[0]


def _prefill_prefill(m, x):
    ya, st = m.prefill(x[:, :4])
    yb, st = m.prefill(x[:, 4:7], st)
    yc, _ = m.prefill(x[:, 7:], st)
    return torch.cat([ya, yb, yc], 1)


def _prefill_steps(m, x):
    ya, st = m.prefill(x[:, :5])
    yb, _ = _steps(m, x[:, 5:], st)
    return torch.cat([ya, yb], 1)


@pytest.mark.parametrize("run", [_by_steps, _prefill_prefill, _prefill_steps], ids=["steps", "prefill_prefill", "prefill_steps"])
@pytest.mark.parametrize("name,kw", CASES)
def test_gradients_through_state_equal_forward(name, kw, run):
    m = _build(name, kw, torch.float64).train()
    x = torch.randn(B, L, D, dtype=torch.float64)
    want = _loss_and_grads(m, x, lambda m, x: m(x))
    got = _loss_and_grads(m, x, run)
    for pname, g in want.items():
        if g is None:
            assert got[pname] is None or not got[pname].any(), f"{name}: {pname} gets a gradient only through the state"
            continue
        assert got[pname] is not None, f"{name} ({run.__name__}): no gradient for {pname} through the state"
        assert_rel_close(got[pname], g, GRAD_TOL, f"{name} ({run.__name__}): gradient of {pname}")
