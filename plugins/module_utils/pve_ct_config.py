# -*- coding: utf-8 -*-
# Copyright: (c) 2026, enva.pve developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PVE CT configuration files (``/etc/pve/lxc/VMID.conf``): the current settings.

The format is ``key: value`` lines; ``#`` lines are the description; a
``[snapshot]`` or ``[pending]`` section header ends the current settings.
"""

from __future__ import absolute_import, division, print_function

import os
import re

__metaclass__ = type

_CONF_NAME = re.compile(r"^(\d+)\.conf$")


def parse_ct_config(text):
    """The current (non-snapshot) settings as a dict of strings."""
    settings = {}
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("["):
            break
        if not stripped or stripped.startswith("#"):
            continue
        key, sep, value = stripped.partition(":")
        if sep:
            settings[key.strip()] = value.strip()
    return settings


def _int_or_none(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def summarize_config(path, settings):
    """What the evidence needs of a CT config: memory/swap in MiB (PVE defaults 512/512), hostname."""
    return {
        "path": path,
        "hostname": settings.get("hostname"),
        "memory_mb": _int_or_none(settings.get("memory", "512")),
        "swap_mb": _int_or_none(settings.get("swap", "512")),
        "onboot": settings.get("onboot") == "1",
    }


def read_ct_configs(config_dir):
    """``{vmid: summary}`` of every ``VMID.conf`` in ``config_dir``; empty when it does not exist."""
    configs = {}
    try:
        names = os.listdir(config_dir)
    except (IOError, OSError):
        return configs
    for name in names:
        match = _CONF_NAME.match(name)
        if not match:
            continue
        path = os.path.join(config_dir, name)
        try:
            with open(path) as handle:
                settings = parse_ct_config(handle.read())
        except (IOError, OSError):
            continue
        configs[int(match.group(1))] = summarize_config(path, settings)
    return configs
