# -*- coding: utf-8 -*-
# Copyright: (c) 2026, enva.pve developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    """The attributes every enva.pve module documents, as community.docker's _attributes fragment.

    A module extends C(enva.pve.attributes) for what each attribute means, then either
    C(enva.pve.attributes.read_only) (it changes nothing) or its own C(support) and C(details).
    Keys a module writes in its own C(attributes:) win over the fragments' (ansible-core merges
    each attribute with the module's keys last), so a module can say more about one attribute.
    """

    # What each attribute means; a module adds support and details.
    DOCUMENTATION = r"""
options: {}
attributes:
  check_mode:
    description: Can run in C(check_mode) and report what would change without changing anything.
  diff_mode:
    description: Returns what changed (or would change in C(check_mode)) when run with C(--diff).
  idempotent:
    description:
      - When run twice in a row outside check mode with the same arguments, the second run reports no change.
      - This assumes that nothing else changed what the module manages in between.
"""

    # A module that only reads: use together with DOCUMENTATION.
    READ_ONLY = r"""
options: {}
attributes:
  check_mode:
    support: full
    details:
      - The module only reads; check mode runs it as usual.
  diff_mode:
    support: N/A
    details:
      - Nothing changes, so there is no diff.
  idempotent:
    support: full
    details:
      - It never changes anything; C(changed) is always false.
"""
