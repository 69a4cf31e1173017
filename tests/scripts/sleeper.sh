#!/bin/bash
# Records when its data run started and ended (ns), sleeping in between, so a test can see runs overlap.
#   sleeper.sh LOGFILE -c|-d
if [ "${*: -1}" = "-c" ]; then
    echo '{"metrics": [{"id": 1, "name": "Slept", "datatype": "GAUGE"}]}'
    exit 0
fi
echo "start $(date +%s%N)" >> "$1"
sleep 1
echo "end $(date +%s%N)" >> "$1"
echo "M1 1"
