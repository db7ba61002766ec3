# -*- coding: utf-8 -*-
# Copyright: (c) 2026, enva.pve developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""``python3 -m enva_oom_watch``: the parsers are shipped in the directory that holds this package."""

import os
import sys

_HOME = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _HOME not in sys.path:
    sys.path.insert(0, _HOME)

from enva_oom_watch.agent import main  # noqa: E402  (run as python3 -m enva_oom_watch)

if __name__ == "__main__":
    sys.exit(main())
