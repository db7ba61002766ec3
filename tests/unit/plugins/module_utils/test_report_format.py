"""report_format: how every report writes numbers, sizes and times."""

from __future__ import annotations

import pytest

from ansible_collections.enva.pve.plugins.module_utils import report_format as fmt
from ansible_collections.enva.pve.plugins.module_utils.memory_size import MIB


@pytest.mark.parametrize("call, expected", [
    (lambda: fmt.thousands(1361), "1,361"),
    (lambda: fmt.thousands(12), "12"),
    (lambda: fmt.mib(2048 * MIB + 1), 2048),
    (lambda: fmt.mib(None), None),
    (lambda: fmt.mib_1(12.34 * MIB), 12.3),
    (lambda: fmt.or_dash(None), "-"),
    (lambda: fmt.or_dash(2048), "2,048"),
    (lambda: fmt.percent(20.0), "20%"),
    (lambda: fmt.percent(12.5), "12.5%"),
    (lambda: fmt.percent(None), "-"),
    (lambda: fmt.percent(None, none="n/a"), "n/a"),
    (lambda: fmt.iso_seconds(0), "1970-01-01T00:00:00Z"),
    (lambda: fmt.iso_seconds(1732404938.4), "2024-11-23T23:35:38Z"),
    (lambda: fmt.iso_seconds(None), None),
])
def test_formats(call, expected):
    assert call() == expected
