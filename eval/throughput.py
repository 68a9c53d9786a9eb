"""Long-context speed and memory of one model: prefill tokens/s, decode latency, state memory.

For each context length L (e.g. 512, 2k, 8k):

* prefill: ``model.prefill(tokens (B, L))`` from an empty state, timed with
  ``torch.utils.benchmark.Timer.blocked_autorange`` (blocks of calls until ``min_run_time``
  seconds are spent, at least ``min_blocks``) -> median and IQR. Untimed before it at this
  context: the prefill that measures memory, ``warmup`` more calls, and ``blocked_autorange``'s
  own calibration call;
* decode: from that first prefill's state, max(2, ``warmup``) untimed steps, then ``repeats``
  blocks of ``decode_steps // repeats`` ``model.step`` calls each, timed per block -> median and
  IQR of the per-token time. Not ``blocked_autorange``: each step advances the state (and a KV cache has a
  fixed capacity), so the number of calls must be fixed before timing;
* spread = IQR / median of each; above ``max_spread`` (20%) the number is flagged;
* state: analytic ``model.state_size(L)`` numbers per sequence (x bytes per number), the bytes
  the state tensors really hold (``MixerState.nbytes_per_sequence``), and a measured peak:
  CUDA peak allocated memory on a GPU; on a CPU the resident-set growth (``psutil``) over the
  first prefill at this context and the process's peak RSS so far.

Fresh processes (``processes: N``, ``eval/isolate.py``): a process's speed depends on what it
ran before (the allocator's history, ``eval/malloc.py``), so ``eval throughput`` measures each
model in N fresh processes, interleaved in rounds, and pools their timed samples: the median of
all of them, and an IQR that covers the variation within and between processes. ``processes: 0``
measures in the calling process (``measure_model`` itself always does).

Threads: ``thread_policy(threads)`` is the one rule for ``eval throughput`` and ``eval compare``
(``threads: 1`` by default in both: tiny models gain nothing from more, and one thread keeps
timings steady on a shared machine).

A context is skipped (a row with ``status = "skipped: <reason>"``, never a crash) when its
estimated memory exceeds ``mem_limit_gb``, when the time extrapolated from the previous
context exceeds ``max_seconds``, or when it runs out of memory.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import platform
import statistics
import time
from typing import Callable, Sequence

import torch

from .bench.common import sync

_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
           "float16": torch.float16, "fp16": torch.float16, "float64": torch.float64}


@dataclasses.dataclass
class ThroughputSettings:
    contexts: Sequence[int] = (1024, 4096)
    batch_size: int = 1
    decode_steps: int = 32   # timed step() calls, in ``repeats`` blocks
    warmup: int = 1          # untimed calls at each context before timing
    repeats: int = 8         # decode: timed blocks of steps (median, IQR)
    min_run_time: float = 0.2  # prefill: seconds of timed blocks (torch.utils.benchmark)
    min_blocks: int = 5      # prefill: at least this many timed blocks (a slow call fills min_run_time alone)
    max_spread: float = 0.2  # IQR / median above this is flagged
    max_seconds: float = 30.0  # cap on one measurement (extrapolated before it is started)
    mem_limit_gb: float = 8.0  # skip contexts whose estimated memory is above this
    device: str = "auto"
    dtype: str = "float32"
    threads: int | None = None  # torch CPU threads while measuring (None: leave torch's setting)
    processes: int = 0       # fresh processes per model, samples pooled (eval/isolate.py); 0: this process

    def __post_init__(self):
        self.contexts = [int(c) for c in self.contexts]
        if not self.contexts or any(c < 1 for c in self.contexts):
            raise ValueError(f"throughput: contexts must be positive ints, got {list(self.contexts)}")
        self.repeats = min(int(self.repeats), int(self.decode_steps))
        if int(self.processes) < 0:
            raise ValueError(f"throughput: processes must be >= 0 (0: measure in this process), got {self.processes}")
        self.processes = int(self.processes)
        for what in ("batch_size", "decode_steps", "repeats", "min_blocks"):
            if int(getattr(self, what)) < 1:
                raise ValueError(f"throughput: {what} must be >= 1, got {getattr(self, what)}")
        if self.dtype not in _DTYPES:
            raise ValueError(f"throughput: unknown dtype {self.dtype!r}; expected one of {sorted(_DTYPES)}")

    @classmethod
    def from_cfg(cls, cfg) -> "ThroughputSettings":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in dict(cfg).items() if k in names})

    def torch_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)

    def torch_dtype(self) -> torch.dtype:
        return _DTYPES[self.dtype]


@contextlib.contextmanager
def thread_policy(threads: int | None):
    """Run the block with ``threads`` torch CPU threads (None: leave torch's setting); restore after."""
    old = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _rss_bytes() -> int:
    """Current resident set size of this process (psutil)."""
    import psutil

    return psutil.Process().memory_info().rss


def _peak_rss_bytes() -> int | None:
    """The process's peak resident set size so far (``getrusage``; None where it is not available)."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if platform.system() == "Darwin" else int(peak) * 1024  # macOS: bytes; Linux: KiB


def median_iqr(xs: Sequence[float]) -> tuple[float, float]:
    """(median, interquartile range) of ``xs`` (inclusive quartiles; IQR 0 for one value)."""
    if len(xs) < 2:
        return xs[0], 0.0
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return statistics.median(xs), q[2] - q[0]


def _state_nbytes(state: list) -> int:
    return sum(s.nbytes_per_sequence() for s in state)


def estimate_bytes(model, batch: int, context: int, elem: int) -> float:
    """Rough peak of a prefill: state + a few activations (B, L, D) per layer + logits (B, L, V)."""
    acts = batch * context * (12 * model.d_model * 2 + model.vocab_size) * elem  # two live layers
    return model.state_size(context) * batch * elem + acts


def _time(fn: Callable[[], object], warmup: int, min_run_time: float, min_samples: int = 5) -> list[float]:
    """Seconds per call of ``fn()``, one sample per timed block: ``warmup`` untimed calls, then
    ``blocked_autorange`` (blocks of calls until ``min_run_time`` s); topped up to ``min_samples``
    blocks so that a slow call (one block fills ``min_run_time``) still gets a spread."""
    from torch.utils import benchmark

    for _ in range(warmup):
        fn()
    sync()
    timer = benchmark.Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    m = timer.blocked_autorange(min_run_time=min_run_time)
    times = list(m.times)  # seconds per call, one per block
    while len(times) < min_samples:
        times.append(timer.timeit(number=m.number_per_run).median)
    return times


def measure_model(model, settings: ThroughputSettings, arch: str = "?", progress: Callable[[str], None] | None = None) -> list[dict]:
    """Rows (one per context) of prefill / decode speed and state memory for ``model``.

    ``model`` is a ``LanguageModel`` (weights do not matter for speed). Every row has
    ``arch, context, batch, status`` and, when ``status == "ok"``, the measured numbers.
    """
    dev, dtype = settings.torch_device(), settings.torch_dtype()
    model = model.to(device=dev, dtype=dtype).eval()
    B, V = settings.batch_size, model.vocab_size
    elem = torch.empty((), dtype=dtype).element_size()
    limit = settings.mem_limit_gb * 2**30
    gen = torch.Generator().manual_seed(0)
    with thread_policy(settings.threads):
        return _measure_all(model, settings, arch, progress, dev, dtype, B, V, elem, limit, gen)


def _measure_all(model, settings, arch, progress, dev, dtype, B, V, elem, limit, gen) -> list[dict]:
    rows: list[dict] = []
    prev: tuple[int, float] | None = None  # (context, seconds of one prefill + decode)
    exponent = 1.0

    with torch.inference_mode():
        # warm kernels / allocator / lazy init once, at the first context (one prefill + a few steps)
        warm = min(settings.contexts[0], 4096)
        _, st = model.prefill(torch.randint(0, V, (B, warm), generator=gen).to(dev), model.init_state(B, max_seq_len=warm + 4))
        for _ in range(2):
            model.step(torch.zeros(B, dtype=torch.long, device=dev), st)
        del st

        for L in settings.contexts:
            row = {"arch": arch, "context": L, "batch": B, "dtype": settings.dtype, "device": dev.type, "threads": torch.get_num_threads(),
                   "state_numel": model.state_size(L), "state_bytes": model.state_size(L) * elem}
            rows.append(row)
            if progress:
                progress(f"{arch} @ {L}")
            est = estimate_bytes(model, B, L, elem)
            if est > limit:
                row["status"] = f"skipped: estimated memory {est / 2**30:.1f} GiB > mem_limit_gb={settings.mem_limit_gb}"
                continue
            if prev is not None:
                guess = prev[1] * (L / prev[0]) ** exponent * (settings.warmup + 2 + settings.min_blocks)  # untimed + timed calls
                if guess > settings.max_seconds:
                    row["status"] = f"skipped: estimated {guess:.0f} s > max_seconds={settings.max_seconds:g}"
                    continue
            try:
                row.update(_measure_context(model, settings, L, gen, dev))
            except torch.OutOfMemoryError as e:  # noqa: PERF203
                row["status"] = f"skipped: out of memory ({str(e).splitlines()[0][:80]})"
                if dev.type == "cuda":
                    torch.cuda.empty_cache()
                continue
            row["status"] = "ok"
            seconds = row["prefill_ms"] / 1e3 + row["decode_ms_per_token"] / 1e3 * settings.decode_steps
            if prev is not None and seconds > 0 and prev[1] > 0 and L > prev[0]:
                # observed growth rate, kept within linear .. quadratic
                exponent = min(2.0, max(1.0, math.log(seconds / prev[1]) / math.log(L / prev[0])))
            prev = (L, seconds)
    return rows


def _measure_context(model, s: ThroughputSettings, L: int, gen: torch.Generator, dev: torch.device) -> dict:
    B, V = s.batch_size, model.vocab_size
    tokens = torch.randint(0, V, (B, L), generator=gen).to(dev)  # (B, L)
    warm_steps = max(2, s.warmup)  # untimed decode steps before timing
    cap = L + warm_steps + s.decode_steps + 1

    # memory: the first prefill at this context (CUDA peak allocated; CPU resident-set growth)
    if dev.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)
        base = torch.cuda.memory_allocated(dev)
    rss0 = _rss_bytes()
    _, state = model.prefill(tokens, model.init_state(B, max_seq_len=cap))
    if dev.type == "cuda":
        peak = torch.cuda.max_memory_allocated(dev) - base
        held = torch.cuda.memory_allocated(dev) - base
    else:
        peak, held = None, max(0, _rss_bytes() - rss0)
    measured_state = _state_nbytes(state)

    # prefill from an empty state
    prefill = _time(lambda: model.prefill(tokens, model.init_state(B, max_seq_len=cap)), s.warmup, s.min_run_time, s.min_blocks)

    # decode from the first prefill's state: fixed blocks of steps (each step advances the state)
    token = torch.randint(0, V, (B,), generator=gen).to(dev)  # (B,)
    for _ in range(warm_steps):
        model.step(token, state)
    sync()
    decode = []  # seconds per step of each timed block
    for n in [len(b) for b in torch.arange(s.decode_steps).tensor_split(s.repeats)]:
        t0 = time.perf_counter()
        for _ in range(n):
            model.step(token, state)
        sync()
        decode.append((time.perf_counter() - t0) / n)
    del state
    row = {
        "state_bytes_measured": measured_state,
        "peak_mem_bytes": peak,       # CUDA: peak allocated during the prefill (whole batch)
        "held_mem_bytes": held,       # CUDA: allocated after it; CPU: RSS growth over it (whole batch)
        "peak_rss_bytes": _peak_rss_bytes() if dev.type == "cpu" else None,  # CPU: the process's peak so far
    }
    row.update(timing_fields(B, L, prefill, decode))
    return row


def timing_fields(B: int, L: int, prefill: Sequence[float], decode: Sequence[float]) -> dict:
    """Row fields from timed samples: seconds per prefill call and per decode step (one per block)."""
    prefill_s, prefill_iqr = median_iqr(prefill)
    step_s, step_iqr = median_iqr(decode)
    return {
        "prefill_ms": 1e3 * prefill_s,
        "prefill_tok_s": B * L / prefill_s,
        "prefill_spread": prefill_iqr / prefill_s,   # IQR / median
        "decode_ms_per_token": 1e3 * step_s,
        "decode_tok_s": B / step_s,
        "decode_spread": step_iqr / step_s,
        "prefill_samples_s": [float(x) for x in prefill],  # seconds per call, one per timed block
        "decode_samples_s": [float(x) for x in decode],    # seconds per step, one per timed block
    }


def arch_source(name: str, model_cfg, vocab_size: int = 256, seed: int = 0) -> dict:
    """A model source (``eval/isolate.py``): ``configs/arch/<name>.yaml`` at size ``model_cfg``, seeded."""
    from omegaconf import OmegaConf

    cfg = OmegaConf.to_container(model_cfg, resolve=True) if OmegaConf.is_config(model_cfg) else dict(model_cfg)
    return {"label": name, "arch": name, "model": cfg, "vocab_size": int(vocab_size), "seed": int(seed)}


def run_throughput(arch_names: Sequence[str], model_cfg, settings: ThroughputSettings, vocab_size: int = 256,
                   seed: int = 0, progress: Callable[[str], None] | None = None) -> list[dict]:
    """Build each arch from ``configs/arch/<name>.yaml`` at size ``model_cfg`` and measure it
    (in ``settings.processes`` fresh processes per arch, or in this one when it is 0)."""
    from .isolate import measure_sources

    return measure_sources([arch_source(n, model_cfg, vocab_size, seed) for n in arch_names], settings, progress=progress)


def format_rows(rows: list[dict], max_spread: float = 0.2) -> list[dict]:
    """Compact rows for printing: speeds, spreads (IQR / median; FLAG above ``max_spread``) and sizes."""
    out = []
    for r in rows:
        ok = r.get("status") == "ok"
        out.append({
            "arch": r["arch"], "context": r["context"],
            "prefill tok/s": round(r["prefill_tok_s"]) if ok else "-",
            "decode ms/tok": round(r["decode_ms_per_token"], 3) if ok else "-",
            "decode tok/s": round(r["decode_tok_s"], 1) if ok else "-",
            "spread p/d": f"{r['prefill_spread']:.0%}/{r['decode_spread']:.0%}" + (" FLAG" if max(r["prefill_spread"], r["decode_spread"]) > max_spread else "") if ok else "-",
            "state MiB (analytic)": float(f"{r['state_bytes'] / 2**20:.3g}"),
            "state MiB (measured)": float(f"{r['state_bytes_measured'] / 2**20:.3g}") if ok else "-",
            "status": r.get("status", "?"),
        })
    return out
