"""Linear recurrence ``h_t = a_t * h_{t-1} + b_t`` along dim 1 (real or complex): the op of
HGRN, LRU and minGRU.

``linear_scan_ref`` is the sequential definition; ``linear_scan`` the fast form: on CPU the
compiled kernel (``cpu.py``, built on first use, see ``archs/ops/_compile.py``), otherwise the
pure-PyTorch form (chunked, recursive over chunk ends, custom autograd whose backward is a
reversed scan).
"""
from .ref import linear_scan_ref
from .scan import linear_scan

__all__ = ["linear_scan", "linear_scan_ref"]
