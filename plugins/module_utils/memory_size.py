# -*- coding: utf-8 -*-
# Copyright: (c) 2026, enva.pve developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Memory sizes as PVE counts them: whole MiB.

The rules, shared by every module that takes a CT memory or swap size:

* an integer (or a string of digits) is MiB, as in a PVE CT config (``memory: 1024``);
* a number with a suffix ``K``, ``M``, ``G`` or ``T`` (any case, optionally followed by ``B`` or
  ``iB``) is binary: ``2G``, ``2GB`` and ``2GiB`` are all 2048 MiB, ``1.5G`` is 1536 MiB;
* the result must be a whole number of MiB (``1536K`` is refused, ``1024K`` is 1 MiB);
* booleans, floats and anything else are refused with a message that says what is accepted.
"""

from __future__ import absolute_import, division, print_function

import re
from decimal import Decimal

__metaclass__ = type

MIB = 1024 * 1024

SIZE_FORMS = "an integer number of MiB, or a number with a binary suffix K, M, G or T (2048, '2048M', '2G', '1.5G')"
_SIZE = re.compile(r"^\s*(?P<number>\d+(?:\.\d+)?)\s*(?:(?P<unit>[KMGT])(?P<tail>i?B)?)?\s*$", re.IGNORECASE)
_KIB_PER_UNIT = {"K": 1, "M": 1024, "G": 1024 ** 2, "T": 1024 ** 3}


def bytes_to_mib(value):
    """A byte count in whole MiB (rounded down); None stays None."""
    return None if value is None else int(value) // MIB


def split_size(text):
    """``(number text, unit letter as written or '', tail as written or '')`` of a size string, or None."""
    match = _SIZE.match(text)
    if match is None:
        return None
    return match.group("number"), match.group("unit") or "", match.group("tail") or ""


def parse_mib(value):
    """``value`` (int, or str such as ``'2048'``, ``'2G'``) in whole MiB; ValueError says why not."""
    if isinstance(value, bool):
        raise ValueError("%r is a boolean, not a size: give %s" % (value, SIZE_FORMS))
    if isinstance(value, int):
        if value < 0:
            raise ValueError("%d is negative: give %s" % (value, SIZE_FORMS))
        return value
    if not isinstance(value, str):
        raise ValueError("%r (%s) is not a size: give %s" % (value, type(value).__name__, SIZE_FORMS))
    parts = split_size(value)
    if parts is None:
        raise ValueError("%r is not a size: give %s" % (value, SIZE_FORMS))
    number, unit, _tail = parts
    kib = Decimal(number) * (_KIB_PER_UNIT[unit.upper()] if unit else 1024)
    mib = kib / 1024
    if mib != mib.to_integral_value():
        raise ValueError("%r is not a whole number of MiB (%s MiB): PVE sizes are whole MiB" % (value, mib.normalize()))
    return int(mib)


def format_like(mib, example):
    """``mib`` written in the unit of the size string ``example`` when it is a whole number of it.

    ``format_like(2048, '1G') == '2G'``, ``format_like(1536, '1G') == '1536M'``,
    ``format_like(2048, '1024') == '2048'``, ``format_like(2048, '1gib') == '2gib'``.
    """
    parts = split_size(example)
    unit, tail = (parts[1], parts[2]) if parts else ("", "")
    if not unit:
        return str(mib)
    kib = mib * 1024
    per_unit = _KIB_PER_UNIT[unit.upper()]
    if kib % per_unit == 0:
        return "%d%s%s" % (kib // per_unit, unit, tail)
    mega = "M" if unit.isupper() else "m"
    return "%d%s%s" % (mib, mega, tail)
