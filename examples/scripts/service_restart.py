#!/usr/bin/env python3
"""Service restart check: an event each time a service's main process changed since the previous run.

    service_restart.py NAME PIDFILE [STATEFILE] -c|-d

Reads the service's PID from PIDFILE (as written by most daemons, or `systemctl show -p MainPID --value NAME
> PIDFILE` from a timer) and remembers it in STATEFILE (default /var/tmp/service_restart.NAME.json). When the
PID differs from the remembered one, prints an event whose start is the new process's start time (absolute
Unix seconds) and whose end is now (0). Also prints whether the service runs (1) or not (0).

shipctl config:
    [[monitors]]
    type = "script"
    id = "nginx_restarts"
    command = "python3 /opt/shipctl/examples/scripts/service_restart.py nginx /run/nginx.pid"
"""

from __future__ import annotations

import json
import os
import sys
import time

CONFIG = {
    "period": 60,
    "maxruntime": 2000,
    "metrics": [
        {
            "id": 1,
            "name": "Service running",
            "groups": "Services",
            "unit": "",
            "datatype": "GAUGE",
            "calctype": "Instant",
            "dimensions": [{"id": 1, "name": "service"}],
        }
    ],
    "events": [
        {
            "id": 1,
            "name": "Service restarted",
            "description": "The service's main process is not the one seen by the previous run",
            "attributeDescriptions": [
                {"name": "Service", "type": "string", "unit": ""},
                {"name": "Old PID", "type": "integer", "unit": ""},
                {"name": "New PID", "type": "integer", "unit": ""},
            ],
        }
    ],
}


def read_pid(pidfile: str) -> int | None:
    try:
        with open(pidfile) as fh:
            pid = int(fh.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if pid > 0 and os.path.exists(f"/proc/{pid}") else None


def started_at(pid: int) -> int:
    """The process's start time in Unix seconds (field 22 of /proc/PID/stat is in clock ticks since boot)."""
    with open(f"/proc/{pid}/stat") as fh:
        ticks = int(fh.read().rsplit(")", 1)[1].split()[19])
    with open("/proc/uptime") as fh:
        uptime = float(fh.read().split()[0])
    return int(time.time() - uptime + ticks / os.sysconf("SC_CLK_TCK"))


def main(argv: list[str]) -> int:
    if argv[-1:] == ["-c"]:
        print(json.dumps(CONFIG, indent=4))
        return 0
    if len(argv) < 3 or argv[-1] != "-d":
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 64
    name, pidfile = argv[0], argv[1]
    statefile = argv[2] if len(argv) > 3 else f"/var/tmp/service_restart.{name}.json"
    pid = read_pid(pidfile)
    print(f'M1 "1:{name}" {1 if pid else 0}')
    try:
        with open(statefile) as fh:
            old = json.load(fh).get("pid")
    except (OSError, ValueError):
        old = None
    if pid and old and pid != old:
        attrs = json.dumps({"Service": name, "Old PID": old, "New PID": pid})
        # The attributes go between quotes unescaped: the protocol reads them greedily.
        print(f'E1 {started_at(pid)} 0 "{name} restarted (pid {old} -> {pid})" "{attrs}" S')
    if pid:
        tmp = f"{statefile}.tmp"
        with open(tmp, "w") as fh:
            json.dump({"pid": pid}, fh)
        os.replace(tmp, statefile)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
