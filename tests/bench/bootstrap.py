"""The one place a benchmark finds its imports: run as a script (``.venv/bin/python tests/bench/X.py``),
Python puts only tests/bench on sys.path; this adds tests/ (the shared helpers, ``from support.X import ...``),
tests/lab (``enva_lab``, the lab under test) and .cache/collections (``ansible_collections.enva.pve``), as
pytest.ini's ``pythonpath`` does for the tests.

Each benchmark imports it first: ``import bootstrap  # noqa: F401``. tests/unit/test_conventions.py fails on a
sys.path edit anywhere else under tests/.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PATHS = [ROOT / "tests", ROOT / "tests" / "lab", ROOT / ".cache" / "collections"]

for _path in reversed(PATHS):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))
