"""``python -m sriblob``: the same as the ``sriblob`` command."""

from __future__ import annotations

from ._cli import main

if __name__ == "__main__":
    raise SystemExit(main())
