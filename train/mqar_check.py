"""Moved: the MQAR recall check is now a compare preset (one comparison pipeline, with an lr grid,
seeds and confidence intervals). ``python -m train.mqar_check`` only says where it went."""
from __future__ import annotations

import sys

MESSAGE = """train.mqar_check has moved into eval compare:
    python -m eval compare compare=recall                       # MQAR recall vs state size, d_model 32/64/128
    python -m eval compare compare=recall compare.only=[attention,deltanet] 'compare.widths=[64]'
    python -m eval compare compare=recall compare.name=recall_conv 'compare.train.extra_overrides=[arch.short_conv=4]'"""


def main(argv=None) -> int:
    print(MESSAGE, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
