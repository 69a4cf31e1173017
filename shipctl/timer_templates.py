"""The text of the systemd units that run shipctl on a schedule: the one template ``shipctl timers install``
fills in. ``timers/shipctl.service`` and ``timers/shipctl.timer`` are its default output (a test keeps them
identical), so edit here, then run ``shipctl timers install --print`` to regenerate them.

Placeholders are ``{{name}}``; ``shipctl.commands.timers.fill`` refuses a template with one left unfilled.
"""

from __future__ import annotations

SERVICE = """\
# {{generated}}
# One pass of `shipctl run` (new log lines, due monitors, upload), started by shipctl.timer every {{every}}.
# Sandboxed: `systemd-analyze security shipctl.service` (systemd 252) rates it 1.8 OK; 9.6 UNSAFE as root.
# Each setting says why no monitor or sink needs what it takes away. Change one in a drop-in
# (`systemctl edit shipctl.service`), not here: `shipctl timers install` rewrites this file.

[Unit]
Description=shipctl: ship new log lines and due metrics, then upload (one pass, exits)
Documentation=file:///usr/share/doc/shipctl/README.md
After=network-online.target
Wants=network-online.target

[Service]
Type=oneshot
ExecStart={{exec_start}}
# shipctl takes its own lock: a run started by hand while the timer's run holds it exits 75 ("busy").
SuccessExitStatus=75
# The run stops itself at its budget ({{budget}}), so this only fires on a hang (a stuck NFS
# read, a wedged library call). It is the interval plus 15 s: a hung run costs one tick, not every later one
# (systemd never starts a second copy of a oneshot still running). SIGTERM ends shipctl at once; what it had
# not committed is read again next run (offsets and batches commit together).
TimeoutStartSec={{timeout}}
TimeoutStopSec=10s

# A dedicated system user (the deb/rpm packages create it; by hand:
# useradd --system --home-dir /var/lib/shipctl --shell /usr/sbin/nologin --groups adm {{user}}).
# Group adm reads /var/log on Debian/Ubuntu (syslog, auth.log are root:adm 0640); elsewhere grant read
# access to what you ship (e.g. setfacl -m g:adm:r). The primary group is the user's own.
User={{user}}
SupplementaryGroups=adm
# /var/lib/shipctl, created 0700 and owned by the user before each start (an existing root-owned one from an
# older unit is handed over): the state file, its locks, and shipctl.log beside it. XDG_STATE_HOME makes it
# shipctl's default state directory for a non-root user too (otherwise ~/.local/state/shipctl).
StateDirectory=shipctl
StateDirectoryMode=0700
Environment=XDG_STATE_HOME=%S
# /var/log/shipctl, writable by the service: for agent.log_file = "/var/log/shipctl/shipctl.log".
LogsDirectory=shipctl
LogsDirectoryMode=0700
# /etc/shipctl: created if missing, root-owned and read-only for the service.
ConfigurationDirectory=shipctl
# Secrets (SCALYR_API_KEY=...): systemd reads this file as root before switching user, so it stays 0600 root.
EnvironmentFile=-/etc/default/shipctl
UMask=0077
Nice=10
IOSchedulingClass=best-effort
IOSchedulingPriority=7

# --- Sandbox ---
# The filesystem is read-only but for the state and logs directories above: logs are only ever read. A file
# sink or agent.state elsewhere needs ReadWritePaths= in a drop-in (`shipctl timers install` warns).
ProtectSystem=strict
# read-only, not yes: logs under /home stay readable, and the disk metrics of linux_system see the real /home
# file system (with yes, statvfs would report the empty mount that hides it).
ProtectHome=read-only
# A private /tmp and /var/tmp, emptied after every run: logs kept in the host's /tmp are not visible, and a
# script monitor keeps files between runs in /var/lib/shipctl, not /tmp.
PrivateTmp=yes
# /dev holds only null, zero, random, tty and the like: no monitor reads a device node (disk and network
# figures come from /proc and statvfs).
PrivateDevices=yes
# Mounts made on the host still appear in the service; none made inside can leak out.
PrivateMounts=yes
# No capabilities, and none to regain: a setuid or file-capability program (sudo, an old setuid ping) run by
# a shell or script monitor gains nothing; setuid/setgid files cannot be created.
CapabilityBoundingSet=
AmbientCapabilities=
NoNewPrivileges=yes
RestrictSUIDSGID=yes
# /proc/sys and /sys stay readable (linux_system reads them) but not writable; no module loading, no kernel
# log ring (/dev/kmsg: ship /var/log/kern.log instead), no clock or hostname changes, cgroups read-only.
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
# ProtectProc= and ProcSubset= are left at their defaults on purpose: linux_process finds and reads
# /proc/<pid> of processes owned by other users (hidepid would hide them) and linux_system reads /proc/stat,
# /proc/meminfo, /proc/net/dev and /proc/mounts (subset=pid would hide them). Per-process io and fd counts of
# another user's process need CAP_SYS_PTRACE, which this unit does not grant: the monitor says so and reports
# the rest.
# PrivateUsers= is left off: in a user namespace every other user and group, adm included, shows as nobody,
# so the ownership of logs and processes that shipctl checks and reports would be wrong.
# Sockets: AF_INET/AF_INET6 for every sink (HTTP, Kafka, syslog over TCP/TLS, OTLP) and the url monitor,
# AF_UNIX for local sockets (name lookups through nscd or systemd-resolved, a MySQL socket). No AF_NETLINK:
# a shell monitor running `ip` or `ss` fails (read /proc/net/* instead, or add
# RestrictAddressFamilies=AF_NETLINK in a drop-in). IPAddressDeny= is not set: sinks may live anywhere; an
# allow list of your receivers fits a drop-in (IPAddressDeny=any plus IPAddressAllow=...).
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
RestrictNamespaces=yes
RestrictRealtime=yes
LockPersonality=yes
RemoveIPC=yes
# The system calls of an ordinary service; a call outside it fails with EPERM (the monitor reports an error)
# instead of killing the process.
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallErrorNumber=EPERM
# MemoryDenyWriteExecute= is left off: a script monitor may run a JIT (Java, Node.js, LuaJIT, PCRE2), which
# needs writable executable memory.
"""

TIMER = """\
# {{generated}}
# Starts shipctl.service every {{every}}{{tradeoff}}

[Unit]
Description=Run shipctl every {{every}}

[Timer]
OnCalendar={{on_calendar}}
# Spread the fleet: each host fires at its own offset within the interval instead of all at :00.
# FixedRandomDelay= derives the offset from the machine id and the unit name, so a host keeps it across
# reboots and its runs stay evenly spaced instead of re-drawn every tick.
RandomizedDelaySec={{span}}
FixedRandomDelay=true
# Fire within 1 s of the offset: the default AccuracySec=1min would let systemd coalesce wake-ups and bunch
# the hosts together again.
AccuracySec=1s
# A run missed while the machine was off happens at boot (offsets mean nothing is lost either way).
Persistent=true

[Install]
WantedBy=timers.target
"""

# Appended to the timer's first comment line for intervals under a minute (sub-minute latency has a cost).
SUBMINUTE_TRADEOFF = """\
: lower latency than the default (every minute), at a price.
# Each run is a new process: about 0.2 s of CPU and 27 MB while it runs, even with nothing to do, so
# {{runs_per_minute}} runs a minute cost ~{{cpu_percent}}% of a core; systemd logs 2-3 journal lines per run;
# uploads are smaller and more frequent (more requests, less compression); each run's budget shrinks to
# {{budget}}, so a backlog is caught up in smaller slices. Monitors keep their own sample_interval.\
"""
