"""``python3 -m enva_lab.api_lab``: the PVE API lab's command line."""

import sys

from enva_lab.api_lab.cli import main

sys.exit(main())
