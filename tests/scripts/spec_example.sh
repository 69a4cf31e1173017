#!/bin/bash
# The CoScale documentation's own example, verbatim: pretty-printed -c with the misspelled "GUAGE", "DOUBLE",
# calctype Difference, dimension ids shared across metrics, and the documented -d lines.
#   spec_example.sh VALUEFILE -c|-d   (metric 2's value is read from VALUEFILE when it exists)
mode="${*: -1}"
if [ "$mode" = "-c" ]; then
cat <<'JSON'
{
    "maxruntime": 5000,
    "period": 60,
    "metrics": [{
        "id": 1,
        "name": "Incoming traffic on interface",
        "description": "Incoming traffic in bytes on network interface",
        "groups": "Networking/Traffic",
        "unit": "b/s",
        "tags": "NETWORK",
        "datatype": "GUAGE",
        "calctype": "Instant",
        "dimensions": [
            {"id": 1, "name":"interface"}
        ]
    }, {
        "id": 2,
        "name": "Second metric",
        "description": "Description for second metric",
        "groups": "MyMetrics/Category2",
        "unit": "",
        "tags": "MYTAG1,MYTAG2",
        "datatype": "DOUBLE",
        "calctype": "Difference",
        "dimensions": [
            {"id": 2, "name":"dimension2"},
            {"id": 3, "name":"dimension3"}
        ]
    }],
    "events": [{
        "id": 1,
        "name": "My custom event",
        "description": "Description for my custom event",
        "attributeDescriptions": [
            {"name":"Exit code", "type":"integer", "unit":""}
        ]
    }]
}
JSON
exit 0
fi
value=12345.6
[ $# -gt 1 ] && [ -f "$1" ] && value=$(cat "$1")
echo 'M1 "1:eth0" 8.5'
echo "M2 \"2:dimension2_value1,3:dimension3_value1\" $value"
echo 'E1 -300 0 "The event triggered" "{"Exit code":137}" S'
