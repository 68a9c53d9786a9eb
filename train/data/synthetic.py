"""Synthetic recall tasks, generated on the fly from a seed.

Every task maps ``generate(num_examples, seq_len, seed)`` to
``dict(inputs=(N, L) long, targets=(N, L) long)`` where ``targets[n, t]`` is the token the
model should predict after reading ``inputs[n, :t+1]``, and -100 where nothing is scored.
The same (num_examples, seq_len, seed) always gives the same tensors, so a training batch
is a pure function of (run seed, step) and a resumed run sees the same data.

Tasks:
    mqar            multi-query associative recall (Arora et al. 2023, "Zoology"): key-value
                    pairs, then queries of the keys at power-law-spaced gaps; keys and values
                    come from disjoint halves of the vocabulary.
    selective_copy  selective copying (Gu & Dao 2023, "Mamba"): data tokens scattered among
                    blanks must be reproduced, in order, after a separator.
    induction       induction heads (Olsson et al. 2022; H3): a trigger token followed by a
                    value somewhere in random text; the trigger again at the end must recall it.
    passkey         passkey retrieval (Mohtashami & Jaggi 2023): a digit key hidden in filler
                    must be recalled after a query marker.
"""
from __future__ import annotations

import torch

IGNORE = -100


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed) % (2**63 - 1))


def _check_n(task: str, num_examples: int) -> None:
    if not isinstance(num_examples, int) or num_examples < 1:
        raise ValueError(f"{task}: num_examples must be a positive int, got {num_examples!r}")


class SyntheticTask:
    """Base: ``vocab_size``, ``min_seq_len`` and ``generate``; subclasses fill in ``_generate``."""

    name = "?"
    synthetic = True
    min_seq_len = 1
    #: bumped whenever the same config would generate different data, so runs trained on the
    #: old data are not reused (it is part of the trainer's config hash)
    data_version = 1

    def __init__(self, vocab_size: int):
        if not isinstance(vocab_size, int) or vocab_size < 8:
            raise ValueError(f"{self.name}: vocab_size must be an int >= 8, got {vocab_size!r}")
        self.vocab_size = vocab_size

    def check_seq_len(self, seq_len: int) -> None:
        if not isinstance(seq_len, int) or seq_len < self.min_seq_len:
            raise ValueError(
                f"{self.name}: seq_len={seq_len!r} is too short; this task needs seq_len >= {self.min_seq_len}"
                f" ({self._why_min()})"
            )

    def _why_min(self) -> str:
        return "its fixed layout"

    def generate(self, num_examples: int, seq_len: int, seed: int) -> dict[str, torch.Tensor]:
        """``num_examples`` sequences of ``seq_len`` tokens: inputs (N, L), targets (N, L) with -100 where unscored."""
        _check_n(self.name, num_examples)
        self.check_seq_len(seq_len)
        inputs, targets = self._generate(num_examples, seq_len, _gen(seed))
        assert inputs.shape == targets.shape == (num_examples, seq_len)
        return {"inputs": inputs, "targets": targets}

    def _generate(self, n: int, L: int, g: torch.Generator):
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size})"


def _pick_sorted(n: int, space: int, k: int, weights: torch.Tensor | None, g: torch.Generator) -> torch.Tensor:
    """For each of n rows, k distinct sorted indices in [0, space) (uniform, or by ``weights``)."""
    w = torch.ones(n, space) if weights is None else weights.expand(n, space)
    return torch.multinomial(w, k, replacement=False, generator=g).sort(dim=1).values  # (n, k)


class MQAR(SyntheticTask):
    """Multi-query associative recall (Zoology).

    Layout of one sequence of length L (0 = pad):
        k1 v1 k2 v2 ... kn vn | ... k_a 0 ... k_b 0 ...
    the first 2n tokens bind keys (from [1, V/2)) to values (from [V/2, V)); each key is then
    queried once at a gap drawn from a power law p(g) ~ g^(alpha-1), and the target after the
    query is its value. Only those n positions are scored. As in Zoology, the answer is never
    an input: the token after a query is a pad (or filler). Writing the answers into the
    sequence would leak them: the last query could then be answered by elimination (the one
    value not yet given), which a 2-layer attention model learns first (98% on the last query,
    22% on the first, measured) and which inflates the accuracy of models that cannot recall.

    ``random_filler`` replaces the 0 pads after the key-value context by random tokens from
    [1, V) (Zoology's ``random_non_queries``). Off by default, as in Zoology's paper configs:
    with a small vocabulary the filler often repeats a key before its query (followed by a
    random token), which makes the recall ambiguous and learning several times slower.
    """

    name = "mqar"
    data_version = 2  # 2: the answer after a query is no longer an input

    def __init__(self, vocab_size: int = 256, num_kv_pairs: int = 8, power_a: float = 0.01, random_filler: bool = False):
        super().__init__(vocab_size)
        half = vocab_size // 2
        if not isinstance(num_kv_pairs, int) or not (1 <= num_kv_pairs < half):
            raise ValueError(f"mqar: num_kv_pairs must be in [1, {half - 1}] for vocab_size={vocab_size}, got {num_kv_pairs!r}")
        if not power_a > 0:
            raise ValueError(f"mqar: power_a must be > 0, got {power_a!r}")
        self.num_kv_pairs, self.power_a, self.random_filler = num_kv_pairs, float(power_a), random_filler
        self.min_seq_len = 4 * num_kv_pairs

    def _why_min(self) -> str:
        return f"2 x {self.num_kv_pairs} key-value tokens, then room for {self.num_kv_pairs} query-answer pairs"

    def _generate(self, n: int, L: int, g: torch.Generator):
        k, V = self.num_kv_pairs, self.vocab_size
        half = V // 2
        keys = torch.rand(n, half - 1, generator=g).argsort(dim=1)[:, :k] + 1  # (n, k) distinct in [1, half)
        values = torch.randint(half, V, (n, k), generator=g)  # (n, k)
        seq = torch.zeros(n, L + 1, dtype=torch.long)  # one extra: the last target
        seq[:, 0 : 2 * k : 2], seq[:, 1 : 2 * k : 2] = keys, values
        ctx = 2 * k
        space = (L + 1 - ctx) // 2  # query slots: (query, answer) pairs after the context
        gaps = torch.arange(1, space + 1, dtype=torch.float64)
        p = self.power_a * gaps ** (self.power_a - 1)
        slots = _pick_sorted(n, space, k, (p / p.sum()).float()[None], g)  # (n, k)
        order = torch.rand(n, k, generator=g).argsort(dim=1)  # which key is asked in each slot
        qpos = ctx + 2 * slots  # (n, k)
        rows = torch.arange(n)[:, None]
        seq[rows, qpos] = keys.gather(1, order)
        targets_full = torch.full_like(seq, IGNORE)
        targets_full[rows, qpos + 1] = values.gather(1, order)  # the answer is a target, never an input
        if self.random_filler:
            filler = torch.randint(1, V, seq.shape, generator=g)
            free = seq == 0  # pads after the context, answer slots included
            free[:, :ctx] = False
            seq = torch.where(free, filler, seq)
        return seq[:, :L].contiguous(), targets_full[:, 1:].contiguous()


class SelectiveCopy(SyntheticTask):
    """Selective copying (Mamba): ``num_tokens`` data tokens at random positions among blanks,
    a separator, then the data tokens in order; the model must produce each after the separator.

    Tokens: 0 blank, 1 separator, data from [2, V). Layout (L = seq_len):
        inputs : [context of L - n tokens (n data, rest blank)] [SEP] d1 ... d_{n-1}
        targets:                              ... -100          d1 d2 ... d_n
    """

    name = "selective_copy"
    BLANK, SEP = 0, 1

    def __init__(self, vocab_size: int = 32, num_tokens: int = 8):
        super().__init__(vocab_size)
        if not isinstance(num_tokens, int) or num_tokens < 1:
            raise ValueError(f"selective_copy: num_tokens must be a positive int, got {num_tokens!r}")
        self.num_tokens = num_tokens
        self.min_seq_len = 2 * num_tokens

    def _why_min(self) -> str:
        return f"a context holding {self.num_tokens} data tokens, then {self.num_tokens} copies"

    def _generate(self, n: int, L: int, g: torch.Generator):
        m = self.num_tokens
        ctx = L - m
        data = torch.randint(2, self.vocab_size, (n, m), generator=g)  # (n, m)
        pos = _pick_sorted(n, ctx, m, None, g)  # (n, m)
        seq = torch.full((n, L + 1), self.BLANK, dtype=torch.long)
        rows = torch.arange(n)[:, None]
        seq[rows, pos] = data
        seq[:, ctx] = self.SEP
        seq[:, ctx + 1 :] = data
        targets = torch.full_like(seq, IGNORE)
        targets[:, ctx + 1 :] = data
        return seq[:, :L].contiguous(), targets[:, 1:].contiguous()


class Induction(SyntheticTask):
    """Induction heads: random tokens from [1, V); the trigger token 0 appears once at a random
    position followed by a value token; the last input token is the trigger again and the
    target is that value. One scored position per sequence."""

    name = "induction"
    TRIGGER = 0
    min_seq_len = 4

    def __init__(self, vocab_size: int = 32):
        super().__init__(vocab_size)

    def _why_min(self) -> str:
        return "trigger, value, at least one token, final trigger"

    def _generate(self, n: int, L: int, g: torch.Generator):
        seq = torch.randint(1, self.vocab_size, (n, L), generator=g)
        pos = torch.randint(0, L - 2, (n,), generator=g)  # trigger at pos, value at pos+1 <= L-2
        rows = torch.arange(n)
        seq[rows, pos] = self.TRIGGER
        value = seq[rows, pos + 1]
        seq[:, -1] = self.TRIGGER
        targets = torch.full_like(seq, IGNORE)
        targets[:, -1] = value
        return seq, targets


class Passkey(SyntheticTask):
    """Passkey retrieval: filler tokens with ``KEY d1..dk`` hidden at a random depth; the sequence
    ends with ``QUERY d1..d_{k-1}`` and the model must produce d1..dk after QUERY.

    Tokens: 0 KEY marker, 1 QUERY marker, 2..11 the digits, 12.. filler.
    """

    name = "passkey"
    KEY, QUERY, DIGIT0, FILLER0 = 0, 1, 2, 12

    def __init__(self, vocab_size: int = 32, num_digits: int = 5):
        super().__init__(vocab_size)
        if vocab_size <= self.FILLER0:
            raise ValueError(f"passkey: vocab_size must be > {self.FILLER0} (markers + 10 digits + filler), got {vocab_size}")
        if not isinstance(num_digits, int) or num_digits < 1:
            raise ValueError(f"passkey: num_digits must be a positive int, got {num_digits!r}")
        self.num_digits = num_digits
        self.min_seq_len = 2 * num_digits + 2

    def _why_min(self) -> str:
        return f"KEY + {self.num_digits} digits, then QUERY + the digits"

    def _generate(self, n: int, L: int, g: torch.Generator):
        k = self.num_digits
        seq = torch.randint(self.FILLER0, self.vocab_size, (n, L + 1), generator=g)
        digits = torch.randint(0, 10, (n, k), generator=g) + self.DIGIT0  # (n, k)
        q = L - k  # QUERY position; the answer occupies q+1 .. q+k (the last is target-only)
        pos = torch.randint(0, q - k, (n,), generator=g)  # KEY position; digits at pos+1 .. pos+k < q
        rows = torch.arange(n)[:, None]
        seq[rows[:, 0], pos] = self.KEY
        seq[rows, pos[:, None] + 1 + torch.arange(k)] = digits
        seq[:, q] = self.QUERY
        seq[:, q + 1 :] = digits
        targets = torch.full_like(seq, IGNORE)
        targets[:, q + 1 :] = digits
        return seq[:, :L].contiguous(), targets[:, 1:].contiguous()


SYNTHETIC_TASKS = {cls.name: cls for cls in (MQAR, SelectiveCopy, Induction, Passkey)}
