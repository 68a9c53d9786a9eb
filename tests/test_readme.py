"""The README's Python example runs as written (so it cannot drift from the API)."""
from __future__ import annotations

import re
from pathlib import Path

import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_block_runs():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no ```python block"
    torch.manual_seed(0)
    for code in blocks:
        exec(compile(code, str(README), "exec"), {"__name__": "readme"})
