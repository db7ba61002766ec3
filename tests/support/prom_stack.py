"""A Prometheus stack on loopback for the watch (molecule oom_watch, make bench), started and stopped by PID.

    prom_stack.py start|stop|status --dir DIR --rules RULES --textfile TEXTFILE [--agent LAUNCHER]
    prom_stack.py start --dir DIR --rules RULES --scrape 127.0.0.1:PORT [-- TUNNEL ARGV...]
start: Debian's prometheus-node-exporter (textfile collector only, on TEXTFILE), prometheus (scrape and
rule evaluation every second, the collection's RULES, alerting to alertmanager), prometheus-alertmanager
(one webhook receiver, no clustering) and the test's webhook_receiver.py, each with its own port and data
directory under DIR, PID files DIR/NAME.pid; waits until each answers. With --scrape, node_exporter runs
elsewhere (a VM node): prometheus scrapes that address, reached through the TUNNEL command (an ``ssh -N -L``
to the node, started and stopped by PID here like the rest). agent-start / agent-stop run the
watch's launcher the same way (the lab host's PID 1 is not systemd). stop: SIGTERM by PID, then SIGKILL.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

# Loopback ports; ENVA_PROM_STACK_PORT_BASE moves them all (the bench uses another base than molecule).
BASE = int(os.environ.get("ENVA_PROM_STACK_PORT_BASE", "19090"))
PORTS = {"prometheus": BASE, "alertmanager": BASE + 3, "receiver": BASE + 4, "node_exporter": BASE + 10}
HERE = os.path.dirname(os.path.abspath(__file__))


def write(path, text):
    with open(path, "w") as handle:
        handle.write(text)


def configs(directory, rules, scrape=None):
    write(os.path.join(directory, "prometheus.yml"), json.dumps({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "900ms"},
        "rule_files": [rules],
        "alerting": {"alertmanagers": [{"static_configs": [
            {"targets": ["127.0.0.1:%d" % PORTS["alertmanager"]]}]}]},
        "scrape_configs": [{"job_name": "node", "static_configs": [
            {"targets": [scrape or "127.0.0.1:%d" % PORTS["node_exporter"]]}]}],
    }, indent=1))
    write(os.path.join(directory, "alertmanager.yml"), json.dumps({
        "route": {"receiver": "test", "group_by": ["alertname", "node", "vmid"], "group_wait": "0s",
                  "group_interval": "1s", "repeat_interval": "1h"},
        "receivers": [{"name": "test", "webhook_configs": [
            {"url": "http://127.0.0.1:%d/alerts" % PORTS["receiver"], "send_resolved": False}]}],
    }, indent=1))


def commands(directory, textfile, agent, tunnel=None):
    return {
        "tunnel": list(tunnel) if tunnel else None,
        "receiver": [sys.executable, os.path.join(HERE, "webhook_receiver.py"), "--listen",
                     "127.0.0.1:%d" % PORTS["receiver"], "--out", os.path.join(directory, "posts.jsonl")],
        "alertmanager": ["prometheus-alertmanager", "--config.file", os.path.join(directory, "alertmanager.yml"),
                         "--storage.path", os.path.join(directory, "alertmanager-data"),
                         "--web.listen-address", "127.0.0.1:%d" % PORTS["alertmanager"],
                         "--cluster.listen-address=", "--log.level=warn"],
        "node_exporter": ["prometheus-node-exporter", "--web.listen-address", "127.0.0.1:%d" % PORTS["node_exporter"],
                          "--collector.disable-defaults", "--collector.textfile",
                          "--collector.textfile.directory", textfile, "--log.level=warn"],
        "prometheus": ["prometheus", "--config.file", os.path.join(directory, "prometheus.yml"),
                       "--storage.tsdb.path", os.path.join(directory, "prometheus-data"),
                       "--storage.tsdb.retention.time=2h",
                       "--web.listen-address", "127.0.0.1:%d" % PORTS["prometheus"], "--log.level=warn"],
        "agent": [agent] if agent else None,
    }


def ready_url(name, scrape=None):
    return {"tunnel": "http://%s/metrics" % scrape, "receiver": None,
            "alertmanager": "http://127.0.0.1:%d/-/ready" % PORTS["alertmanager"],
            "node_exporter": "http://127.0.0.1:%d/metrics" % PORTS["node_exporter"],
            "prometheus": "http://127.0.0.1:%d/-/ready" % PORTS["prometheus"], "agent": None}[name]


def alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


def read_pid(directory, name):
    try:
        with open(os.path.join(directory, name + ".pid")) as handle:
            return int(handle.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def start(directory, name, argv, scrape=None):
    pid = read_pid(directory, name)
    if pid and alive(pid):
        return pid
    log = open(os.path.join(directory, name + ".log"), "ab")
    process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                               start_new_session=True, cwd=directory)
    write(os.path.join(directory, name + ".pid"), "%d\n" % process.pid)
    url = ready_url(name, scrape)
    deadline = time.monotonic() + 30
    while url and time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            urllib.request.urlopen(url, timeout=2).read()
            break
        except OSError:
            time.sleep(0.2)
    if process.poll() is not None:
        sys.exit("stack: %s exited with %s; see %s" % (name, process.returncode,
                                                       os.path.join(directory, name + ".log")))
    return process.pid


def stop(directory, name):
    pid = read_pid(directory, name)
    if pid is None:
        return None
    if alive(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    os.unlink(os.path.join(directory, name + ".pid"))
    return pid


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("action", choices=("start", "stop", "agent-start", "agent-stop", "status"))
    parser.add_argument("--dir", required=True)
    parser.add_argument("--rules", default="")
    parser.add_argument("--textfile", default="")
    parser.add_argument("--agent", default="")
    parser.add_argument("--scrape", default="", help="HOST:PORT of a node_exporter started elsewhere")
    argv = sys.argv[1:]
    # after --: the command that forwards --scrape (the tunnel)
    tunnel = argv[argv.index("--") + 1:] if "--" in argv else []
    args = parser.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    if tunnel and not args.scrape:
        parser.error("a tunnel command needs --scrape, the address it forwards")
    os.makedirs(args.dir, exist_ok=True)
    argvs = commands(args.dir, args.textfile, args.agent, tunnel)
    result = {}
    if args.action == "start":
        configs(args.dir, args.rules, args.scrape or None)
        names = ["receiver", "alertmanager"] + (["tunnel"] if tunnel else []) + \
            ([] if args.scrape else ["node_exporter"]) + ["prometheus"]
        for name in names:
            result[name] = start(args.dir, name, argvs[name], args.scrape)
    elif args.action == "agent-start":
        result["agent"] = start(args.dir, "agent", argvs["agent"])
    elif args.action == "agent-stop":
        result["agent"] = stop(args.dir, "agent")
    elif args.action == "stop":
        for name in ("agent", "prometheus", "tunnel", "node_exporter", "alertmanager", "receiver"):
            result[name] = stop(args.dir, name)
    else:
        for name in PORTS:
            pid = read_pid(args.dir, name)
            result[name] = pid if pid and alive(pid) else None
    print(json.dumps(result))


if __name__ == "__main__":
    main()
