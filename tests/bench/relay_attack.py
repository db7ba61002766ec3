"""The relay's TCP side under attack, measured: memory, a trickle, upstream connections (issue 17).

Each phase starts a fresh relay (pinned like the throughput runs) in front of
the benchmark's unbound, runs a bounded attack from loopback addresses, and
records what the issue asked for: peak RSS against the unit's 64 MiB with 250
clients that never read, legitimate TCP answered during a trickle, upstream
TCP connections against the cap. Every socket is closed and every process
stopped by PID at the end of its phase.
"""

from __future__ import annotations

import select
import socket
import time
import urllib.request

import bootstrap  # noqa: F401  pylint: disable=unused-import  # tests/support on sys.path
from support.dns_wire import query_wire, tcp_frame
from support.procfs import status_kib, tcp_send_queue_bytes

MIB = 1024.0
BIG = "big"  # a name whose answer carries BIG_RECORDS A records (about 3 KiB)
BIG_RECORDS = 200


def unbound_big_data(zone):
    """unbound.conf lines for the big answer."""
    return "".join('  local-data: "%s.%s. 3600 IN A 127.2.%d.%d"\n' % (BIG, zone, i >> 8, i & 255) for i in range(BIG_RECORDS))


def query(name, qid):
    return tcp_frame(query_wire(name, qid))


def connect(port, source, rcvbuf=None, timeout=5.0):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(timeout)
    sock.bind((source, 0))
    try:
        sock.connect(("127.0.0.1", port))
    except OSError:
        sock.close()
        return None
    return sock


def read_answer(sock):
    """One framed answer's ID, or None (for one answer per connection: extra bytes are dropped)."""
    frames = read_frames(sock, 1)
    return frames[0] if frames else None


def read_frames(sock, count):
    """The IDs of up to ``count`` framed answers read from ``sock`` (fewer at EOF, error or timeout)."""
    data = b""
    ids = []
    try:
        while len(ids) < count:
            while len(data) >= 2 and len(data) >= 2 + int.from_bytes(data[:2], "big") and len(ids) < count:
                size = int.from_bytes(data[:2], "big")
                ids.append(int.from_bytes(data[2:4], "big"))
                data = data[2 + size:]
            if len(ids) >= count:
                break
            chunk = sock.recv(65535)
            if not chunk:
                break
            data += chunk
    except OSError:
        pass
    return ids


def hwm_mib(pid):
    return status_kib(pid, "VmHWM", default=0) / MIB


def queued_mib(port):
    """MiB the kernel holds in the send queues of the relay's established TCP connections on ``port`` (/proc/net/tcp)."""
    return tcp_send_queue_bytes(port) / MIB / MIB


def non_readers(port, zone, sources, clients=250, queries=64):
    """``clients`` connections (spread over ``sources``) each sending ``queries`` big queries and never reading."""
    socks = []
    payload = b"".join(query("%s.%s" % (BIG, zone), i) for i in range(queries))
    for index in range(clients):
        sock = connect(port, sources[index % len(sources)], rcvbuf=4096)
        if sock is None:
            continue
        try:
            sock.sendall(payload)
        except OSError:
            pass
        socks.append(sock)
    return socks


def trickle(port, zone, seconds=20, attackers=400, legit_queries=6):
    """``attackers`` connections from 8 addresses sending about 50 bytes/s in all; a legitimate client asks meanwhile."""
    socks = [s for s in (connect(port, "127.0.0.%d" % (2 + i % 8)) for i in range(attackers)) if s is not None]
    frame = query("slow.%s" % zone, 1)
    answered = 0
    started = time.monotonic()
    step = 0
    asked = 0
    while time.monotonic() - started < seconds and asked < legit_queries:
        for sock in list(socks)[step % 8::8]:  # 50 of the 400 get one byte every 0.1 s... about 500 bytes/s in all
            try:
                sock.send(frame[step % len(frame):step % len(frame) + 1])
            except OSError:
                socks.remove(sock)
                sock.close()
        step += 1
        if step % 30 == 0:  # every ~3 s a legitimate client asks once, with a fresh connection
            asked += 1
            legit = connect(port, "127.0.0.1", timeout=3.0)
            if legit is not None:
                legit.sendall(query("host1.%s" % zone, 0x1E61))
                if select.select([legit], [], [], 3.0)[0] and read_answer(legit) == 0x1E61:
                    answered += 1
                legit.close()
        time.sleep(0.1)
    for sock in socks:
        sock.close()
    return {"attackers": attackers, "asked": asked, "answered": answered}


def pipelined(port, zone, clients=20, per_client=64):
    """``clients`` connections pipelining ``per_client`` queries each; how many got all their answers."""
    socks = [connect(port, "127.0.0.%d" % (20 + i % 4), timeout=10.0) for i in range(clients)]
    answers = 0
    for number, sock in enumerate(socks):
        if sock is not None:
            sock.sendall(b"".join(query("host%d.%s" % (i % 100, zone), number * per_client + i) for i in range(per_client)))
    for sock in socks:
        if sock is None:
            continue
        answers += len(read_frames(sock, per_client))
        sock.close()
    return {"queries": clients * per_client, "answers": answers}


def metrics(port):
    """{'name{labels}': value} from the relay's Prometheus endpoint."""
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=10) as response:
        text = response.read().decode()
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _space, value = line.rpartition(" ")
            values[key] = float(value)
    return values


def non_reader_phase(peer, zone, addresses, settle, where, log):
    """250 non-reading clients from ``addresses`` loopback addresses; after ``settle`` s the relay's peak RSS and send queues."""
    socks = non_readers(peer.port, zone, ["127.0.0.%d" % (2 + i) for i in range(addresses)])
    queued = [queued_mib(peer.port)]
    for _sample in range(int(settle / 0.2)):  # the kernel's send queues, at their largest
        time.sleep(0.2)
        queued.append(queued_mib(peer.port))
    result = {"clients": len(socks), "hwm_mib": hwm_mib(peer.proc.pid), "queued_mib": max(queued)}
    for sock in socks:
        sock.close()
    log("bench: 250 non-reading TCP clients %s the allow list: peak RSS %.1f MiB, %.1f MiB in send queues" % (
        where, result["hwm_mib"], result["queued_mib"]))
    return result


def run(make_relay, zone, metrics_port, log=print):
    """The three attacks, each on a fresh relay from ``make_relay(extra_args) -> Peer`` (started; stopped here)."""
    figures = {}
    peer = make_relay(["--allow", "127.0.0.1/32"])
    try:
        figures["refused_non_readers"] = non_reader_phase(peer, zone, 8, 3, "outside", log)
    finally:
        peer.stop()
    peer = make_relay(["--allow", "127.0.0.0/8"])
    try:
        figures["allowed_non_readers"] = non_reader_phase(peer, zone, 16, 5, "inside", log)
        figures["trickle"] = trickle(peer.port, zone)
        log("bench: trickle from %(attackers)d connections: legitimate TCP answered %(answered)d of %(asked)d" % figures["trickle"])
    finally:
        peer.stop()
    peer = make_relay(["--allow", "127.0.0.0/8", "--metrics", str(metrics_port)])
    try:
        result = pipelined(peer.port, zone)
        result["upstream_connections"] = int(sum(v for k, v in metrics(metrics_port).items()
                                                 if k.startswith("enva_dns_relay_upstream_tcp_opened_total")))
        figures["pipelined"] = result
        log("bench: 20 x 64 pipelined TCP queries: %(answers)d answered over %(upstream_connections)d upstream connections" % result)
    finally:
        peer.stop()
    return figures
