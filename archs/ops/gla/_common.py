"""Moved to ``archs/ops/_common.py`` (shared by every op family); re-exported so older imports keep working."""
from .._common import *  # noqa: F401,F403
from .._common import call_fla, check_chunk_size, check_g, check_qkv, compute_dtype, default_scale, n_chunks, pad_time, retention_log_decay  # noqa: F401
