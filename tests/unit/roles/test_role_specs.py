"""Every role: meta/argument_specs.yml in step with defaults/main.yml, public names prefixed with the role's
name, internal ones ``__<role>_``, and every public variable the role reads documented and used (as
prometheus-community/ansible's lint_arguments_spec.sh). A new role is checked as soon as it has an argument spec."""

from __future__ import annotations

import pytest

from support import role_specs
from support.role_specs import ROOT

ROLES = sorted(path.name for path in (ROOT / "roles").iterdir() if (path / "meta" / "argument_specs.yml").exists())
# Facts a role sets for its callers (documented in its README or argument spec description), not inputs.
RETURNED = {
    "dns_relay": {"dns_relay_swap_result", "dns_relay_rss_bytes"},
    "oom_audit": {"oom_audit_summary", "oom_audit_report_files"},
    "ct_logging": {"ct_logging_result"},
}
CASES = [(role, name) for role in ROLES for name in sorted(role_specs.role_defaults(ROOT / "roles" / role) or {})]


def test_every_role_has_an_argument_spec():
    assert {"dns_relay", "haproxy_dns", "oom_audit"} <= set(ROLES)


@pytest.mark.parametrize("role", ROLES)
def test_same_variables(role):
    role_specs.assert_same_variables(role_specs.role_defaults(ROOT / "roles" / role) or {},
                                     role_specs.role_options(ROOT / "roles" / role))


@pytest.mark.parametrize("role", ROLES)
def test_public_and_internal_names_carry_the_role_prefix(role):
    path = ROOT / "roles" / role
    assert [name for name in role_specs.role_defaults(path) or {} if not name.startswith(role + "_")] == []
    internal = role_specs.load(path / "vars" / "main.yml") if (path / "vars" / "main.yml").exists() else {}
    assert [name for name in internal or {} if not name.startswith("__%s_" % role)] == []


@pytest.mark.parametrize("role, name", CASES)
def test_default_and_type_agree(role, name):
    path = ROOT / "roles" / role
    role_specs.assert_default_agrees(name, role_specs.role_options(path)[name], role_specs.role_defaults(path)[name])


@pytest.mark.parametrize("role", ROLES)
def test_every_variable_the_role_reads_is_documented_and_used(role):
    path = ROOT / "roles" / role
    used = role_specs.used_variables(path, role + "_")
    documented = set(role_specs.role_options(path))
    assert sorted(used - documented - RETURNED.get(role, set())) == [], "read by the role, not documented"
    assert sorted(documented - used) == [], "documented, never read"
