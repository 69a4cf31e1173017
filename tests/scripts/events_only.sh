#!/bin/bash
# An events-only script (no "metrics" key, no period or maxruntime), with every E-line shape seen: relative
# (0, negative) and absolute times, attributes as raw JSON, "{ }", escaped quotes and plain text, quotes inside
# the message, a trailing A, and old lines without the trailing S|A.
if [ "$1" = "-c" ]; then
    echo '{"events": [{"id": 1, "name": "Backup finished"}, {"id": 2, "name": "Deploy"}]}'
    exit 0
fi
echo 'E1 -300 0 "The event triggered" "{"Exit code":137}" S'
echo 'E1 1458345600 1458345660 "absolute times" "{ }" A'
echo 'E2 0 0 "no scope given" "{"version":"1.2.3","hosts":["a","b"]}"'
echo 'E2 -60 -30 "escaped attributes" "{\"Exit code\":1}"'
echo 'E2 0 0 "deploy of "api" done" "{"by":"ci"}" S'
echo 'E2 0 0 "plain text attributes" "not json at all" S'
echo 'E2 soon 0 "bad time" "{}" S'
