# -*- coding: utf-8 -*-
# Copyright: enva.pve contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The command line: parse, load the configuration, run the relay; the exit status."""

import logging
import sys

from .config import ConfigError, build_parser, load_settings
from .relay import Relay
from .systemd import setup_logging

LOG = logging.getLogger("enva-dns-relay")


def main(argv=None):
    """Command-line entry point; returns the exit status."""
    args = build_parser().parse_args(argv)
    setup_logging("info")
    try:
        settings = load_settings(args)
    except ConfigError as exc:
        sys.stderr.write("enva-dns-relay: %s\n" % exc)
        return 2
    if args.check_config:
        sys.stdout.write(settings.to_ini())
        return 0
    try:
        relay = Relay(settings, loader=lambda: load_settings(args))
    except OSError as exc:
        LOG.error("%s", exc.strerror or exc)
        return 1
    return relay.run()
