"""The dnsmasq benchmark's report: figures in, the section's tables out (no process is started)."""

from __future__ import annotations

import bench_dnsmasq as bench


def figures():
    loads = {}
    for rate, seconds in bench.LOADS:
        for name in bench.PEERS:
            sent = rate * seconds
            refused = sent // 2 if name == "dnsmasq" and rate > 1000 else 0
            loads["%s %d %d" % (name, rate, seconds)] = {
                "sent": sent, "lost": 0, "NOERROR": sent - refused, "SERVFAIL": 0, "REFUSED": refused,
                "noerror_range": [40, 60] if refused else [100, 100]}
    for name in bench.PEERS:
        loads["%s memory" % name] = {"rss": 4800 if "dnsmasq" in name else 17000, "hwm": 19000, "rss_after": 18000}
    loads["dnsmasq warnings"] = {"dnsmasq": {"Maximum number of concurrent DNS queries reached (max: 150)": 12.0}}
    ttl = {name: {"first_ttl": 300, "after_3s_ttl": 300, "old_answers": 0, "stale_s": 0.0, "new_seen": True}
           for name in bench.PEERS}
    ttl["dnsmasq"].update(after_3s_ttl=297, old_answers=38, stale_s=9.5)
    return {"date": "2026-12-05 08:00 UTC", "rounds": 3, "load_before": [1.0, 1.0, 1.0], "load_after": [2.0, 2, 2],
            "ttl": ttl, "loads": loads, "python": "Python 3.11.2",
            "packages": {"rootfs": "/x", "rootfs_has_python3": True, "added": ["libdbus-1-3", "dnsmasq-base"],
                         "installed_kib": 3007, "version": "Dnsmasq version 2.90  Copyright"}}


def test_the_section_has_the_ttls_the_refusals_the_memory_and_the_packages():
    text = bench.render_markdown(figures())
    assert "| dnsmasq, defaults | 300 | 297 | 38 answers, the last 9.5 s after the change |" in text
    assert "| enva-dns-relay, defaults | 300 | 300 | none: the first answer after the change was the new address |" \
        in text
    assert "| dnsmasq, defaults | 3,000 q/s x 5 s | ~300 | 15,000 | 7,500 (50%) | 7,500 (50%) | 0 | 0 | 40-60% |" in text
    assert "`Maximum number of concurrent DNS queries reached (max: 150)` x 12" in text
    assert "| enva-dns-relay, defaults | 16.6 MiB | 18.6 MiB |" in text
    assert "adds 2 packages (libdbus-1-3, dnsmasq-base), 2.9 MiB installed" in text
    assert text.count("\n| ") == 3 + 3 + 9 + 3          # three headers; TTL, load and memory rows
