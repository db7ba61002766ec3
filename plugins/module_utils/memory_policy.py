# -*- coding: utf-8 -*-
# Copyright: (c) 2026, enva.pve developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How much memory a CT gets: the one policy of the fix (role haproxy_dns) and of the audit's remediation
(role oom_audit), and PVE's minimums that every size is checked against.

* :func:`checked_size` / :func:`setting_problem`: a size is a whole number of MiB at or above PVE's minimum
  (``lxc_memory`` and ``declared_ct`` take sizes; the roles check their ``*_mb`` settings with it through
  the filter ``enva.pve.memory_setting_problem``);
* :func:`target_mb`: memory is raised to what is wanted and never lowered unless lowering is asked for (the
  fix, through the filter ``enva.pve.memory_target``; the audit's remediation, through :func:`plan_raises`);
* :func:`plan_raises`: which of the audit's recommended raises to make, checked against memory read just now.

Pure functions over plain data; the roles reach them through ``plugins/filter/memory_policy.py``.
"""

from __future__ import absolute_import, division, print_function

from ansible_collections.enva.pve.plugins.module_utils.memory_size import parse_mib
from ansible_collections.enva.pve.plugins.module_utils.pve_ct_config import MINIMUM_MIB
from ansible_collections.enva.pve.plugins.module_utils.report_format import thousands

__metaclass__ = type

SIZE_KEYS = ("memory", "swap")


def below_minimum(key, mib):
    """True when ``mib`` MiB of ``key`` (``memory`` or ``swap``) is below PVE's minimum for it."""
    return mib < MINIMUM_MIB[key]


def checked_size(key, value):
    """``value`` of ``key`` (``memory`` or ``swap``: an int of MiB or a size string) in MiB, at least PVE's
    minimum; ValueError says why not (``memory=8 is 8 MiB, below PVE's minimum of 16 MiB for memory``)."""
    try:
        mib = parse_mib(value)
    except ValueError as error:
        raise ValueError("%s: %s" % (key, error))
    if below_minimum(key, mib):
        raise ValueError("%s=%s is %d MiB, below PVE's minimum of %d MiB for %s" % (
            key, value, mib, MINIMUM_MIB[key], key))
    return mib


def setting_problem(value, name, key="memory", optional=False):
    """What is wrong with a role's setting ``name`` (an integer of MiB for ``key``), or '' when nothing is.

    ``optional``: None is allowed (the role then leaves ``key`` as it is).
    """
    if value is None and optional:
        return ""
    what = "null (%s left as it is) or " % key if optional else ""
    mib = None
    if not isinstance(value, bool):
        try:
            mib = int(str(value).strip())
        except ValueError:
            pass
    if mib is None or below_minimum(key, mib):
        return "%s must be %sat least %d (MiB, PVE's minimum for %s); got %s" % (
            name, what, MINIMUM_MIB[key], key, value)
    return ""


def target_mb(wanted_mb, now_mb, lower=False):
    """The memory to set: ``wanted_mb``, or ``now_mb`` when the CT has more and may not be lowered."""
    wanted_mb = int(wanted_mb)
    if lower or now_mb is None:
        return wanted_mb
    return max(wanted_mb, int(now_mb))


def plan_raises(recommended, now_cts, declared_mb=None, vmids=None, max_mb=None):
    """``{"raise": [...], "skipped": [...]}``: the audit's recommended raises, checked against memory read just now.

    ``recommended``: ``[{"vmid", "to_mb"}...]`` (the report's remediation list); ``now_cts``: ``{"VMID":
    {"node", "maxmem_mb"}}`` read just before (a ``pve_resources`` result's ``cts``); ``declared_mb``:
    ``{vmid: MiB}`` of the declared file. Memory is only ever raised (:func:`target_mb` without lowering): a
    CT that has ``to_mb`` or more by now is skipped, as are CTs not in ``vmids`` (when given), above
    ``max_mb``, or gone from the cluster. Each raise has ``vmid``, ``node`` (where it is now), ``now_mb``,
    ``to_mb`` and ``declared_mb`` (None without a declared file or entry).
    """
    wanted = set(int(vmid) for vmid in vmids) if vmids else None
    declared_mb = declared_mb or {}
    chosen, skipped = [], []
    for item in recommended:
        live = now_cts.get(str(item["vmid"]))
        why = None
        if wanted is not None and item["vmid"] not in wanted:
            why = "not in oom_audit_remediate_vmids"
        elif max_mb is not None and item["to_mb"] > int(max_mb):
            why = "above oom_audit_remediate_max_mb (%s MiB): raise it by hand if that is right" % (
                thousands(int(max_mb)))
        elif live is None:
            why = "no longer in /cluster/resources"
        elif live.get("maxmem_mb") is None:
            why = "/cluster/resources does not say how much memory it has now"
        elif target_mb(item["to_mb"], live["maxmem_mb"]) == live["maxmem_mb"]:
            why = "it has %s MiB by now (memory is never lowered)" % thousands(live["maxmem_mb"])
        if why:
            skipped.append({"vmid": item["vmid"], "to_mb": item["to_mb"], "why": why})
            continue
        chosen.append({"vmid": item["vmid"], "node": live["node"], "now_mb": live["maxmem_mb"], "to_mb": item["to_mb"],
                       "declared_mb": declared_mb.get(item["vmid"])})
    return {"raise": chosen, "skipped": skipped}
