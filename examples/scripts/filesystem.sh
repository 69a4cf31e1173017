#!/bin/bash
# Filesystem check for shipctl's script monitor (CoScale generic-script protocol).
#   filesystem.sh [MOUNT...] -c   print the metric definitions as JSON
#   filesystem.sh [MOUNT...] -d   print one M line per metric and mount
# With no MOUNT, every mounted filesystem df knows about (pseudo filesystems left out).
# shipctl config:
#   [[monitors]]
#   type = "script"
#   id = "filesystems"
#   command = "/opt/shipctl/examples/scripts/filesystem.sh / /var"

mode="${*: -1}"
mounts=("${@:1:$#-1}")

if [ "$mode" = "-c" ]; then
    cat <<'JSON'
{
    "period": 60,
    "maxruntime": 10000,
    "metrics": [
        {
            "id": 1,
            "name": "Filesystem used",
            "description": "Share of the filesystem's blocks in use",
            "groups": "Filesystem/Usage",
            "unit": "%",
            "datatype": "DOUBLE",
            "calctype": "Instant",
            "dimensions": [{"id": 1, "name": "mount"}]
        },
        {
            "id": 2,
            "name": "Filesystem free",
            "description": "Bytes available to unprivileged users",
            "groups": "Filesystem/Usage",
            "unit": "B",
            "datatype": "GAUGE",
            "calctype": "Instant",
            "dimensions": [{"id": 1, "name": "mount"}]
        },
        {
            "id": 3,
            "name": "Filesystem inodes used",
            "groups": "Filesystem/Inodes",
            "unit": "%",
            "datatype": "DOUBLE",
            "calctype": "Instant",
            "dimensions": [{"id": 1, "name": "mount"}]
        }
    ]
}
JSON
    exit 0
fi

if [ "$mode" != "-d" ]; then
    echo "usage: $0 [MOUNT...] -c|-d" >&2
    exit 64
fi

exclude='^(tmpfs|devtmpfs|overlay|squashfs|proc|sysfs|cgroup2?|none|udev|shm)$'
# -P: one line per filesystem whatever the device name's length; -k: 1024-byte blocks.
df -P -k "${mounts[@]}" 2>/dev/null | awk -v ex="$exclude" 'NR > 1 && $1 !~ ex && $2 > 0 {
    mount = $6; for (i = 7; i <= NF; i++) mount = mount " " $i   # a mount point may hold spaces
    printf "M1 \"1:%s\" %.2f\n", mount, 100 * $3 / ($3 + $4)
    printf "M2 \"1:%s\" %.0f\n", mount, $4 * 1024
}'
df -P -i "${mounts[@]}" 2>/dev/null | awk -v ex="$exclude" 'NR > 1 && $1 !~ ex && $2 > 0 {
    mount = $6; for (i = 7; i <= NF; i++) mount = mount " " $i
    printf "M3 \"1:%s\" %.2f\n", mount, 100 * $3 / $2
}'
exit 0
