# -*- coding: utf-8 -*-
# Copyright: (c) 2026, enva.pve developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How every report of the collection writes numbers, sizes and times (the evidence's reasoning, the fleet
report and its charts, the logging stack's summary): one place, so they cannot drift apart."""

from __future__ import absolute_import, division, print_function

import datetime

from ansible_collections.enva.pve.plugins.module_utils.memory_size import MIB, bytes_to_mib

__metaclass__ = type


def thousands(number):
    """``1361`` -> ``'1,361'``."""
    return "{:,}".format(number)


def mib(value):
    """A byte count in whole MiB (rounded down); None stays None."""
    return bytes_to_mib(value)


def mib_1(value):
    """A byte count in MiB with one decimal (``'12.3'`` as a float)."""
    return round(value / float(MIB), 1)


def or_dash(value, dash="-"):
    """``value`` with thousands separators, or ``dash`` when it is None."""
    return dash if value is None else thousands(value)


def percent(value, none="-"):
    """``20.0`` -> ``'20%'``, ``12.5`` -> ``'12.5%'``; ``none`` when it is None."""
    return none if value is None else "%s%%" % (int(value) if float(value).is_integer() else value)


def iso_seconds(epoch):
    """Epoch seconds as ``2026-12-06T14:02:30Z`` (UTC, whole seconds); None stays None."""
    if epoch is None:
        return None
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
