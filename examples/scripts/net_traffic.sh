#!/bin/bash
# Network traffic per interface and direction: one metric with two dimensions, from /proc/net/dev.
# The kernel's counters only grow, so the metric is a COUNTER with calctype Difference: shipctl emits the
# bytes moved since its previous run (nothing on the first run, nothing across a counter reset).
#   net_traffic.sh [-c|-d]
# shipctl config:
#   [[monitors]]
#   type = "script"
#   id = "traffic"
#   command = "/opt/shipctl/examples/scripts/net_traffic.sh"

case "$1" in
-c)
    cat <<'JSON'
{
    "maxruntime": 5000,
    "period": 60,
    "metrics": [{
        "id": 1,
        "name": "Network traffic",
        "description": "Bytes through a network interface since the previous run",
        "groups": "Networking/Traffic",
        "unit": "B",
        "datatype": "COUNTER",
        "calctype": "Difference",
        "dimensions": [{"id": 1, "name": "interface"}, {"id": 2, "name": "direction"}]
    }, {
        "id": 2,
        "name": "Network errors",
        "groups": "Networking/Errors",
        "unit": "",
        "datatype": "COUNTER",
        "calctype": "Difference",
        "dimensions": [{"id": 1, "name": "interface"}, {"id": 2, "name": "direction"}]
    }]
}
JSON
    ;;
-d)
    # Inter-|   Receive                                                |  Transmit
    #  face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs ...
    awk 'NR > 2 {
        sub(/^ +/, ""); split($0, p, ":"); iface = p[1]; split(p[2], f, " ")
        printf "M1 \"1:%s,2:in\" %s\nM1 \"1:%s,2:out\" %s\n", iface, f[1], iface, f[9]
        printf "M2 \"1:%s,2:in\" %s\nM2 \"1:%s,2:out\" %s\n", iface, f[3], iface, f[11]
    }' "${NET_DEV:-/proc/net/dev}"
    ;;
*)
    echo "usage: $0 -c|-d" >&2
    exit 64
    ;;
esac
