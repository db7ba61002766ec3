"""The demo's flood rate, sized to the processes the host forks a second (enva_lab.flood)."""

from enva_lab import flood


def test_the_flood_is_sized_to_the_forks_the_host_makes():
    assert [flood.sized_qps(rate) for rate in (10, 328.4, 1999, 50000)] == [50, 328, 1999, 2000]
    assert flood.fork_rate(seconds=0.05, at_most=20) > 0
