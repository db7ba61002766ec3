"""roles/dns_relay: meta/argument_specs.yml in step with defaults/main.yml, and every public
variable the role reads is documented (as prometheus-community/ansible's lint_arguments_spec.sh)."""

from __future__ import annotations

import pytest

from ansible_collections.enva.pve.tests.unit.roles import role_specs
from ansible_collections.enva.pve.tests.unit.roles.role_specs import (  # noqa: F401  pylint: disable=unused-import
    ROOT, defaults, options)

ROLE = ROOT / "roles" / "dns_relay"
# Facts the role sets for its callers (documented in the README), not inputs.
RETURNED = {"dns_relay_swap_result", "dns_relay_rss_bytes"}


def used_variables():
    return role_specs.used_variables(ROLE, "dns_relay_")


def test_same_variables(defaults, options):
    role_specs.assert_same_variables(defaults, options)


def test_public_names_carry_the_role_prefix(defaults):
    assert [name for name in defaults if not name.startswith("dns_relay_")] == []


@pytest.mark.parametrize("name", sorted(role_specs.role_defaults(ROLE)))
def test_default_and_type_agree(defaults, options, name):
    role_specs.assert_default_agrees(name, options[name], defaults[name])


def test_every_variable_the_role_reads_is_documented(options):
    undocumented = used_variables() - set(options) - RETURNED
    assert sorted(undocumented) == []


def test_every_documented_variable_is_used(options):
    assert sorted(set(options) - used_variables()) == []
