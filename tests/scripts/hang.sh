#!/bin/bash
# Declares maxruntime 1000 ms, prints one line, then hangs with a child in the background.
#   hang.sh PIDFILE -c|-d
if [ "${*: -1}" = "-c" ]; then
    echo '{"maxruntime": 1000, "metrics": [{"id": 1, "name": "Before hanging", "datatype": "GAUGE"}]}'
    exit 0
fi
echo "M1 1"
sleep 300 &
echo $! > "$1"
printf 'M1 2'  # an unfinished line when it is killed
wait
