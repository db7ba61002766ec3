"""memory_policy: the one memory policy of the fix and the audit (PVE's minimums, raise never lower, which raises
to make), as parametrized tables; and its filters (plugins/filter/memory_policy.py), which the roles use."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.enva.pve.plugins.filter import memory_policy as policy_filters
from ansible_collections.enva.pve.plugins.module_utils import memory_policy
from ansible_collections.enva.pve.plugins.module_utils.memory_size import MIB


@pytest.mark.parametrize("key, value, expected", [
    ("memory", 16, 16),
    ("memory", "2G", 2048),
    ("memory", "1.5G", 1536),
    ("swap", 0, 0),
    ("swap", "512M", 512),
])
def test_checked_size(key, value, expected):
    assert memory_policy.checked_size(key, value) == expected


@pytest.mark.parametrize("key, value, message", [
    ("memory", 8, "memory=8 is 8 MiB, below PVE's minimum of 16 MiB for memory"),
    ("memory", "15M", "memory=15M is 15 MiB, below PVE's minimum of 16 MiB for memory"),
    ("swap", -1, "swap: -1 is negative"),
    ("memory", "2 apples", "memory: '2 apples' is not a size"),
    ("memory", True, "memory: True is a boolean"),
])
def test_checked_size_refuses(key, value, message):
    with pytest.raises(ValueError) as caught:
        memory_policy.checked_size(key, value)
    assert str(caught.value).startswith(message)


@pytest.mark.parametrize("key, mib, below", [
    ("memory", 15, True), ("memory", 16, False), ("swap", -1, True), ("swap", 0, False)])
def test_below_minimum(key, mib, below):
    assert memory_policy.below_minimum(key, mib) is below


@pytest.mark.parametrize("value, key, optional, message", [
    (2048, "memory", False, ""),
    ("2048", "memory", False, ""),
    (16, "memory", False, ""),
    (8, "memory", False, "size_mb must be at least 16 (MiB, PVE's minimum for memory); got 8"),
    ("2G", "memory", False, "size_mb must be at least 16 (MiB, PVE's minimum for memory); got 2G"),
    (None, "memory", False, "size_mb must be at least 16 (MiB, PVE's minimum for memory); got None"),
    (True, "memory", False, "size_mb must be at least 16 (MiB, PVE's minimum for memory); got True"),
    (None, "swap", True, ""),
    (0, "swap", True, ""),
    (-1, "swap", True, "size_mb must be null (swap left as it is) or at least 0 (MiB, PVE's minimum for swap); got -1"),
])
def test_setting_problem(value, key, optional, message):
    assert memory_policy.setting_problem(value, "size_mb", key=key, optional=optional) == message


@pytest.mark.parametrize("wanted, now, lower, target", [
    (2048, 1024, False, 2048),     # raised
    (2048, 4096, False, 4096),     # never lowered
    (2048, 4096, True, 2048),      # lowered when asked
    ("2048", "1024", False, 2048),  # as templated vars come
    (2048, None, False, 2048),     # unknown now
    (2048, 2048, False, 2048),
])
def test_target_mb(wanted, now, lower, target):
    assert memory_policy.target_mb(wanted, now, lower=lower) == target


NOW = {"2017": {"node": "pve1", "maxmem_mb": 1024}, "2018": {"node": "pve2", "maxmem_mb": 4096},
       "2019": {"node": "pve1", "maxmem_mb": None}}


@pytest.mark.parametrize("vmid, to_mb, vmids, max_mb, why", [
    (2017, 2048, None, None, None),
    (2017, 2048, [2017], 2048, None),
    (2017, 2048, [2018], None, "not in oom_audit_remediate_vmids"),
    (2017, 2048, None, 1536, "above oom_audit_remediate_max_mb (1,536 MiB): raise it by hand if that is right"),
    (2018, 2048, None, None, "it has 4,096 MiB by now (memory is never lowered)"),
    (2018, 4096, None, None, "it has 4,096 MiB by now (memory is never lowered)"),
    (2019, 2048, None, None, "/cluster/resources does not say how much memory it has now"),
    (2020, 2048, None, None, "no longer in /cluster/resources"),
])
def test_plan_raises(vmid, to_mb, vmids, max_mb, why):
    plan = memory_policy.plan_raises([{"vmid": vmid, "to_mb": to_mb}], NOW, declared_mb={2017: 1024},
                                     vmids=vmids, max_mb=max_mb)
    if why is None:
        assert plan == {"raise": [{"vmid": vmid, "node": "pve1", "now_mb": 1024, "to_mb": to_mb, "declared_mb": 1024}],
                        "skipped": []}
    else:
        assert plan == {"raise": [], "skipped": [{"vmid": vmid, "to_mb": to_mb, "why": why}]}


def test_filters_are_registered():
    assert sorted(policy_filters.FilterModule().filters()) == ["memory_setting_problem", "memory_target", "mib"]


@pytest.mark.parametrize("value, digits, expected", [
    (2048 * MIB, None, 2048), (MIB - 1, None, 0), ("1073741824", None, 1024), (None, None, None),
    (12.34 * MIB, 1, 12.3), (1536 * 1024, 1, 1.5)])
def test_mib_filter(value, digits, expected):
    assert policy_filters.mib(value, digits) == expected


@pytest.mark.parametrize("call, message", [
    (lambda: policy_filters.mib("lots"), "mib: 'lots' is not a number of bytes"),
    (lambda: policy_filters.memory_target("lots", 1024), "memory_target: 'lots' and 1024 must be MiB as integers"),
    (lambda: policy_filters.memory_setting_problem(16, "x", key="disk"), "memory_setting_problem: key must be one of"),
])
def test_filters_refuse_bad_input(call, message):
    with pytest.raises(AnsibleFilterError) as caught:
        call()
    assert str(caught.value).startswith(message)


def test_memory_target_filter_is_the_policy():
    assert policy_filters.memory_target("2048", "4096", lower=False) == 4096
    assert policy_filters.memory_target(2048, 4096, lower=True) == 2048
