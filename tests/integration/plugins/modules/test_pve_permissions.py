"""pve_permissions: main() against the PVE API lab server over real HTTPS: PVE's effective privileges of a
token, and a failure that names every missing privilege, its path and the pveum line that grants it."""

from __future__ import annotations

import pytest

from ansible_collections.enva.pve.plugins.modules import pve_permissions
from support import module_harness as harness


pytestmark = pytest.mark.usefixtures("api_exits")
MODULE = harness.ApiModule(pve_permissions)
WANTED = {"/vms/2017": ["VM.Audit", "VM.Config.Memory"], "/nodes/pve1": ["Sys.Audit"]}


def test_a_token_that_holds_everything(lab):
    result = MODULE.ok(lab, privileges=WANTED)
    assert result["changed"] is False and result["missing"] == {}
    assert {"VM.Audit", "VM.Config.Memory"} <= set(result["permissions"]["/vms/2017"])


def test_a_read_only_token_is_told_what_it_lacks_and_how_to_grant_it(lab):
    message = MODULE.failed(lab, lab.connection("readonly"), privileges=WANTED)
    assert message.startswith("The PVE API token enva@pve!readonly lacks VM.Config.Memory on /vms/2017 (PVE: GET")
    assert "pveum acl modify /vms/2017 --roles ROLE --users enva@pve --tokens 'enva@pve!readonly'" in message
    report = MODULE.ok(lab, lab.connection("readonly"), privileges=WANTED, fail_on_missing=False)
    assert report["missing"] == {"/vms/2017": ["VM.Config.Memory"]}


@pytest.mark.parametrize("privileges, expected", [
    ({"vms/2017": ["VM.Audit"]}, "privileges: 'vms/2017' is not an ACL path"),
    ({"/vms/2017": {"VM.Audit": 1}}, "privileges: /vms/2017 must map to a list of privilege names"),
])
def test_bad_input_is_named_before_any_call(lab, privileges, expected):
    assert MODULE.failed(lab, privileges=privileges).startswith(expected)
