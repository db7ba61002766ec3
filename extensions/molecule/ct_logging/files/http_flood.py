"""HTTP requests to one address, each on a new connection, bounded in count and time; a JSON summary."""
import http.client
import json
import sys
import time

host, port, count, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
statuses = {}
started = time.monotonic()
sent = 0
while sent < count and time.monotonic() - started < seconds:
    connection = http.client.HTTPConnection(host, port, timeout=5)
    try:
        connection.request("GET", "/flood/%d" % sent, headers={"Host": "www.lab.enva.test", "Connection": "close"})
        status = str(connection.getresponse().status)
    except OSError as error:
        status = type(error).__name__
    finally:
        connection.close()
    statuses[status] = statuses.get(status, 0) + 1
    sent += 1
print(json.dumps({"sent": sent, "seconds": round(time.monotonic() - started, 1), "statuses": statuses}))
