"""Moved to ``archs/ops/_common.py`` (shared by every op family); re-exported so older imports keep working."""
from .._common import *  # noqa: F401,F403
