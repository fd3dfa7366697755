"""``python -m lenet_fast``: the ``lenet-fast`` command, for environments where the script
is not on PATH (a venv not activated, a notebook, ``sys.executable -m``)."""

from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
