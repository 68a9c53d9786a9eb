"""Linear recurrence ``h_t = a_t * h_{t-1} + b_t`` along dim 1 (real or complex).

``linear_scan_ref`` is the sequential definition; ``linear_scan`` the fast pure-PyTorch form
(chunked, recursive over chunk ends, custom autograd whose backward is a reversed scan).
"""
import sys
import types

from .ref import linear_scan_ref
from .scan import linear_scan

__all__ = ["linear_scan", "linear_scan_ref"]


class _CallableModule(types.ModuleType):
    """This package shares its name with the op it exports, and the import system binds
    ``archs.ops.linear_scan`` to this package once it is imported, which shadows the lazy export
    in ``archs.ops``. Calling the package therefore calls the op, so
    ``from archs.ops import linear_scan; linear_scan(a, b)`` works either way."""

    def __call__(self, a, b, h0=None):
        return linear_scan(a, b, h0)


sys.modules[__name__].__class__ = _CallableModule
