"""The lab's tests import its package (tests/lab/enva_lab) as ``enva_lab``, the way labctl runs it."""

from __future__ import annotations

import sys
from pathlib import Path

LAB = Path(__file__).resolve().parents[2] / "lab"
if str(LAB) not in sys.path:
    sys.path.insert(0, str(LAB))
