"""Hybrid language models (linear RNN layers interleaved with attention) through the public API:
forward logits == prefill == token-by-token step == split prefill with carried state (fp64),
causality, state accounting, and greedy ``generate`` == argmax of the full forward."""
import pytest
import torch

from archs import LanguageModel
from helpers import assert_rel_close

V, D, B = 61, 32, 2
PATTERNS = {
    "hgrn_lru_attn": (["hgrn", "lru", "attention"], 4),  # cycled: hgrn, lru, attention, hgrn
    "mingru_lstm_attn": (["mingru", "lstm", "attention"], 3),
}


def _model(key, dtype=torch.float64):
    layers, n_layers = PATTERNS[key]
    torch.manual_seed(0)
    return LanguageModel(V, D, n_layers, layers=layers, mixer_kwargs={"attention": {"n_heads": 2}}).to(dtype).eval()


def _steps(model, tokens, state):
    out = []
    for t in range(tokens.shape[1]):
        logits, state = model.step(tokens[:, t], state)
        out.append(logits)
    return torch.stack(out, dim=1), state


@pytest.mark.parametrize("key", PATTERNS)
def test_paths_agree(key):
    model = _model(key)
    tol = 1e-10
    with torch.no_grad():
        for L in (1, 9, 37):
            tok = torch.randint(0, V, (B, L))
            ref = model(tok)  # (B, L, V)
            assert ref.shape == (B, L, V)
            pre, st = model.prefill(tok)
            assert_rel_close(pre, ref, tol, f"{key} L={L}: prefill vs forward")
            assert sum(s.numel_per_sequence() for s in st) == model.state_size(L)
            stepped, _ = _steps(model, tok, model.init_state(B))
            assert_rel_close(stepped, ref, tol, f"{key} L={L}: step vs forward")
            for cut in sorted({1, L // 3, L - 1} - {0, L}):
                a, st = model.prefill(tok[:, :cut])
                b, st = model.prefill(tok[:, cut:], st)
                assert_rel_close(torch.cat([a, b], 1), ref, tol, f"{key} L={L}: split prefill at {cut}")
                b, _ = _steps(model, tok[:, cut:], model.prefill(tok[:, :cut])[1])
                assert_rel_close(torch.cat([a, b], 1), ref, tol, f"{key} L={L}: prefill to {cut} then step")


@pytest.mark.parametrize("key", PATTERNS)
def test_causal(key):
    model = _model(key)
    tok = torch.randint(0, V, (B, 30))
    tok2 = tok.clone()
    tok2[:, 17:] = torch.randint(0, V, (B, 13))
    with torch.no_grad():
        y, y2 = model(tok), model(tok2)
    assert_rel_close(y2[:, :17], y[:, :17], 1e-12, f"{key}: logits before 17 changed with future tokens")


@pytest.mark.parametrize("key", PATTERNS)
def test_greedy_generate_is_argmax_of_forward(key):
    model = _model(key)
    prompt = torch.randint(0, V, (B, 7))
    out = model.generate(prompt, max_new_tokens=12, temperature=0)
    assert out.shape == (B, 19) and torch.equal(out[:, :7], prompt)
    with torch.no_grad():
        logits = model(out[:, :-1])  # (B, 18, V): position t predicts token t + 1
    assert torch.equal(logits[:, 6:].argmax(-1), out[:, 7:])


@pytest.mark.parametrize("key", PATTERNS)
def test_trains_fp32(key):
    """One backward pass: every parameter gets a finite gradient."""
    model = _model(key, torch.float32).train()
    tok = torch.randint(0, V, (B, 20))
    loss = torch.nn.functional.cross_entropy(model(tok[:, :-1]).reshape(-1, V), tok[:, 1:].reshape(-1))
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
