#!/bin/bash
# -c fails in the ways seen: non-zero exit, output that is not JSON, too slow. -d leaves a mark if reached.
#   bad_config.sh exit|nojson|slow MARKFILE -c|-d
case "${*: -1}" in
-c)
    case "$1" in
    exit) echo '{"metrics": []}'; echo "cannot read /etc/myapp.conf: Permission denied" >&2; exit 2 ;;
    nojson) echo "Usage: bad_config.sh [options]"; exit 0 ;;
    slow) sleep 30; echo '{}' ;;
    esac
    ;;
-d)
    touch "$2"
    echo "M1 1"
    ;;
esac
