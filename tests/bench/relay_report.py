"""The DNS relay benchmark's report: the markdown section of docs/benchmarks.md and its chart.

relay_bench.measure() gathers and summarizes the figures; this module only
renders them (tests/unit/relay/test_bench_report.py checks it on made-up figures).
"""

from __future__ import annotations

import relay_attack
from relay_bench import MIB, PEERS

LABELS = {"direct": "unbound directly (ceiling)", "relay": "enva-dns-relay", "dnsdist": "dnsdist", "dnsmasq": "dnsmasq",
          "socat": "socat-fork"}


def plural(count, noun):
    return "%d %s%s" % (count, noun, "" if count == 1 else "s")


def ratio(value, base):
    return "%.2f" % (value / base) if base else "-"


def pinning_text(figures):
    """How the peers were scheduled (the fairness of the comparison depends on it)."""
    pins = figures.get("pinning") or {}
    if pins.get("forwarder") is None:
        text = "No CPU pinning (fewer than 2 CPUs or no taskset): peers and load share the CPUs."
    else:
        text = ("Every forwarder (relay, dnsdist, dnsmasq, socat) ran pinned alone to CPU %s (`taskset -c %s`); dnsperf, unbound "
                "and the flood generator to CPU %s, so \"qps\" is each forwarder's throughput on one core; \"answers per CPU-s\" "
                "divides the answers by the CPU time the forwarder itself used (the row for unbound counts unbound's, "
                "which shares CPU %s with dnsperf)." % (pins["forwarder"], pins["forwarder"], pins["load"], pins["load"]))
    same = figures.get("same_autogroup")
    if same is not None:
        text += (" Every peer was started the same way, in the harness's own session (one scheduling autogroup with dnsperf: %s)."
                 % ("checked in /proc/PID/autogroup" if same else "**not** the case in this run, see /proc/PID/autogroup"))
    return text


def render_markdown(figures, chart_name):
    """The generated body of the "## DNS relay" section."""
    rows, options, versions_ = figures["rows"], figures["options"], figures["versions"]
    direct, dnsdist = rows["direct"], rows["dnsdist"]
    m = figures["machine"]
    lines = [
        "Measured %s on %s (%d CPUs, %d GiB), Debian %s, kernel %s. Load average before the run %s, after %s "
        "(other engineers' work shares this machine: the load average is part of the record)." % (
            figures["date"], m["cpu"], m["cpus"], m["memory_gib"], m["debian"], m["kernel"],
            " / ".join("%.2f" % x for x in figures["load_before"]), " / ".join("%.2f" % x for x in figures["load_after"])),
        "",
        pinning_text(figures),
        "",
        "Versions: %s." % ", ".join(versions_[k] for k in ("relay", "direct", "dnsdist", "dnsmasq", "socat", "dnsperf")),
        "",
        "Everything runs on 127.0.0.1. The upstream of every peer is one unbound with a static local zone and no "
        "recursion (`local-zone: \".\" refuse`, `outgoing-interface: 127.0.0.1`): no query leaves the machine. "
        "\"× direct\" is the figure divided by unbound's own (queried directly, the ceiling), \"× dnsdist\" by dnsdist's.",
        "",
        "### Throughput and memory",
        "",
        "`dnsperf -c 4 -q 200 -l %d`, %s (the peers' order rotates each round); median qps, "
        "the rounds' range, queries lost over all rounds, answers other than NOERROR (the relay answers SERVFAIL "
        "after --timeout when a query or its answer was dropped on the way to or from unbound: a loss the client is "
        "told about); peak RSS: VmHWM of the process (socat: the largest sum of VmRSS over its process tree, sampled "
        "every 0.2 s)." % (
            options["seconds"], plural(options["rounds"], "interleaved round")),
        "",
        "| peer | qps (median) | range | × direct | × dnsdist | answers per CPU-s | per CPU-s × dnsdist | lost | not NOERROR "
        "| peak RSS | RSS × direct | RSS × dnsdist |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in PEERS:
        row = rows[name]
        lines.append("| %s | %s | %s–%s | %s | %s | %s | %s | %.3f%% | %s | %.1f MiB | %s | %s |" % (
            LABELS[name], "{:,.0f}".format(row["qps"]), "{:,.0f}".format(row["qps_min"]), "{:,.0f}".format(row["qps_max"]),
            ratio(row["qps"], direct["qps"]), ratio(row["qps"], dnsdist["qps"]), "{:,.0f}".format(row.get("per_cpu", 0)),
            ratio(row.get("per_cpu", 0), dnsdist.get("per_cpu", 0)), 100 * row["loss"], row["other_rcodes"],
            row["rss_kib"] / MIB, ratio(row["rss_kib"], direct["rss_kib"]), ratio(row["rss_kib"], dnsdist["rss_kib"])))
    lines += [
        "",
        "### Latency at %s queries/s" % "{:,}".format(options["rate"]),
        "",
        "`dnsperf -c 4 -Q %d -l %d -v`, %s, every answered query's latency pooled." % (
            options["rate"], options["latency_seconds"], plural(options["rounds"], "round")),
        "",
        "| peer | queries | avg | median | p99 | added median | median × direct | median × dnsdist | p99 × direct | p99 × dnsdist |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in PEERS:
        row = rows[name]
        lines.append("| %s | %s | %.3f ms | %.3f ms | %.3f ms | %+.3f ms | %s | %s | %s | %s |" % (
            LABELS[name], "{:,}".format(row["lat_n"]), 1000 * row["lat_avg"], 1000 * row["lat_p50"], 1000 * row["lat_p99"],
            1000 * (row["lat_p50"] - direct["lat_p50"]), ratio(row["lat_p50"], direct["lat_p50"]),
            ratio(row["lat_p50"], dnsdist["lat_p50"]), ratio(row["lat_p99"], direct["lat_p99"]), ratio(row["lat_p99"], dnsdist["lat_p99"])))
    relay_flood, socat_flood = figures["flood"]["relay"], figures["flood"]["socat"]
    lines += [
        "",
        "### Random-source-port flood",
        "",
        "`tests/bench/dnsflood.py`: each query from a new UDP socket (a new source port, as stub resolvers send them), "
        "each socket waits 1 s for its answer, for %d s. The relay: %s queries/s. socat: %s queries in all (%.0f/s), since it "
        "forks a process per source port and never reaps it (the CT 2017 incident); both watched %d s more. RSS "
        "and PSS (shared pages divided among the processes sharing them: what fills a CT's memory cgroup) sampled "
        "every 0.5 s, socat's summed over its process tree." % (
            options["flood_seconds"], "{:,}".format(options["flood_rate"]), "{:,}".format(options["socat_flood_count"]),
            options["socat_flood_count"] / options["flood_seconds"], options["settle_seconds"]),
        "",
        "| peer | queries | answered | RSS at start | peak RSS | RSS at end | peak PSS | processes at end |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, flood in (("relay", relay_flood), ("socat", socat_flood)):
        rss = [sample[1] for sample in flood["series"]]
        lines.append("| %s | %s | %s (%.1f%%) | %.1f MiB | %.1f MiB | %.1f MiB | %.1f MiB | %d |" % (
            LABELS[name], "{:,}".format(flood["sent"]), "{:,}".format(flood["answered"]), 100.0 * flood["answered"] / max(1, flood["sent"]),
            rss[0] / MIB, max(rss) / MIB, rss[-1] / MIB, max(sample[2] for sample in flood["series"]) / MIB, flood["processes"]))
    socat_pss = [sample[2] for sample in socat_flood["series"]]
    lines += [
        "",
        "The relay's RSS over the last quarter of the flood minus its RSS over the first quarter (after 5 s): %+.0f KiB. "
        "socat's PSS grew by %.1f MiB for %s queries, about %.0f KiB per query, and stayed." % (
            relay_flood["growth_kib"], (max(socat_pss) - socat_pss[0]) / MIB, "{:,}".format(socat_flood["sent"]),
            (max(socat_pss) - socat_pss[0]) / max(1, socat_flood["sent"])),
    ]
    lines += attack_lines(figures)
    lines += [
        "",
        "### Targets",
        "",
        "| target | measured | met |",
        "|---|---:|---|",
    ]
    for target, measured, met in figures["targets"]:
        lines.append("| %s | %s | %s |" % (target, measured, "yes" if met else "**no**"))
    lines += [
        "",
        "![DNS relay benchmark](%s)" % chart_name,
        "",
        "Reproduce: `make bench` (all benchmarks) or `.venv/bin/python tests/bench/run.py relay --write docs/benchmarks.md` "
        "(about 10 minutes; the load average is part of the record: other work on the machine shows in the figures, "
        "least in the answers per CPU-second).",
    ]
    return "\n".join(lines)


def render_chart(figures, path):
    """docs/benchmarks-relay.png: throughput, latency, peak RSS, RSS during the flood."""
    import matplotlib  # pylint: disable=import-outside-toplevel  # only the report needs it
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

    rows = figures["rows"]
    names = list(PEERS)
    colors = {"direct": "#999999", "relay": "#1b7837", "dnsdist": "#2166ac", "dnsmasq": "#b2abd2", "socat": "#d6604d"}
    labels = ["unbound\n(direct)", "relay", "dnsdist", "dnsmasq", "socat"]
    fig, axes = plt.subplots(2, 2, figsize=(12, 8.5))
    ax = axes[0][0]
    qps = [rows[n]["qps"] / 1000 for n in names]
    err = [[rows[n]["qps"] / 1000 - rows[n]["qps_min"] / 1000 for n in names], [rows[n]["qps_max"] / 1000 - rows[n]["qps"] / 1000 for n in names]]
    ax.bar(labels, qps, yerr=err, color=[colors[n] for n in names], capsize=4)
    for index, name in enumerate(names):
        ax.annotate("%.2f× dnsdist" % (rows[name]["qps"] / rows["dnsdist"]["qps"]), (index, qps[index]), ha="center",
                    va="bottom", fontsize=8, xytext=(0, 6), textcoords="offset points")
    ax.set_title("Throughput (dnsperf -c 4 -q 200), median of %s" % plural(rows["relay"]["rounds"], "round"))
    ax.set_ylabel("thousand queries/s")
    ax = axes[0][1]
    width = 0.38
    positions = range(len(names))
    ax.bar([p - width / 2 for p in positions], [1000 * rows[n]["lat_p50"] for n in names], width, label="median",
           color=[colors[n] for n in names])
    ax.bar([p + width / 2 for p in positions], [1000 * rows[n]["lat_p99"] for n in names], width, label="p99",
           color=[colors[n] for n in names], alpha=0.45)
    ax.set_xticks(list(positions))
    ax.set_xticklabels(labels)
    ax.set_title("Latency at %d queries/s (solid: median, light: p99)" % figures["options"]["rate"])
    ax.set_ylabel("ms")
    ax = axes[1][0]
    ax.bar(labels, [rows[n]["rss_kib"] / MIB for n in names], color=[colors[n] for n in names])
    ax.axhline(24, color="#1b7837", linestyle="--", linewidth=1)
    ax.text(len(names) - 0.5, 24, "24 MiB target", ha="right", va="bottom", fontsize=8)
    ax.set_title("Peak RSS under dnsperf load")
    ax.set_ylabel("MiB")
    ax = axes[1][1]
    for name in ("relay", "socat"):
        series = figures["flood"][name]["series"]
        ax.plot([s[0] for s in series], [s[1] / MIB for s in series], color=colors[name],
                label="%s RSS (%s queries)" % (LABELS[name], "{:,}".format(figures["flood"][name]["sent"])))
        ax.plot([s[0] for s in series], [s[2] / MIB for s in series], color=colors[name], linestyle="--",
                label="%s PSS" % LABELS[name])
    ax.set_yscale("log")
    ax.set_title("Memory during the random-source-port flood (%d s)" % figures["options"]["flood_seconds"])
    ax.set_xlabel("seconds")
    ax.set_ylabel("MiB (log)")
    ax.legend(fontsize=8)
    fig.suptitle("DNS relay vs peers, 127.0.0.1, %s, load before %.2f" % (figures["date"], figures["load_before"][0]))
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def attack_lines(figures):
    """The "TCP under attack" subsection (empty if the run had none)."""
    attack = figures.get("attack")
    if not attack:
        return []
    return [
        "",
        "### TCP under attack",
        "",
        "`tests/bench/relay_attack.py`, each phase on a fresh relay pinned like the others, in front of the same unbound. "
        "Non-reading clients: 250 connections from 8 (outside the allow list) or 16 (inside) loopback addresses, each "
        "with a 4 KiB receive buffer, sending 64 queries for a name with %d A records (about 3 KiB per answer, 48 MiB "
        "for all) and never reading. Trickle: %d connections from 8 addresses sending one byte at a time (about 500 "
        "bytes/s in all) for up to 20 s while a legitimate client asks over a fresh TCP connection every 3 s. "
        "Pipelined: 20 clients with 64 queries each in one write. Send queues: what the kernel holds for the relay's "
        "client connections (/proc/net/tcp tx_queue), which a CT's memory cgroup counts as it counts RSS." % (
            relay_attack.BIG_RECORDS, attack["trickle"]["attackers"]),
        "",
        "| attack | measured |",
        "|---|---:|",
        "| 250 non-reading clients outside the allow list (reset at accept) | peak RSS %(hwm_mib).1f MiB, send queues "
        "%(queued_mib).1f MiB |" % attack["refused_non_readers"],
        "| 250 non-reading clients inside the allow list (64 KiB each, 4 MiB in all) | peak RSS %(hwm_mib).1f MiB, send queues "
        "%(queued_mib).1f MiB |" % attack["allowed_non_readers"],
        "| trickle: legitimate TCP queries answered | %(answered)d of %(asked)d |" % attack["trickle"],
        "| 1,280 pipelined queries: answered, over upstream TCP connections | %s, %d |" % (
            "{:,}".format(attack["pipelined"]["answers"]), attack["pipelined"]["upstream_connections"]),
    ]
