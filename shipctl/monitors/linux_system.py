"""The ``linux_system_metrics`` monitor: host metrics from /proc and statvfs, under the Scalyr agent's names.

Read directly (no ``df``/``nproc`` subprocesses, no long-lived collectors): one run reads a dozen small
files and calls statvfs once per mount, a few milliseconds. A family whose file is missing or unreadable
(a restricted container) is skipped with a warning; the others are still reported.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import os
import re
import types
from collections.abc import Callable, Mapping
from typing import Any

from shipctl.monitors.base import COUNTER, GAUGE, MonitorOutput, Sample
from shipctl.records import record
from shipctl.schema import field

PROC = "/proc"
CPU_TYPES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal", "guest")
VMSTAT = ("pgfault", "pgmajfault", "pswpin", "pswpout", "pgpgin", "pgpgout")
NET_FIELDS = ("bytes", "packets", "errs", "dropped")  # the first four of each direction in /proc/net/dev
DISK_FIELDS = (
    "read_requests",
    "read_merged",
    "read_sectors",
    "msec_read",
    "write_requests",
    "write_merged",
    "write_sectors",
    "msec_write",
    "ios_in_progress",
    "msec_total",
    "msec_weighted_total",
)
PART_FIELDS = ("read_issued", "read_sectors", "write_issued", "write_sectors")  # pre-2.6.25 partition lines
# File systems df does not list (no blocks of their own) plus the ones the Scalyr agent skips.
PSEUDO_FS = frozenset(
    "autofs binfmt_misc bpf cgroup cgroup2 configfs debugfs devpts devtmpfs efivarfs fusectl hugetlbfs"  # noqa: SIM905
    " mqueue nsfs proc pstore rpc_pipefs securityfs selinuxfs sysfs tracefs".split()
)
REMOTE_FS = frozenset(
    "9p afs auristorfs ceph cifs coda davfs gfs gfs2 glusterfs lustre ncpfs nfs nfs4 ocfs2 smb3 smbfs sshfs".split()  # noqa: SIM905
)


def _check_suffix(value: str) -> str | None:
    try:
        re.compile(value)
    except re.error as exc:
        return f"expected a regular expression ({exc})"
    return None


@record(frozen=True)
class SystemOptions:
    """Options of the ``linux_system_metrics`` monitor."""

    # Scalyr's default is "eth" only; systemd's predictable names (ens3, enp0s3, eno1, wlp2s0) are the
    # common case today, so they are reported by default too.
    network_interface_prefixes: tuple[str, ...] = field(
        ("eth", "en", "wl", "bond"), doc="interfaces reported: prefix + suffix"
    )
    network_interface_suffix: str = field("[0-9A-Za-z]+", check=_check_suffix, doc="regex after a prefix")
    local_disks_only: bool = field(True, doc="df metrics for local file systems only (no NFS, CIFS, ...)")
    ignore_mounts: tuple[str, ...] = field(
        ("/sys/*", "/dev*", "/run*", "/var/lib/docker/*", "/snap/*"), doc="glob patterns of mount points to skip"
    )
    tags: Mapping[str, Any] = dataclasses.field(default_factory=lambda: types.MappingProxyType({}))  # on every event


def _num(text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        return float(text)


class SystemMetrics:
    module = "linux_system_metrics"

    def __init__(self, options: SystemOptions, proc: str = PROC) -> None:
        self.options = options
        self.proc = proc
        alternatives = "|".join(re.escape(p) for p in options.network_interface_prefixes) or "(?!)"
        self.iface = re.compile(f"(?:{alternatives})(?:{options.network_interface_suffix})")
        self.ignore = [re.compile(fnmatch.translate(p)) for p in options.ignore_mounts]

    def sample(self) -> MonitorOutput:
        out = MonitorOutput(attrs=dict(self.options.tags or {}))
        families: list[tuple[str, Callable[[list[Sample], str], None]]] = [
            ("stat", self._stat),
            ("loadavg", self._loadavg),
            ("meminfo", self._meminfo),
            ("vmstat", self._vmstat),
            ("uptime", self._uptime),
            ("net/dev", self._netdev),
            ("diskstats", self._diskstats),
            ("net/sockstat", self._sockstat),
        ]
        for name, reader in families:
            path = f"{self.proc}/{name}"
            try:
                with open(path, encoding="ascii", errors="replace") as fh:
                    text = fh.read()
                reader(out.samples, text)
            except OSError as exc:
                out.warnings.append(f"cannot read {path}: {exc.strerror or exc}")
            except (ValueError, IndexError) as exc:
                out.warnings.append(f"cannot parse {path}: {exc}")
        try:
            self._df(out.samples, out.warnings)
        except OSError as exc:
            out.warnings.append(f"cannot list mounts: {exc.strerror or exc}")
        if not out.samples:
            out.error = "no system metric could be read: " + "; ".join(out.warnings)
        return out

    # Each reader appends the samples of one /proc file.
    def _stat(self, s: list[Sample], text: str) -> None:
        cpus = 0
        for line in text.splitlines():
            name, _, rest = line.partition(" ")
            if name == "cpu":
                for kind, value in zip(CPU_TYPES, rest.split(), strict=False):
                    s.append(Sample("proc.stat.cpu", int(value), COUNTER, {"type": kind}))
            elif name.startswith("cpu"):
                cpus += 1
            elif name == "intr":
                s.append(Sample("proc.stat.intr", int(rest.split(None, 1)[0]), COUNTER))
            elif name in ("ctxt", "processes"):
                s.append(Sample(f"proc.stat.{name}", int(rest), COUNTER))
            elif name == "procs_blocked":
                s.append(Sample("proc.stat.procs_blocked", int(rest), GAUGE))
        if cpus:
            s.append(Sample("sys.cpu.count", cpus, GAUGE))

    def _loadavg(self, s: list[Sample], text: str) -> None:
        one, five, fifteen, threads, _last = text.split()
        runnable, total = threads.split("/")
        for name, value in (("1min", one), ("5min", five), ("15min", fifteen), ("runnable", runnable)):
            s.append(Sample(f"proc.loadavg.{name}", _num(value), GAUGE))
        s.append(Sample("proc.loadavg.total_threads", int(total), GAUGE))

    def _meminfo(self, s: list[Sample], text: str) -> None:
        # Values stay in kB as the kernel gives them (as Scalyr reports them); names like "Active(anon)"
        # are not plain words and are skipped, as Scalyr does.
        for line in text.splitlines():
            name, _, rest = line.partition(":")
            if name.isidentifier():
                s.append(Sample(f"proc.meminfo.{name.lower()}", int(rest.split()[0]), GAUGE))

    def _vmstat(self, s: list[Sample], text: str) -> None:
        for line in text.splitlines():
            name, _, value = line.partition(" ")
            if name in VMSTAT:
                s.append(_counter(f"proc.vmstat.{name}", int(value)))

    def _uptime(self, s: list[Sample], text: str) -> None:
        total, idle = text.split()[:2]
        s.append(_counter("proc.uptime.total", float(total)))
        s.append(_counter("proc.uptime.now", float(idle)))

    def _netdev(self, s: list[Sample], text: str) -> None:
        for line in text.splitlines()[2:]:
            iface, _, rest = line.partition(":")
            iface = iface.strip()
            if not self.iface.fullmatch(iface):
                continue
            values = rest.split()
            for i, name in enumerate(NET_FIELDS):
                s.append(_counter(f"proc.net.{name}", int(values[i]), {"iface": iface, "direction": "in"}))
                s.append(_counter(f"proc.net.{name}", int(values[i + 8]), {"iface": iface, "direction": "out"}))

    def _diskstats(self, s: list[Sample], text: str) -> None:
        try:
            whole = set(os.listdir("/sys/block"))
        except OSError:
            whole = None
        for line in text.splitlines():
            values = line.split()
            if len(values) < 7 or values[3] == "0":
                continue  # never read from (loop, ram, empty drives), as the Scalyr agent skips them
            dev = values[2]
            is_disk = dev in whole if whole is not None else int(values[1]) % 16 == 0 and int(values[0]) > 1
            prefix = "iostat.disk." if is_disk else "iostat.part."
            dims = {"dev": dev.replace("/", "_")}
            fields = DISK_FIELDS if len(values) >= 14 else PART_FIELDS
            for name, value in zip(fields, values[3:], strict=False):
                if name == "ios_in_progress":
                    s.append(Sample(prefix + name, int(value), GAUGE, dims))
                else:
                    s.append(_counter(prefix + name, int(value), dims))

    def _sockstat(self, s: list[Sample], text: str) -> None:
        t: dict[str, dict[str, int]] = {}
        for line in text.splitlines():
            proto, _, rest = line.partition(":")
            words = rest.split()
            t[proto] = {words[i]: int(words[i + 1]) for i in range(0, len(words) - 1, 2)}
        page = os.sysconf("SC_PAGE_SIZE")
        tcp, udp = t.get("TCP", {}), t.get("UDP", {})
        frag = t.get("FRAG", {})

        def add(name: str, value: int | None, kind: str | None = None) -> None:
            if value is not None:
                s.append(Sample(f"net.sockstat.{name}", value, GAUGE, {"type": kind} if kind else {}))

        add("num_sockets", tcp.get("alloc"), "tcp")
        add("num_timewait", tcp.get("tw"))
        for proto in ("TCP", "UDP", "UDPLITE", "RAW"):
            add("sockets_inuse", t.get(proto, {}).get("inuse"), proto.lower())
        add("num_orphans", tcp.get("orphan"))
        add("memory", tcp["mem"] * page if "mem" in tcp else None, "tcp")
        add("memory", udp["mem"] * page if "mem" in udp else None, "udp")
        add("memory", frag.get("memory"), "ipfrag")
        add("ipfragqueues", frag.get("inuse"))

    def _df(self, s: list[Sample], warnings: list[str]) -> None:
        mounts: dict[str, tuple[str, str]] = {}
        with open(f"{self.proc}/self/mounts", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                parts = line.split()
                if len(parts) < 3:
                    continue
                device, mount, fstype = parts[0], _unescape(parts[1]), parts[2]
                mounts.pop(mount, None)  # the last mount on a path is the one statvfs sees
                mounts[mount] = (device, fstype)
        for mount, (device, fstype) in mounts.items():
            if fstype in PSEUDO_FS or mount.startswith("/lib/") or any(p.match(mount) for p in self.ignore):
                continue
            if self.options.local_disks_only and _is_remote(device, fstype):
                continue
            try:
                st = os.statvfs(mount)
            except OSError as exc:
                warnings.append(f"cannot statvfs {mount}: {exc.strerror or exc}")
                continue
            if st.f_blocks == 0:
                continue  # a file system without blocks of its own (df leaves these out too)
            dims = {"mount": mount, "fstype": fstype}
            k = st.f_frsize / 1024
            s.append(Sample("df.1kblocks.total", int(st.f_blocks * k), GAUGE, dims))
            s.append(Sample("df.1kblocks.used", int((st.f_blocks - st.f_bfree) * k), GAUGE, dims))
            s.append(Sample("df.1kblocks.free", int(st.f_bavail * k), GAUGE, dims))
            s.append(Sample("df.inodes.total", st.f_files, GAUGE, dims))
            s.append(Sample("df.inodes.used", st.f_files - st.f_ffree, GAUGE, dims))
            s.append(Sample("df.inodes.free", st.f_ffree, GAUGE, dims))


def _counter(name: str, value: int | float, dims: dict[str, Any] | None = None) -> Sample:
    # No epoch: after a reboot the counters restart low, and a counter that goes backwards is a reset anyway
    # (btime in /proc/stat jitters by a second on some kernels, so it would fake resets).
    return Sample(name, value, COUNTER, dims or {})


def _unescape(path: str) -> str:
    """/proc/self/mounts writes space, tab, newline and backslash as octal escapes."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), path) if "\\" in path else path


def _is_remote(device: str, fstype: str) -> bool:
    base = fstype.removeprefix("fuse.")
    return base in REMOTE_FS or ":" in device or device.startswith("//")
