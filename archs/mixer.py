"""The mixer interface: every sequence mixer (attention, SSMs, retention, RNNs) is one of these.

Public methods check their inputs and delegate to the underscored ones that each mixer
implements, so every architecture raises the same clear errors:

    forward(x)              x: (B, L, D) -> y: (B, L, D); causal; training path
    prefill(x, state=None)  -> (y, state); continues from ``state`` (None = empty)
    step(x_t, state)        x_t: (B, D) -> (y_t, state); one token
    init_state(batch_size, device=None, dtype=None, max_seq_len=None) -> state
    state_size(seq_len)     numbers held per sequence after seq_len tokens
    flops_per_token(seq_len) analytic forward FLOPs per token, averaged over seq_len
    no_weight_decay()       names of parameters the optimizer must not decay

The checks, once for every mixer: x must be a floating-point (B, L, D) tensor; an empty batch
(B = 0) or an empty sequence (L = 0) gives an empty output without running the mixer (and leaves
the state as it was); a state must be the class this mixer's ``init_state`` builds, with the
batch, dtype and device of the input; a sequence longer than ``max_seq_len`` (when a mixer sets
one) is refused.
"""
from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from .state import MixerState


class Mixer(nn.Module):
    #: registry name, set by ``@register_mixer``
    name: ClassVar[str] = "?"
    #: extra constructor kwargs the generic test suite also runs (valid at d_model=32),
    #: e.g. ``{"gqa": {"n_heads": 4, "n_kv_heads": 2}}``; the default config is always run.
    test_variants: ClassVar[dict[str, dict]] = {}
    #: the longest sequence this mixer can process (e.g. a fixed-size positional table); None =
    #: unbounded (every mixer here). forward/prefill refuse longer inputs and the trainer refuses
    #: a longer ``seq_len`` before training. ``init_state(max_seq_len=...)`` is something else: a
    #: capacity hint (attention preallocates its KV cache for that many tokens).
    max_seq_len: int | None = None

    def __init__(self, d_model: int):
        super().__init__()
        if not isinstance(d_model, int) or d_model <= 0:
            raise ValueError(f"{type(self).__name__}: d_model must be a positive int, got {d_model!r}")
        self.d_model = d_model

    # ---- public, checked ----------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_seq(x, "forward")
        if x.numel() == 0:  # B = 0 or L = 0: nothing to mix (clone keeps x's graph)
            return x.clone()
        return self._forward(x)

    def prefill(self, x: torch.Tensor, state: MixerState | None = None) -> tuple[torch.Tensor, MixerState]:
        self._check_seq(x, "prefill")
        if state is None:
            state = self.init_state(x.shape[0], device=x.device, dtype=x.dtype)
        else:
            self._check_state(state, x.shape[0], "prefill", x)
        if x.numel() == 0:
            return x.clone(), state
        return self._prefill(x, state)

    def step(self, x_t: torch.Tensor, state: MixerState | None) -> tuple[torch.Tensor, MixerState]:
        if state is None:
            raise ValueError(
                f"{self.name}.step() needs a state: call init_state(batch_size) or prefill() first"
            )
        if not isinstance(x_t, torch.Tensor) or x_t.dim() != 2 or x_t.shape[1] != self.d_model:
            raise ValueError(
                f"{self.name}.step expects x_t of shape (B, {self.d_model}), got {_shape(x_t)}"
            )
        self._check_float(x_t, "step")
        self._check_state(state, x_t.shape[0], "step", x_t)
        if x_t.shape[0] == 0:
            return x_t.clone(), state
        return self._step(x_t, state)

    # ---- to implement --------------------------------------------------------------------
    def _forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, L, D) -> (B, L, D)
        raise NotImplementedError

    def _prefill(self, x: torch.Tensor, state: MixerState) -> tuple[torch.Tensor, MixerState]:
        raise NotImplementedError

    def _step(self, x_t: torch.Tensor, state: MixerState) -> tuple[torch.Tensor, MixerState]:
        raise NotImplementedError

    def init_state(self, batch_size: int, device=None, dtype=None, max_seq_len: int | None = None) -> MixerState:
        raise NotImplementedError

    def trim_state(self, state: MixerState, keep_tokens: int) -> MixerState:
        """Bound a carried state to what the last ``keep_tokens`` tokens put in it, for truncated
        BPTT over an endless stream. A constant-size state (every recurrent mixer) is returned as
        it is; a growing one (attention's KV cache) drops its older tokens."""
        return state

    def state_size(self, seq_len: int) -> int:
        """Numbers held per sequence after ``seq_len`` tokens (analytic)."""
        raise NotImplementedError

    def flops_per_token(self, seq_len: int) -> float:
        """Analytic forward FLOPs per token (multiply-add = 2), averaged over ``seq_len`` positions."""
        raise NotImplementedError

    def no_weight_decay(self) -> set[str]:
        """Names (as in ``self.named_parameters()``) of parameters the optimizer must not decay:
        A_log, D, dt_bias, decay and bonus parameters, norm weights, biases.

        Default (``no_weight_decay_names``): every parameter marked ``p._no_weight_decay = True``
        (mamba_ssm's convention), every parameter of a normalisation layer, every bias, and what a
        wrapped mixer (a child ``Mixer``) names. A mixer adds its decay-type parameters by
        overriding: ``return super().no_weight_decay() | {"A_log", "D"}``."""
        return no_weight_decay_names(self)

    # ---- helpers -------------------------------------------------------------------------
    def _state_defaults(self, device, dtype):
        p = next(self.parameters(), None)
        device = device if device is not None else (p.device if p is not None else None)
        dtype = dtype if dtype is not None else (p.dtype if p is not None else torch.get_default_dtype())
        return device, dtype

    def _check_seq(self, x, where: str) -> None:
        if not isinstance(x, torch.Tensor) or x.dim() != 3 or x.shape[2] != self.d_model:
            raise ValueError(f"{self.name}.{where} expects x of shape (B, L, {self.d_model}), got {_shape(x)}")
        self._check_float(x, where)
        if self.max_seq_len is not None and x.shape[1] > self.max_seq_len:
            raise ValueError(f"{self.name}.{where}: sequence length {x.shape[1]} is above this mixer's max_seq_len={self.max_seq_len}")

    def _check_float(self, x: torch.Tensor, where: str) -> None:
        if not x.is_floating_point():
            raise TypeError(f"{self.name}.{where} expects floating-point input (e.g. float32, bfloat16), got dtype {x.dtype}; "
                            "embed integer tokens first (LanguageModel does)")

    def _check_state(self, state, batch: int, where: str, x: torch.Tensor | None = None) -> None:
        if not isinstance(state, MixerState):
            raise TypeError(f"{self.name}.{where}: state must be a MixerState from init_state()/prefill(), got {type(state).__name__}")
        ref = None if x is None else self._state_signature(x.dtype)
        if ref is not None and type(state) is not ref[0]:
            raise TypeError(f"{self.name}.{where}: state is a {type(state).__name__} (another mixer's?) but {self.name} "
                            f"carries a {ref[0].__name__}: pass the state this mixer's init_state()/prefill() returned")
        held = state.tensors()
        if held and held[0].shape[0] != batch:
            raise ValueError(f"{self.name}.{where}: state holds batch {held[0].shape[0]} but input has batch {batch}")
        if x is None:
            return
        want, device = (ref[1] if ref is not None else ()), x.device
        for i, t in enumerate(held):
            if t.device != device:
                raise ValueError(f"{self.name}.{where}: state tensor {i} is on {t.device} but the input is on {device}; "
                                 "build the state on the input's device (init_state(..., device=x.device))")
            # under autocast the input's dtype is autocast's choice, not the state's: no dtype error
            if i < len(want) and t.dtype != want[i] and not torch.is_autocast_enabled(x.device.type):
                raise TypeError(f"{self.name}.{where}: state tensor {i} has dtype {t.dtype} but for {x.dtype} input this mixer "
                                f"carries {want[i]}; build the state with init_state(..., dtype=x.dtype)")

    def _state_signature(self, dtype: torch.dtype) -> tuple[type, tuple[torch.dtype, ...]] | None:
        """(state class, dtypes of its tensors) of what ``init_state`` builds for ``dtype`` input:
        what a passed state must match. Cached per dtype; None if init_state(0) fails."""
        cache = self.__dict__.setdefault("_state_signatures", {})
        if dtype not in cache:
            try:
                ref = self.init_state(0, device="cpu", dtype=dtype)
                cache[dtype] = (type(ref), tuple(t.dtype for t in ref.tensors()))
            except Exception:  # noqa: BLE001 - a mixer that cannot build an empty state is only not checked
                cache[dtype] = None
        return cache[dtype]

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}"


def is_norm(module: nn.Module) -> bool:
    """A normalisation layer: torch's LayerNorm / GroupNorm / RMSNorm / BatchNorm*, or any module
    whose class name contains "Norm" (archs' RMSNorm, GatedRMSNorm, HeadNorm, ...)."""
    return isinstance(module, (nn.LayerNorm, nn.GroupNorm, nn.RMSNorm, nn.modules.batchnorm._NormBase)) or "Norm" in type(module).__name__


def is_bias(param_name: str) -> bool:
    """A bias by its name: ``bias``, ``conv_bias``, ``dt_bias``, nn.LSTM's ``bias_ih_l0`` ..."""
    return param_name.endswith("bias") or param_name.startswith("bias_")


def no_weight_decay_names(module: nn.Module, prefix: str = "") -> set[str]:
    """Names (``prefix`` + as in ``module.named_parameters()``) of the parameters not to decay in
    ``module``'s tree: marked ``_no_weight_decay``, in a norm layer (``is_norm``) or a bias
    (``is_bias``); a child ``Mixer`` answers for its own subtree through its ``no_weight_decay()``."""
    names = set()
    norm = is_norm(module)
    for n, p in module.named_parameters(recurse=False):
        if norm or is_bias(n) or getattr(p, "_no_weight_decay", False):
            names.add(prefix + n)
    for child_name, child in module.named_children():
        child_prefix = f"{prefix}{child_name}."
        if isinstance(child, Mixer):
            names |= {child_prefix + n for n in child.no_weight_decay()}
        else:
            names |= no_weight_decay_names(child, child_prefix)
    return names


def _shape(x) -> str:
    return str(tuple(x.shape)) if isinstance(x, torch.Tensor) else type(x).__name__


def check_divisible(owner: str, what: str, value: int, by_what: str, by: int) -> None:
    """Raise a clear error when ``value`` (e.g. d_model) is not divisible by ``by`` (e.g. n_heads)."""
    if by <= 0 or value % by != 0:
        raise ValueError(f"{owner}: {what}={value} must be divisible by {by_what}={by}")
