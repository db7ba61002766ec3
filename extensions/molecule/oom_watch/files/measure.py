"""What the oom_watch scenario measures and asserts on: alerts at the receiver, series in Prometheus, flight
records on disk. Prints one JSON object; exit 1 when what was waited for did not come.

    measure.py incident --dir D --flight F --vmid 2017 --since EPOCH [--timeout 120]
        waits for EnvaCtOomKilled{vmid} at the receiver; onset (the kernel's kill time in the flight
        record) -> first scrape showing the kill -> alert received; the flight records' socat count.
    measure.py stall --dir D --flight F --vmid 2017 --since EPOCH [--skew S] [--timeout 120]
        (v2_oom_watch: the VM node's stall, F a copy of the node's flight records, S the node's clock minus
        this host's) waits for EnvaCtMemoryStalled{vmid} at the receiver; the CT reaching memory.high (first
        scrape with more high events) -> the agent's stall flag (the stall record, and what flagged it: a PSI
        trigger or sampling) -> first scrape with the flag -> alert received; kills counted meanwhile.
    measure.py quiet --dir D --vmid 2017 --since EPOCH
        alerts for vmid that started after EPOCH (other than the earlier incident's, still firing), and
        the CT's OOM counters' increase since EPOCH in Prometheus.
"""

import argparse
import json
import os
import sys
import time
import urllib.parse
import urllib.request

if "--lib" in sys.argv:                    # where ansible_collections/enva/pve is (the collection's parsers)
    sys.path.insert(0, sys.argv.pop(sys.argv.index("--lib") + 1))
    sys.argv.remove("--lib")
from ansible_collections.enva.pve.plugins.module_utils.flight_record import read_records, storm_commands  # noqa: E402

PROMETHEUS = "http://127.0.0.1:%s" % os.environ.get("ENVA_PROM_STACK_PORT_BASE", "19090")   # as prom_stack.py


def posts(directory):
    alerts = []
    try:
        with open(directory + "/posts.jsonl") as handle:
            for line in handle:
                entry = json.loads(line)
                for alert in entry["payload"].get("alerts", []):
                    alerts.append(dict(alert, received=entry["received"]))
    except OSError:
        pass
    return alerts


def query(expr):
    url = PROMETHEUS + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)["data"]["result"]


def parse_time(text):
    # Alertmanager's RFC 3339 with nanoseconds: 2026-12-06T14:20:01.123456789Z
    import datetime
    head, _dot, frac = text.rstrip("Z").partition(".")
    base = datetime.datetime.strptime(head, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.timezone.utc)
    return base.timestamp() + (float("0." + frac[:9]) if frac else 0.0)


def wait_alert(args, name):
    deadline = time.monotonic() + args.timeout
    while True:
        for alert in posts(args.dir):
            labels = alert.get("labels", {})
            if (labels.get("alertname") == name and labels.get("vmid") == str(args.vmid)
                    and alert["received"] >= args.since):
                return alert
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.5)


def first_change(expr, since, rising=True):
    """The first sample time after ``since`` where the series rose above its first value (a counter), or, with
    rising False, where it was 1 (a flag)."""
    first = None
    for series in query(expr):
        values = [(float(stamp), float(value)) for stamp, value in series["values"] if float(stamp) >= since]
        for stamp, value in values:
            if (value > values[0][1]) if rising else (value == 1):
                first = stamp if first is None else min(first, stamp)
                break
    return first


def seconds(later, earlier):
    return round(later - earlier, 2) if later is not None and earlier is not None else None


def stall(args):
    found = wait_alert(args, "EnvaCtMemoryStalled")
    skew = args.skew
    records = [record for record in read_records(args.flight, vmid=args.vmid, since=args.since + skew)
               if record.get("reason") == "stall"]
    flagged = min((record["epoch"] - skew for record in records), default=None)
    window = "[%ds]" % max(int(time.time() - args.since) + 60, 60)
    high = first_change('enva_ct_memory_high_events_total{vmid="%d"}%s' % (args.vmid, window), args.since)
    metric = first_change('enva_ct_memory_stalled{vmid="%d"}%s' % (args.vmid, window), args.since, rising=False)
    kills = {}
    for name in ("enva_ct_oom_kills_total", "enva_ct_memory_oom_kill_events_total"):
        expr = 'max(%s{vmid="%d"}) - min(min_over_time(%s{vmid="%d"}%s))' % (name, args.vmid, name, args.vmid, window)
        result = query(expr)
        kills[name] = float(result[0]["value"][1]) if result else None
    received = found["received"] if found else None
    first = records[0] if records else {}
    result = {
        "alert": found and {"labels": found["labels"], "startsAt": found["startsAt"], "received": received},
        "skew_s": skew, "high_first_scrape": high, "flagged": flagged, "first_metric_scrape": metric,
        "flagged_by": (first.get("detail") or {}).get("by"),
        "high_to_flag_s": seconds(flagged, high), "flag_to_metric_s": seconds(metric, flagged),
        "metric_to_alert_s": seconds(received, metric), "high_to_alert_s": seconds(received, high),
        "stall_records": [{"file": record["file"], "time": record["time"], "by": (record.get("detail") or {}).get("by"),
                           "high_events": (record.get("detail") or {}).get("high_events"),
                           "kernel_lines": record.get("kernel_lines") or []} for record in records],
        "kills_increase": kills,
    }
    print(json.dumps(result, indent=1))
    return 0 if found else 1


def incident(args):
    deadline = time.monotonic() + args.timeout
    found = None
    while found is None and time.monotonic() < deadline:
        for alert in posts(args.dir):
            labels = alert.get("labels", {})
            if (labels.get("alertname") == "EnvaCtOomKilled" and labels.get("vmid") == str(args.vmid)
                    and alert["received"] >= args.since):
                found = alert
                break
        else:
            time.sleep(0.5)
    records = list(read_records(args.flight, vmid=args.vmid, since=args.since))
    kills = [record for record in records if record.get("reason") == "oom_kill"
             and (record.get("detail") or {}).get("victim")]
    onset = min((record["detail"]["victim"]["epoch"] for record in kills
                 if record["detail"]["victim"].get("epoch")), default=None)
    samples = query('enva_ct_oom_kills_total{vmid="%d"}[15m]' % args.vmid)
    first_metric = None
    for series in samples:
        values = [(float(stamp), float(value)) for stamp, value in series["values"] if float(stamp) >= args.since]
        for stamp, value in values:
            if value > values[0][1]:          # the counter may start above 0 (kills earlier in this boot)
                first_metric = stamp if first_metric is None else min(first_metric, stamp)
                break
    socat = max([item["count"] for record in records for item in storm_commands(record) if item["name"] == "socat"]
                or [0])
    result = {
        "alert": found and {"labels": found["labels"], "startsAt": found["startsAt"], "received": found["received"]},
        "onset": onset, "first_metric_scrape": first_metric,
        "onset_to_metric_s": round(first_metric - onset, 2) if first_metric and onset else None,
        "metric_to_alert_s": round(found["received"] - first_metric, 2) if found and first_metric else None,
        "onset_to_alert_s": round(found["received"] - onset, 2) if found and onset else None,
        "flight_records": [{"file": record["file"], "reason": record["reason"], "time": record["time"],
                            "socat": max([item["count"] for item in storm_commands(record)
                                          if item["name"] == "socat"] or [0])} for record in records],
        "flight_socat_max": socat,
    }
    print(json.dumps(result, indent=1))
    return 0 if found else 1


def quiet(args):
    started = [alert for alert in posts(args.dir)
               if alert.get("labels", {}).get("vmid") == str(args.vmid) and parse_time(alert["startsAt"]) >= args.since]
    window = "%ds" % max(int(time.time() - args.since), 1)
    increases = {}
    for name in ("enva_ct_oom_kills_total", "enva_ct_memory_oom_kill_events_total", "enva_ct_memory_max_events_total"):
        result = query('max(%s{vmid="%d"}) - max(%s{vmid="%d"} offset %s)' % (name, args.vmid, name, args.vmid, window))
        increases[name] = float(result[0]["value"][1]) if result else None
    stalled = query('max_over_time(enva_ct_memory_stalled{vmid="%d"}[%s])' % (args.vmid, window))
    tasks = query('max_over_time(enva_ct_tasks{vmid="%d"}[%s])' % (args.vmid, window))
    result = {"alerts_started": [{"alertname": alert["labels"].get("alertname"), "startsAt": alert["startsAt"]}
                                 for alert in started],
              "increase": increases, "stalled_max": float(stalled[0]["value"][1]) if stalled else None,
              "tasks_max": float(tasks[0]["value"][1]) if tasks else None, "window": window}
    print(json.dumps(result, indent=1))
    return 0


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=("incident", "stall", "quiet"))
    parser.add_argument("--dir", required=True)
    parser.add_argument("--flight", default="")
    parser.add_argument("--vmid", type=int, required=True)
    parser.add_argument("--since", type=float, required=True)
    parser.add_argument("--timeout", type=float, default=120)
    parser.add_argument("--skew", type=float, default=0.0, help="the flight records' clock minus this host's (s)")
    args = parser.parse_args()
    return {"incident": incident, "stall": stall, "quiet": quiet}[args.what](args)


if __name__ == "__main__":
    sys.exit(main())
