# -*- coding: utf-8 -*-
# Copyright: (c) 2026, enva.pve developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of the collection's memory policy and units (plugins/module_utils/memory_policy.py, memory_size.py), so
that the roles compute sizes with the same Python as the modules and the audit.

Documented in memory_target.yml, memory_setting_problem.yml and mib.yml next to this file.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError

from ansible_collections.enva.pve.plugins.module_utils import memory_policy
from ansible_collections.enva.pve.plugins.module_utils.memory_size import MIB


def memory_target(wanted_mb, now_mb, lower=False):
    """The memory to set (see memory_target.yml)."""
    try:
        return memory_policy.target_mb(wanted_mb, now_mb, lower=bool(lower))
    except (TypeError, ValueError) as error:
        raise AnsibleFilterError("memory_target: %r and %r must be MiB as integers (%s)" % (wanted_mb, now_mb, error))


def memory_setting_problem(value, name, key="memory", optional=False):
    """'' or what is wrong with a role's size setting (see memory_setting_problem.yml)."""
    if key not in memory_policy.SIZE_KEYS:
        raise AnsibleFilterError("memory_setting_problem: key must be one of %s, got %r"
                                 % (", ".join(memory_policy.SIZE_KEYS), key))
    return memory_policy.setting_problem(value, name, key=key, optional=bool(optional))


def mib(value, digits=None):
    """Bytes in MiB (see mib.yml)."""
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise AnsibleFilterError("mib: %r is not a number of bytes" % (value,))
    if digits is None:
        return int(number) // MIB
    return round(number / MIB, int(digits))


class FilterModule(object):
    """enva.pve's memory policy and units."""

    def filters(self):
        return {
            "memory_target": memory_target,
            "memory_setting_problem": memory_setting_problem,
            "mib": mib,
        }
