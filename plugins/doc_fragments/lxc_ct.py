# -*- coding: utf-8 -*-
# Copyright: (c) 2026, enva.pve developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    """The options that name one CT (lxc_memory, lxc_memory_info: plugins/module_utils/lxc_ct.py finds it)."""

    DOCUMENTATION = r"""
options:
  vmid:
    description:
      - The CT's VMID.
      - Give this or O(hostname).
    type: int
  hostname:
    description:
      - The CT's name (its C(hostname) setting, as C(/cluster/resources) lists it).
      - Used to find the VMID when O(vmid) is not given; a name that matches no CT or several CTs fails.
    type: str
  node:
    description:
      - The PVE node the CT is on.
      - Omitted means found through C(/cluster/resources), which costs one more API call.
    type: str
"""
