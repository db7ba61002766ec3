# -*- coding: utf-8 -*-
# Copyright: enva.pve contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""enva-dns-relay's launcher: ``python3 enva_dns_relay.py --help``.

The program is the package enva_relay/ next to this file (Python puts this
file's directory first on sys.path); the role copies both. Standard library
only, Python 3.9+, Linux. No shebang on purpose (a CT may have no `python`).
"""

import sys

from enva_relay.main import main

if __name__ == "__main__":
    sys.exit(main())
