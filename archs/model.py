"""LanguageModel: embedding -> blocks (one mixer name, or a repeating hybrid pattern) -> norm -> tied head."""
from __future__ import annotations

import numbers
from typing import Sequence

import torch
from torch import nn

from .block import Block
from .layers import RMSNorm
from .registry import mixer_class


def layer_pattern(layers: str | Sequence[str], n_layers: int) -> list[str]:
    """Expand ``layers`` (a mixer name or a repeating pattern) to ``n_layers`` names."""
    pattern = [layers] if isinstance(layers, str) else list(layers)
    if not pattern:
        raise ValueError("LanguageModel: layers must be a mixer name or a non-empty list of names")
    for name in pattern:
        mixer_class(name)  # raises with the list of known names
    if len(pattern) > n_layers:
        raise ValueError(f"LanguageModel: layer pattern {pattern} is longer than n_layers={n_layers}; "
                         f"use at least {len(pattern)} layers so every mixer in it is used")
    return [pattern[i % len(pattern)] for i in range(n_layers)]


class LanguageModel(nn.Module):
    """A causal LM over any registered mixers.

    Args:
        vocab_size, d_model, n_layers: sizes.
        layers: a mixer name (``"mamba"``) or a repeating pattern for hybrids
            (``["mamba", "mamba", "mamba", "attention"]``), cycled to ``n_layers``.
        mixer_kwargs: per-mixer-name constructor kwargs, e.g. ``{"attention": {"n_heads": 4}}``.
        mlp: ``"swiglu"`` or ``None``.
        short_conv: kernel of a short causal conv in front of every mixer (``ShortConv``); None = none.
        tie_embeddings: share the embedding matrix with the output head.
        norm_eps: eps of every block's pre-norms and of the final norm.
        layer_kwargs: per-layer constructor kwargs (a list of ``n_layers`` dicts) merged over
            ``mixer_kwargs[name]``, e.g. a sliding window on some attention layers only (Qwen2).
        mlp_bias: biases on the MLP projections (RecurrentGemma).
        norm_unit_offset: every RMSNorm (blocks and final) scales by (1 + weight) (Gemma, RecurrentGemma).
        norm_bias: the blocks' pre-norms carry a bias (xLSTM with use_bias; its final norm has none).
        embed_scale: the embeddings are multiplied by this (Gemma: sqrt(d_model)); None = 1.
        logit_soft_cap: logits = cap * tanh(logits / cap) (Gemma 2, RecurrentGemma, xLSTM); None = none.

    ``self.config`` holds these arguments (JSON-able); ``save_pretrained(dir)`` /
    ``LanguageModel.from_pretrained(dir)`` write and read it with safetensors weights.
    """

    def __init__(
        self,
        vocab_size: int,
        d_model: int,
        n_layers: int,
        layers: str | Sequence[str] = "attention",
        mixer_kwargs: dict[str, dict] | None = None,
        mlp: str | None = "swiglu",
        mlp_hidden: int | None = None,
        tie_embeddings: bool = True,
        short_conv: int | None = None,
        norm_eps: float = 1e-6,
        layer_kwargs: Sequence[dict] | None = None,
        mlp_bias: bool = False,
        norm_unit_offset: bool = False,
        norm_bias: bool = False,
        embed_scale: float | None = None,
        logit_soft_cap: float | None = None,
    ):
        super().__init__()
        for what, v in (("vocab_size", vocab_size), ("d_model", d_model), ("n_layers", n_layers)):
            if not isinstance(v, int) or v <= 0:
                raise ValueError(f"LanguageModel: {what} must be a positive int, got {v!r}")
        for what, v in (("embed_scale", embed_scale), ("logit_soft_cap", logit_soft_cap)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0):
                raise ValueError(f"LanguageModel: {what} must be a positive number or None, got {v!r}")
        self.layer_names = layer_pattern(layers, n_layers)
        mixer_kwargs = dict(mixer_kwargs or {})
        unused = set(mixer_kwargs) - set(self.layer_names)
        if unused:
            raise ValueError(f"LanguageModel: mixer_kwargs for {sorted(unused)}, which are not in layers {self.layer_names}")
        layer_kwargs = [dict(kw or {}) for kw in (layer_kwargs or [{}] * n_layers)]
        if len(layer_kwargs) != n_layers:
            raise ValueError(f"LanguageModel: layer_kwargs must have one dict per layer ({n_layers}), got {len(layer_kwargs)}")
        self.config = dict(vocab_size=vocab_size, d_model=d_model, n_layers=n_layers,
                           layers=layers if isinstance(layers, str) else list(layers), mixer_kwargs=mixer_kwargs,
                           mlp=mlp, mlp_hidden=mlp_hidden, tie_embeddings=tie_embeddings, short_conv=short_conv,
                           norm_eps=norm_eps, layer_kwargs=layer_kwargs if any(layer_kwargs) else None)
        extras = dict(mlp_bias=mlp_bias, norm_unit_offset=norm_unit_offset, norm_bias=norm_bias,
                      embed_scale=embed_scale, logit_soft_cap=logit_soft_cap)
        self.config.update({k: v for k, v in extras.items() if v})  # only the knobs in use: old configs stay as they were
        self.embed_scale = None if embed_scale is None else float(embed_scale)
        self.logit_soft_cap = None if logit_soft_cap is None else float(logit_soft_cap)
        self.vocab_size, self.d_model, self.n_layers = vocab_size, d_model, n_layers
        self.tie_embeddings = tie_embeddings
        self.embed = nn.Embedding(vocab_size, d_model)
        self.blocks = nn.ModuleList(
            Block(d_model, name, mlp=mlp, mlp_hidden=mlp_hidden, short_conv=short_conv, prenorm_eps=norm_eps, mlp_bias=mlp_bias,
                  norm_unit_offset=norm_unit_offset, norm_bias=norm_bias, **{**mixer_kwargs.get(name, {}), **layer_kwargs[i]})
            for i, name in enumerate(self.layer_names)
        )
        self.norm = RMSNorm(d_model, eps=norm_eps, unit_offset=norm_unit_offset)
        self.head = nn.Linear(d_model, vocab_size, bias=False)
        if tie_embeddings:
            self.head.weight = self.embed.weight
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)

    # ---- sequence paths ------------------------------------------------------------------
    def _check_tokens(self, tokens: torch.Tensor, ndim: int, where: str) -> None:
        if not isinstance(tokens, torch.Tensor) or tokens.dim() != ndim or tokens.dtype not in (torch.long, torch.int32, torch.int64):
            want = "(B, L)" if ndim == 2 else "(B,)"
            got = tuple(tokens.shape) if isinstance(tokens, torch.Tensor) else type(tokens).__name__
            raise ValueError(f"LanguageModel.{where} expects integer tokens of shape {want}, got {got}")

    def _embed(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens)
        return x if self.embed_scale is None else x * self.embed_scale

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        """Final norm, head and the optional soft cap."""
        logits = self.head(self.norm(x))
        if self.logit_soft_cap is None:
            return logits
        return self.logit_soft_cap * torch.tanh(logits / self.logit_soft_cap)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (B, L) -> logits (B, L, V)."""
        self._check_tokens(tokens, 2, "forward")
        x = self._embed(tokens)
        for block in self.blocks:
            x = block(x)
        return self._logits(x)

    def init_state(self, batch_size: int, device=None, dtype=None, max_seq_len: int | None = None) -> list:
        device = device if device is not None else self.embed.weight.device
        dtype = dtype if dtype is not None else self.embed.weight.dtype
        return [b.init_state(batch_size, device=device, dtype=dtype, max_seq_len=max_seq_len) for b in self.blocks]

    def prefill(self, tokens: torch.Tensor, state: list | None = None):
        """tokens (B, L) -> (logits (B, L, V), state); continues from ``state``."""
        self._check_tokens(tokens, 2, "prefill")
        if state is None:
            state = self.init_state(tokens.shape[0])
        x = self._embed(tokens)
        for i, block in enumerate(self.blocks):
            x, state[i] = block.prefill(x, state[i])
        return self._logits(x), state

    def step(self, token: torch.Tensor, state: list):
        """token (B,) -> (logits (B, V), state)."""
        self._check_tokens(token, 1, "step")
        if state is None:
            raise ValueError("LanguageModel.step() needs a state: call init_state(batch_size) or prefill() first")
        x = self._embed(token)
        for i, block in enumerate(self.blocks):
            x, state[i] = block.step(x, state[i])
        return self._logits(x), state

    @torch.no_grad()
    def generate(self, prompt: torch.Tensor, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """Continue ``prompt`` (B, T) by ``max_new_tokens`` via prefill + step; returns (B, T + new).

        ``temperature=0`` is greedy; ``top_k`` keeps the k most likely tokens before sampling.
        """
        self._check_tokens(prompt, 2, "generate")
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, numbers.Integral) or max_new_tokens < 0:
            raise ValueError(f"LanguageModel.generate: max_new_tokens must be an int >= 0, got {max_new_tokens!r}")
        max_new_tokens = int(max_new_tokens)
        if prompt.shape[1] == 0:
            raise ValueError("LanguageModel.generate needs a prompt of at least one token, got length 0")
        if temperature < 0:
            raise ValueError(f"LanguageModel.generate: temperature must be >= 0, got {temperature}")
        if top_k is not None and not (1 <= top_k <= self.vocab_size):
            raise ValueError(f"LanguageModel.generate: top_k must be in [1, {self.vocab_size}], got {top_k}")
        state = self.init_state(prompt.shape[0], max_seq_len=prompt.shape[1] + max_new_tokens)
        logits, state = self.prefill(prompt, state)
        logits = logits[:, -1]  # (B, V)
        out = [prompt]
        for i in range(max_new_tokens):
            nxt = self._sample(logits, temperature, top_k, generator)  # (B,)
            out.append(nxt[:, None])
            if i + 1 < max_new_tokens:
                logits, state = self.step(nxt, state)
        return torch.cat(out, dim=1)

    @staticmethod
    def _sample(logits: torch.Tensor, temperature: float, top_k: int | None, generator) -> torch.Tensor:
        if temperature == 0:
            return logits.argmax(-1)
        logits = logits.float() / temperature
        if top_k is not None:
            kth = logits.topk(top_k, dim=-1).values[:, -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        return torch.multinomial(logits.softmax(-1), 1, generator=generator)[:, 0]

    # ---- save / load ---------------------------------------------------------------------
    def save_pretrained(self, directory) -> None:
        """Write ``config.json`` and ``model.safetensors`` into ``directory`` (atomically, file by file)."""
        from .pretrained import save_pretrained
        save_pretrained(self, directory)

    @classmethod
    def from_pretrained(cls, directory, device=None) -> "LanguageModel":
        """Rebuild a model written by ``save_pretrained`` (same config, same weights, same dtype)."""
        from .pretrained import from_pretrained
        return from_pretrained(directory, device=device)

    # ---- accounting ----------------------------------------------------------------------
    def num_params(self, non_embedding: bool = False) -> int:
        n = sum(p.numel() for p in self.parameters())
        return n - self.embed.weight.numel() if non_embedding else n

    def flops_per_token(self, seq_len: int) -> float:
        """Forward FLOPs per token: blocks + output head (embedding lookup is free)."""
        return sum(b.flops_per_token(seq_len) for b in self.blocks) + 2.0 * self.d_model * self.vocab_size

    def state_size(self, seq_len: int) -> int:
        """Numbers held per sequence across all layers after ``seq_len`` tokens."""
        return sum(b.state_size(seq_len) for b in self.blocks)


#: optional LanguageModel arguments an arch config may set (the references' knobs; all off by default)
MODEL_KNOBS = ("mlp_bias", "norm_unit_offset", "norm_bias", "embed_scale", "logit_soft_cap")


def build_language_model(arch: dict, model: dict, vocab_size: int) -> LanguageModel:
    """Build from config dicts: ``arch`` (configs/arch/*.yaml: layers, mlp, mixer_kwargs) and
    ``model`` (configs/model/*.yaml: d_model, n_layers, optional mlp_hidden, optional norm_eps);
    ``arch.short_conv`` (optional) puts a short conv in front of every mixer; the optional model knobs
    ``arch.{mlp_bias, norm_unit_offset, norm_bias, embed_scale, logit_soft_cap}`` are passed on when set.
    ``None`` kwargs mean "mixer default"."""
    kwargs = {
        name: {k: v for k, v in dict(kw or {}).items() if v is not None}
        for name, kw in dict(arch.get("mixer_kwargs") or {}).items()
    }
    layers = arch["layers"]
    layers = layers if isinstance(layers, str) else list(layers)
    return LanguageModel(
        vocab_size=vocab_size,
        d_model=int(model["d_model"]),
        n_layers=int(model["n_layers"]),
        layers=layers,
        mixer_kwargs=kwargs,
        mlp=arch.get("mlp", "swiglu"),
        mlp_hidden=int(model["mlp_hidden"]) if model.get("mlp_hidden") else None,
        short_conv=arch.get("short_conv"),
        norm_eps=float(model.get("norm_eps") or 1e-6),
        **{k: arch[k] for k in MODEL_KNOBS if arch.get(k) is not None},
    )
