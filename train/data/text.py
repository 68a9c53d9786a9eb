"""Text: a byte-level corpus loaded through ``datasets``, packed into fixed-length windows.

Sources (``source`` in configs/task/text.yaml):
    stdlib        the Python standard library's own ``.py`` files (present on every machine):
                  sorted by relative path, ``max_files`` of them taken at even strides, split
                  into train/val by a hash of the relative path (fixed across machines).
    files         local files: ``data_files`` (text, one document per file, read as raw bytes:
                  any encoding works) or ``*.json``/``*.jsonl`` with a ``text_field``; validation is
                  ``val_files``, else a split by a hash of the file name when that leaves files on
                  both sides, else (e.g. one file) a byte split: the files are joined into one
                  stream and its last ``val_percent`` % of bytes (at least 2) are held out; the
                  training stream is everything before them, so no byte is in both.
    <hub name>    any ``datasets`` hub name (needs a network): ``load_dataset(name, config)``.

Tokenizer: bytes (vocab 256): text files are read as bytes, never decoded. Documents are joined
with a newline into one stream per split;
training windows start at offsets drawn from (seed, step), validation windows tile the val
stream from the start.

Stateful (``stateful=True``, truncated BPTT): each split's stream is cut into ``batch_size``
contiguous segments, one per batch row, and step ``i`` of an epoch reads the ``i``-th window of
``seq_len`` tokens of every segment, so a row's windows are consecutive text and the trainer carries
the model's state (detached) from one step to the next. Batches then also hold ``reset`` (B,) bool,
True at the first window of an epoch (the state starts empty there). Training epochs shift every
segment by an offset in [0, seq_len) drawn from (seed, epoch), so epochs see differently cut
windows; validation starts at offset 0 and resets when it wraps around.
"""
from __future__ import annotations

import functools
import hashlib
import os
import sysconfig
from pathlib import Path
from typing import Sequence

import torch

IGNORE = -100


@functools.lru_cache(maxsize=8)
def stdlib_files(max_files: int | None = 400) -> list[tuple[str, Path]]:
    """(relative path, path) of the stdlib's .py sources: sorted, evenly strided to ``max_files``."""
    if max_files is not None and (isinstance(max_files, bool) or not isinstance(max_files, int) or max_files < 1):
        raise ValueError(f"text: max_files must be a positive int or None (all files), got {max_files!r}")
    root = Path(sysconfig.get_paths()["stdlib"])
    skip = {"site-packages", "dist-packages", "test", "tests", "idlelib", "lib2to3", "__pycache__"}
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in skip]  # prune: never walk into them
        rel = Path(dirpath).relative_to(root)
        files += [((rel / f).as_posix(), Path(dirpath) / f) for f in filenames if f.endswith(".py")]
    files.sort()
    if not files:
        raise FileNotFoundError(f"text: no .py files found under the standard library at {root}")
    if max_files is not None and len(files) > max_files:
        stride = len(files) / max_files
        files = [files[int(i * stride)] for i in range(max_files)]
    return files


def is_val(key: str, val_percent: float) -> bool:
    """Fixed split: a document is held out when md5(key) falls in the lowest ``val_percent``."""
    h = int.from_bytes(hashlib.md5(key.encode()).digest()[:8], "big")
    return (h % 10_000) < val_percent * 100


def encode_bytes(docs: Sequence[str | bytes]) -> torch.Tensor:
    """Documents -> one 1-D uint8 stream of their bytes (str: UTF-8), each followed by a newline."""
    data = b"".join((d if isinstance(d, bytes) else d.encode("utf-8", errors="replace")) + b"\n" for d in docs)
    return torch.frombuffer(bytearray(data), dtype=torch.uint8).clone()


def byte_split(stream: torch.Tensor, val_percent: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, val) of one byte stream: val = the last ``val_percent`` % of the bytes (at least 2),
    train = everything before. Disjoint by construction; train + val == stream."""
    n = stream.numel()
    n_val = max(2, int(n * val_percent / 100))
    if n - n_val < 2:
        raise ValueError(f"text: {n} bytes are too few to hold out {val_percent}% for validation")
    return stream[: n - n_val], stream[n - n_val:]


class TextTask:
    """Byte-level language modelling on a corpus; ``vocab_size`` = 256.

    ``train_batch(batch_size, seq_len, seed)`` draws packed windows at random offsets;
    ``val_tokens()`` is the held-out byte stream (1-D long).
    """

    name = "text"
    synthetic = False
    vocab_size = 256
    data_version = 2  # see SyntheticTask.data_version; 2: text files read as bytes, one-file byte split

    def __init__(self, source: str = "stdlib", max_files: int | None = 400, val_percent: float = 10.0,
                 data_files: Sequence[str] | str | None = None, val_files: Sequence[str] | str | None = None,
                 text_field: str = "text", hub_config: str | None = None, cache_dir: str | None = None,
                 stateful: bool = False, stateful_context: int | None = None):
        if isinstance(val_percent, bool) or not isinstance(val_percent, (int, float)) or not 0 < val_percent < 100:
            raise ValueError(f"text: val_percent must be in (0, 100), got {val_percent!r}")
        if max_files is not None and (isinstance(max_files, bool) or not isinstance(max_files, int) or max_files < 1):
            raise ValueError(f"text: max_files must be a positive int or null (all files), got {max_files!r}")
        if not isinstance(stateful, bool):
            raise ValueError(f"text: stateful must be true or false, got {stateful!r}")
        if stateful_context is not None and (not isinstance(stateful_context, int) or isinstance(stateful_context, bool) or stateful_context < 1):
            raise ValueError(f"text: stateful_context must be a positive int (tokens a KV cache carries) or null, got {stateful_context!r}")
        self.stateful, self.stateful_context = stateful, stateful_context
        self.source, self.max_files, self.val_percent = source, max_files, val_percent
        self.data_files, self.val_files, self.text_field = data_files, val_files, text_field
        self.hub_config, self.cache_dir = hub_config, cache_dir
        if source == "files" and not data_files:
            raise ValueError("text: source='files' needs data_files (a path or list of paths)")
        self._splits: dict[str, torch.Tensor] | None = None

    # ---- loading -------------------------------------------------------------------------
    def _load(self) -> dict[str, torch.Tensor]:
        if self._splits is None:
            if self.source == "stdlib":
                keyed = stdlib_files(self.max_files)  # split by the path inside the stdlib
                splits = self._load_local([str(p) for _, p in keyed], None, keys=[k for k, _ in keyed])
            elif self.source == "files":
                splits = self._load_local(_as_list(self.data_files), _as_list(self.val_files) or None)
            else:
                train, val = self._load_hub()
                splits = {"train": encode_bytes(train), "val": encode_bytes(val)}
            self._splits = splits
            for split, toks in self._splits.items():
                if toks.numel() < 2:
                    raise ValueError(f"text: the {split} split of source {self.source!r} is empty")
        return self._splits

    def _read_docs(self, files: list[str]) -> list[str | bytes]:
        """Text files: their raw bytes (one document each). JSON / JSONL: the ``text_field`` strings."""
        if not files[0].endswith((".json", ".jsonl")):
            return [Path(f).read_bytes() for f in files]
        import datasets

        ds = datasets.load_dataset("json", data_files=files, split="train", cache_dir=self.cache_dir)
        if self.text_field not in ds.column_names:
            raise ValueError(f"text: field {self.text_field!r} not in {files[0]!r}; columns are {ds.column_names}")
        return list(ds[self.text_field])

    def _load_local(self, files: list[str], val_files: list[str] | None, keys: list[str] | None = None) -> dict[str, torch.Tensor]:
        for f in files + (val_files or []):
            if not Path(f).is_file():
                raise FileNotFoundError(f"text: data file {f!r} does not exist")
        if val_files:
            return {"train": encode_bytes(self._read_docs(files)), "val": encode_bytes(self._read_docs(val_files))}
        keys = keys or [Path(f).name for f in files]
        train_f = [f for f, k in zip(files, keys) if not is_val(k, self.val_percent)]
        val_f = [f for f, k in zip(files, keys) if is_val(k, self.val_percent)]
        if not val_f or not train_f:  # too few files to split by file: hold out the stream's last bytes
            train, val = byte_split(encode_bytes(self._read_docs(files)), self.val_percent)
            return {"train": train, "val": val}
        return {"train": encode_bytes(self._read_docs(train_f)), "val": encode_bytes(self._read_docs(val_f))}

    def _load_hub(self):  # pragma: no cover - needs a network
        import datasets

        ds = datasets.load_dataset(self.source, self.hub_config, cache_dir=self.cache_dir)
        val_name = next((s for s in ("validation", "valid", "test") if s in ds), None)
        train = list(ds["train"][self.text_field])
        if val_name is None:
            cut = int(len(train) * (1 - self.val_percent / 100))
            return train[:cut], train[cut:]
        return train, list(ds[val_name][self.text_field])

    # ---- access --------------------------------------------------------------------------
    def train_tokens(self) -> torch.Tensor:
        """The training byte stream, 1-D long."""
        return self._load()["train"].long()

    def val_tokens(self) -> torch.Tensor:
        """The held-out byte stream, 1-D long."""
        return self._load()["val"].long()

    def check_seq_len(self, seq_len: int) -> None:
        if not isinstance(seq_len, int) or seq_len < 1:
            raise ValueError(f"text: seq_len must be a positive int, got {seq_len!r}")

    def train_batch(self, batch_size: int, seq_len: int, seed: int) -> dict[str, torch.Tensor]:
        """``batch_size`` windows of the train stream at offsets drawn from ``seed``: inputs, targets (B, L)."""
        toks = self._load()["train"]
        if toks.numel() < seq_len + 1:
            raise ValueError(f"text: seq_len={seq_len} is longer than the training stream ({toks.numel() - 1} tokens)")
        g = torch.Generator().manual_seed(int(seed) % (2**63 - 1))
        starts = torch.randint(0, toks.numel() - seq_len, (batch_size,), generator=g)
        win = toks[starts[:, None] + torch.arange(seq_len + 1)].long()  # (B, L + 1)
        return {"inputs": win[:, :-1].contiguous(), "targets": win[:, 1:].contiguous()}

    def val_batch(self, batch_size: int, seq_len: int, index: int) -> dict[str, torch.Tensor]:
        """Validation batch ``index``: consecutive windows tiling the val stream (wrapping around)."""
        toks = self._load()["val"]
        n_win = max(1, (toks.numel() - 1) // seq_len)
        if toks.numel() < seq_len + 1:
            raise ValueError(f"text: seq_len={seq_len} is longer than the validation stream ({toks.numel() - 1} tokens)")
        idx = (index * batch_size + torch.arange(batch_size)) % n_win
        win = toks[idx[:, None] * seq_len + torch.arange(seq_len + 1)].long()  # (B, L + 1)
        return {"inputs": win[:, :-1].contiguous(), "targets": win[:, 1:].contiguous()}

    # ---- stateful: consecutive windows per batch row ------------------------------------------
    @staticmethod
    def _segments(toks: torch.Tensor, batch_size: int, seq_len: int, split: str, spare: int) -> tuple[int, int]:
        """(segment length S, windows per segment W) of ``toks`` cut into ``batch_size`` rows,
        keeping ``spare`` tokens per row free for an offset."""
        S = toks.numel() // batch_size
        W = (S - 1 - spare) // seq_len
        if W < 1:
            raise ValueError(f"text: stateful batches cut the {split} stream ({toks.numel()} tokens) into batch_size={batch_size} "
                             f"rows of {S} tokens, fewer than the {seq_len + 1 + spare} one window of seq_len={seq_len} needs; "
                             "use a smaller batch_size or seq_len, or more text")
        return S, W

    @staticmethod
    def _stream_batch(toks: torch.Tensor, batch_size: int, seq_len: int, S: int, offset: int, i: int) -> dict[str, torch.Tensor]:
        starts = torch.arange(batch_size) * S + offset + i * seq_len  # (B,) window starts, one segment per row
        win = toks[starts[:, None] + torch.arange(seq_len + 1)].long()  # (B, L + 1)
        return {"inputs": win[:, :-1].contiguous(), "targets": win[:, 1:].contiguous(),
                "reset": torch.full((batch_size,), i == 0, dtype=torch.bool)}

    def stream_train_batch(self, batch_size: int, seq_len: int, seed: int, step: int) -> dict[str, torch.Tensor]:
        """Training batch of ``step`` (stateful): window ``i = step mod W`` of every row's segment;
        inputs, targets (B, L) and reset (B,) (True when a new epoch starts)."""
        toks = self._load()["train"]
        S, W = self._segments(toks, batch_size, seq_len, "training", spare=seq_len - 1)
        epoch, i = divmod(int(step), W)
        g = torch.Generator().manual_seed(_stream_seed(seed, epoch))
        offset = int(torch.randint(0, seq_len, (1,), generator=g))
        return self._stream_batch(toks, batch_size, seq_len, S, offset, i)

    def stream_val_batch(self, batch_size: int, seq_len: int, index: int) -> dict[str, torch.Tensor]:
        """Validation batch ``index`` (stateful): window ``index mod W`` of every row's segment of
        the val stream, from offset 0; reset at index 0 and whenever it wraps around."""
        toks = self._load()["val"]
        S, W = self._segments(toks, batch_size, seq_len, "validation", spare=0)
        return self._stream_batch(toks, batch_size, seq_len, S, 0, int(index) % W)

    def __repr__(self) -> str:
        return f"TextTask(source={self.source!r})"


def _stream_seed(seed: int, epoch: int) -> int:
    """A 63-bit seed for the window offset of an epoch of stateful training."""
    return int.from_bytes(hashlib.sha256(repr((int(seed), "stream", int(epoch))).encode()).digest()[:8], "big") >> 1


def _as_list(x) -> list[str]:
    if x is None:
        return []
    return [str(x)] if isinstance(x, (str, Path)) else [str(v) for v in x]
