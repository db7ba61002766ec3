"""``python3 -m enva_lab`` is ``labctl`` (tests/lab/labctl runs it with Debian's python3)."""

import sys

from enva_lab.cli import main

sys.exit(main())
