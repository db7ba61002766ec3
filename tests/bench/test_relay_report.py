"""The relay benchmark's arithmetic and report: targets judged right, sections replaced in place."""

from __future__ import annotations

import pytest

import relay_bench
import relay_report
import sections


def figures(relay_qps=70000.0, relay_rss=16000, relay_p50=0.0001, flood_rss_end=16000):
    """Raw figures as measure() gathers them, for a run where dnsdist does 100k qps."""
    qps = {"direct": 140000.0, "relay": relay_qps, "dnsdist": 100000.0, "dnsmasq": 80000.0, "socat": 60000.0}
    p50 = {"direct": 0.00004, "relay": relay_p50, "dnsdist": 0.00008, "dnsmasq": 0.00008, "socat": 0.00006}
    rss = {"direct": 16000, "relay": relay_rss, "dnsdist": 40000, "dnsmasq": 5000, "socat": 20000}
    relay_series = [(t / 2.0, 16000 + (flood_rss_end - 16000) * t / 120.0, 12000) for t in range(121)]
    return {
        "date": "2026-01-01 00:00 UTC", "load_before": (0.1, 0.1, 0.1), "load_after": (0.2, 0.2, 0.2),
        "machine": {"cpu": "test CPU", "cpus": 2, "kernel": "6.1", "debian": "12.0", "memory_gib": 24},
        "versions": {k: k + " 1" for k in ("relay", "direct", "dnsdist", "dnsmasq", "socat", "dnsperf")},
        "options": vars(relay_bench.Options()),
        "throughput": {p: [{"qps": qps[p] * f, "sent": 1000, "lost": 0, "cpu": 1000 / (qps[p] * f)} for f in (0.9, 1.0, 1.1)]
                       for p in qps},
        "latency": {p: [p50[p]] * 99 + [p50[p] * 10] for p in p50},
        "rcodes": {p: [] for p in qps}, "peak_rss_kib": rss,
        "flood": {"relay": {"sent": 120000, "answered": 120000, "processes": 1, "hwm_kib": max(16000, flood_rss_end),
                            "series": relay_series},
                  "socat": {"sent": 2000, "answered": 1500, "processes": 1500,
                            "series": [(0.0, 7000, 2000), (1.0, 3000000, 400000), (6.0, 3000000, 400000)]}},
    }


def test_a_good_run_meets_every_target_and_says_so():
    summary = relay_bench.summarize(figures())
    assert all(ok for _target, _measured, ok in summary["targets"])
    assert summary["rows"]["relay"]["qps"] == 70000.0 and summary["rows"]["relay"]["qps_min"] == 63000.0
    text = relay_report.render_markdown(summary, "chart.png")
    for label in relay_report.LABELS.values():
        assert text.count("| %s |" % label) >= 2
    assert "| 0.70 |" in text and "**no**" not in text


@pytest.mark.parametrize("kwargs, missed", [
    ({"relay_qps": 60000.0}, "answers per CPU-second >= 0.64 x dnsdist"),
    ({"relay_rss": 30000}, "peak RSS <= 24 MiB at full load"),
    ({"flood_rss_end": 20000}, "RSS flat during the flood (last quarter vs first, < 1 MiB)"),
    ({"relay_p50": 0.0004}, "added median latency at 5000 qps < 0.3 ms"),
])
def test_a_missed_target_is_reported(kwargs, missed):
    summary = relay_bench.summarize(figures(**kwargs))
    failed = [target for target, _measured, ok in summary["targets"] if not ok]
    assert missed in failed
    assert "| %s |" % missed in relay_report.render_markdown(summary, "chart.png").replace("| **no** |", "")


def test_other_rcodes_are_summed_over_the_runs():
    lines = ["NOERROR 722319 (100.00%), SERVFAIL 4 (0.00%)", "NOERROR 615611 (100.00%)", "NOERROR 9 (90.00%), SERVFAIL 7 (0.00%), REFUSED 1 (10.00%)"]
    assert relay_bench.other_rcodes(lines) == "REFUSED 1, SERVFAIL 11"
    assert relay_bench.other_rcodes(lines[1:2]) == "none"


def test_latency_percentiles():
    summary = relay_bench.summarize(figures())
    relay = summary["rows"]["relay"]
    assert relay["lat_p50"] == pytest.approx(0.0001) and relay["lat_p99"] == pytest.approx(0.001)


def test_sections_are_replaced_in_place_and_others_kept(tmp_path):
    report = tmp_path / "benchmarks.md"
    report.write_text("# Benchmarks\n\nIntro.\n\n## other\n\n<!-- bench:other:begin -->\nold other\n<!-- bench:other:end -->\n")
    sections.replace_section(report, "relay", "## DNS relay", "first")
    sections.replace_section(report, "other", "## other", "new other")
    sections.replace_section(report, "relay", "## DNS relay", "second")
    text = report.read_text()
    assert text.startswith("# Benchmarks\n\nIntro.\n\n## other\n")
    assert "new other" in text and "old other" not in text
    assert text.count("## DNS relay") == 1 and "second" in text and "first" not in text
    assert text.index("## other") < text.index("## DNS relay")


def test_the_tcp_attack_figures_are_judged_and_rendered():
    raw = figures()
    raw["attack"] = {"refused_non_readers": {"clients": 250, "hwm_mib": 14.5, "queued_mib": 0.0},
                     "allowed_non_readers": {"clients": 250, "hwm_mib": 16.3, "queued_mib": 12.0},
                     "trickle": {"attackers": 400, "asked": 6, "answered": 5},
                     "pipelined": {"queries": 1280, "answers": 1280, "upstream_connections": 8}}
    summary = relay_bench.summarize(raw)
    judged = {target: (measured, ok) for target, measured, ok in summary["targets"]}
    assert judged["250 non-reading TCP clients: peak RSS + kernel send queues < 64 MiB (MemoryMax)"] == ("28.3 MiB", True)
    assert judged["legitimate TCP answered during a trickle attack"] == ("5 of 6", False)
    assert judged["upstream TCP connections <= 8 (--max-upstream-tcp) for 20 x 64 pipelined queries"] == ("8", True)
    text = relay_report.render_markdown(summary, "chart.png")
    assert "### TCP under attack" in text and "| trickle: legitimate TCP queries answered | 5 of 6 |" in text
