#!/usr/bin/env python3
# What real scripts print, all at once: pretty -c JSON without period/maxruntime/tags, every datatype spelling
# seen (and an unknown one), an undocumented calctype; -d lines in random order with CRLF endings, metrics
# without a dimension field or with an empty one, values with leading zeros, empty, b'' from a naive Python 3
# port, nan and inf, unescaped dimension values, and ids the config never declared.
import json
import random
import sys

if sys.argv[1:] == ["-c"]:
    print(
        json.dumps(
            {
                "metrics": [
                    {"id": 1, "name": "Plain", "datatype": "DOUBLE", "calctype": "Instant"},
                    {"id": 2, "name": "Empty dims", "datatype": "GAUGE"},
                    {
                        "id": 3,
                        "name": "Misspelled",
                        "datatype": "GUAGE",
                        "calctype": "Instant",
                        "unit": "ms",
                        "dimensions": [{"id": 1, "name": "service"}, {"id": 2, "name": "host"}],
                    },
                    {"id": 4, "name": "Lines", "datatype": "COUNT", "calctype": "Instant"},
                    {"id": 5, "name": "Odd type", "datatype": "FLOAT", "calctype": "Average"},
                ],
            },
            indent=4,
        )
    )
    sys.exit(0)
if sys.argv[1:] != ["-d"]:
    # Exactly one flag, or this script would have treated "-d extra" as data mode with junk.
    print(f"unexpected arguments {sys.argv[1:]}", file=sys.stderr)
    sys.exit(3)

lines = [
    "M1 100",
    'M2 "" 7',
    'M3 "1:system-getty.slice\\x2dfoo@tty1.service,2:web" 01',
    'M3 "1:a,b:c,2:db:5432" 2.5',
    "M4 b'42'",
    "M4 b''",
    "M1 ",
    "M1 nan",
    "M1 inf",
    "M1 12,5",
    "M5 3",
    "M99 1",
    'E1 0 0 "undeclared event" "{ }" S',
]
random.shuffle(lines)  # a threaded script's lines arrive in any order
sys.stdout.write("".join(line + "\r\n" for line in lines))
