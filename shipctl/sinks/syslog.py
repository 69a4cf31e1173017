"""The ``syslog`` sink: logs and events as RFC 5424 messages over TCP, optionally TLS (RFC 5425).

Framing is octet counting (RFC 6587 3.4.1 / RFC 5425 4.3): ``MSG-LEN SP SYSLOG-MSG``, so a message may hold
any byte, newlines included. Each event becomes::

    <PRI>1 TIMESTAMP HOSTNAME APP-NAME - MSGID [shipctl@32473 si="…" sn="…" source="…"][attrs@32473 k="v" …] MSG

- PRI: ``facility * 8 + severity``; the severity is read from the first of ``severity_attributes`` the event
  has (``error``, ``warn``, ``3``, ...), else informational for a log line and notice for an event.
- TIMESTAMP: the event's own time, RFC 3339 in UTC with microseconds. HOSTNAME: ``hostname``, else the
  ``serverHost`` server attribute. MSGID: the event's kind (``log`` or ``event``). PROCID: ``-``.
- Structured data: ``shipctl@PEN`` carries the sink's sequence stream (``si``), the event's sequence number
  (``sn``) and its source (log id or monitor id), so a consumer can drop repeats by (si, sn); ``attrs@PEN``
  carries the server attributes and the event's attributes (names cut to RFC 5424's 32 printable
  characters, ``=``, space, ``]`` and ``"`` replaced by ``_``; values with ``"``, ``\\`` and ``]`` escaped;
  lists and tables as JSON). PEN is ``enterprise_number``: 32473 is the number RFC 5612 reserves for
  documentation; an organisation with its own IANA Private Enterprise Number sets it.
- A message longer than ``max_message_bytes`` is cut (at a UTF-8 character boundary) and its ``shipctl``
  element says ``truncated="<original message octets>"``. Rsyslog's imtcp and imptcp fall back to newline
  framing for a frame over their ``maxFrameSize`` (200000 by default), which corrupts that message and the
  next one: never send more than that.

Delivery. Plain TCP syslog has no application acknowledgement, so "delivered" can only mean something the
connection itself shows. One request is one connection: every byte written, then the sink closes its
sending side (TLS: ``close_notify``, then TCP FIN) and waits for the receiver to close the connection too.
A receiver closes after it has read everything up to the close, and a receiver that closed with data still
unread resets the connection instead; so a clean close from the receiver means it has read, framed and
queued every message (rsyslog: in its main queue). Only then is the request OK and the cursor moves. A
refused, reset or timed-out connection is RETRY: the whole request is sent again later with the same si/sn,
and the receiver may hold some of its messages twice (at least once). What the receiver does after reading
is its own business: rsyslog's in-memory queue is lost if rsyslogd is killed before writing; a disk-assisted
queue there (or RELP, which this sink does not speak) is what makes it durable. ``confirm = "written"``
drops the wait for the close (for a receiver that keeps connections open): then OK means only that the
bytes were handed to the kernel.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import re
import socket
import time
from collections.abc import Iterator, Mapping
from typing import Any

from shipctl.model import FMT_RAW, Batch
from shipctl.records import record
from shipctl.schema import field, one_of, positive
from shipctl.sinks.base import OK, RETRY, BatchSink, Request, SendResult

FACILITIES = {
    "kern": 0,
    "user": 1,
    "mail": 2,
    "daemon": 3,
    "auth": 4,
    "syslog": 5,
    "lpr": 6,
    "news": 7,
    "uucp": 8,
    "cron": 9,
    "authpriv": 10,
    "ftp": 11,
    "ntp": 12,
    "security": 13,
    "console": 14,
    "clock": 15,
    **{f"local{i}": 16 + i for i in range(8)},
}
SEVERITIES = {
    "emerg": 0,
    "emergency": 0,
    "panic": 0,
    "alert": 1,
    "crit": 2,
    "critical": 2,
    "fatal": 2,
    "err": 3,
    "error": 3,
    "warn": 4,
    "warning": 4,
    "notice": 5,
    "info": 6,
    "informational": 6,
    "information": 6,
    "debug": 7,
    "trace": 7,
}
DEFAULT_SEVERITY = {"log": 6, "event": 5}  # informational, notice
DOCUMENTATION_PEN = 32473  # RFC 5612: the Private Enterprise Number for examples and documentation
MIN_MESSAGE_BYTES = 480  # RFC 5424 6.1: every receiver takes at least this much
SEND_CHUNK = 256 * 1024  # bytes per send(): the deadline is checked between them
SHOW_CHARS = 64 * 1024  # of a request, for upload --dry-run

_NOT_PRINTABLE = re.compile(r"[^\x21-\x7e]")  # RFC 5424 PRINTUSASCII
_NOT_SD_NAME = re.compile(r'[^\x21-\x7e]|[="\]]')  # SD-NAME: PRINTUSASCII but '=', SP, ']', '"'


def _printable(value: str, limit: int, what: str) -> str | None:
    if not value or len(value) > limit or _NOT_PRINTABLE.search(value):
        return f"{what}: expected 1 to {limit} printable ASCII characters without spaces, got {value!r}"
    return None


def _min_message(value: int) -> str | None:
    return None if value >= MIN_MESSAGE_BYTES else f"expected at least {MIN_MESSAGE_BYTES} (RFC 5424's minimum)"


def _pen(value: int) -> str | None:
    return None if value > 0 else "expected a Private Enterprise Number (a positive integer)"


def parse_address(text: str, tls: bool) -> tuple[str, int]:
    """``host:port``, ``[v6]:port``, or a bare host (port 6514 with TLS, else 514). ValueError names it."""
    text = text.strip()
    port = ""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest and not rest.startswith(":"):
            raise ValueError(f"address: expected [IPv6]:port, got {text!r}")
        port = rest[1:]
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:
        host = text  # a bare name, or an IPv6 address without brackets
    if not host or any(c.isspace() or c == "\0" for c in host):
        raise ValueError(f"address: expected host:port, got {text!r}")
    try:
        host.encode("idna")  # what the resolver will be given
    except UnicodeError:
        raise ValueError(f"address: {host!r} is not a usable host name") from None
    if not port:
        return host, 6514 if tls else 514
    if not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
        raise ValueError(f"address: expected a port from 1 to 65535 after the host, got {text!r}")
    return host, int(port)


@record(frozen=True)
class SyslogOptions:
    """Options of the ``syslog`` sink: log lines and events as RFC 5424 messages over TCP or TLS."""

    address: str = "127.0.0.1:514"  # host:port
    tls: bool = False
    ca_file: str = ""  # CA bundle for the receiver's certificate; empty: the system's
    cert_file: str = ""  # client certificate (PEM), for receivers that ask for one
    key_file: str = ""  # its unencrypted private key (PEM); empty: in cert_file
    verify: bool = True  # check the receiver's certificate and name
    server_name: str = ""  # the name to check the certificate against (and SNI); empty: the address's host
    facility: str = field("local0", check=one_of(*FACILITIES))
    app_name: str = "shipctl"
    hostname: str = ""  # HOSTNAME field; empty: the serverHost server attribute
    severity_attributes: tuple[str, ...] = ("severity", "level")
    enterprise_number: int = field(DOCUMENTATION_PEN, check=_pen)
    max_message_bytes: int = field(65536, check=_min_message)
    confirm: str = field("close", check=one_of("close", "written"))
    connect_timeout: float = field(10.0, check=positive)
    send_timeout: float = field(60.0, check=positive)  # writing one request and seeing the receiver close
    request_bytes: int = field(2 << 20, check=positive)  # about 5 MB on the wire for lines of ~120 bytes

    def __post_init__(self) -> None:
        parse_address(self.address, self.tls)
        for name, value, limit in (("app_name", self.app_name, 48), ("hostname", self.hostname, 255)):
            if name == "app_name" or value:
                problem = _printable(value, limit, name)
                if problem:
                    raise ValueError(problem)
        if not self.tls:
            for name in ("ca_file", "cert_file", "key_file", "server_name"):
                if getattr(self, name):
                    raise ValueError(f"{name}: only used with tls = true")
            return
        if self.key_file and not self.cert_file:
            raise ValueError("key_file: set cert_file too (the client certificate the key belongs to)")
        tls_context(self)  # a missing or unreadable CA, certificate or key is a config error now, not per upload


def tls_context(o: SyslogOptions) -> Any:
    """The client TLS context; ValueError names the option whose file is wrong."""
    import ssl

    for name in ("ca_file", "cert_file", "key_file"):  # ssl's own errors do not say which file is missing
        path = getattr(o, name)
        if path:
            try:
                open(path, "rb").close()
            except (OSError, ValueError) as exc:
                raise ValueError(f"{name}: cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    try:  # with ca_file, that CA alone is trusted (not the system's too): the receiver is a known one
        ctx = ssl.create_default_context(cafile=o.ca_file or None)
    except ssl.SSLError as exc:  # (an OSError too: first)
        raise ValueError(f"ca_file: {o.ca_file} holds no PEM certificate ({exc.reason or exc})") from None
    except OSError as exc:
        raise ValueError(f"ca_file: cannot read {o.ca_file}: {exc.strerror or exc}") from None
    if not o.verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if o.cert_file:

        def no_password() -> str:
            raise ValueError("the key is encrypted: give an unencrypted key (a cron job cannot type a password)")

        try:
            ctx.load_cert_chain(o.cert_file, o.key_file or None, password=no_password)
        except ssl.SSLError as exc:  # (an OSError too: first)
            raise ValueError(f"cert_file/key_file: not a usable certificate and key ({exc.reason or exc})") from None
        except OSError as exc:
            raise ValueError(f"cert_file: cannot read {o.cert_file}: {exc.strerror or exc}") from None
        except ValueError as exc:  # the key is encrypted
            raise ValueError(f"key_file: {exc}") from None
    return ctx


# --- encoding ------------------------------------------------------------------------------------------


def sd_escape(value: str) -> str:
    """A PARAM-VALUE: RFC 5424 6.3.3 escapes exactly ``"``, ``\\`` and ``]``."""
    if "\\" in value:
        value = value.replace("\\", "\\\\")
    if '"' in value:
        value = value.replace('"', '\\"')
    if "]" in value:
        value = value.replace("]", "\\]")
    return value


def sd_name(name: str) -> str:
    """A PARAM-NAME: 1 to 32 printable ASCII characters other than ``=``, space, ``]`` and ``"``."""
    return _NOT_SD_NAME.sub("_", name)[:32] or "_"


def _text(v: Any) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return ""
    if isinstance(v, int | float):
        return str(v)
    return json.dumps(v, ensure_ascii=False, separators=(",", ":"), default=str)


def severity(attrs: Mapping[str, Any], names: tuple[str, ...], default: int) -> int:
    """The severity an attribute names (a word such as ``error`` or ``WARN``, or a number 0-7)."""
    for name in names:
        v = attrs.get(name)
        if v is None or isinstance(v, bool):
            continue
        if isinstance(v, int) and 0 <= v <= 7:
            return v
        if isinstance(v, str):
            word = v.strip().lower()
            if word.isdigit() and int(word) <= 7:
                return int(word)
            if word in SEVERITIES:
                return SEVERITIES[word]
    return default


def _utf8_cut(data: bytes, room: int) -> bytes:
    """``data`` cut to at most ``room`` bytes without splitting a UTF-8 character."""
    room = max(room, 0)
    while room > 0 and room < len(data) and data[room] & 0xC0 == 0x80:
        room -= 1
    return data[:room]


@record
class Wire:
    """An encoded request: octet-counted frames joined per batch (a list of small bytes objects per line
    would hold twice the memory while the request waits its turn), and how many messages they hold."""

    parts: list[bytes]
    messages: int
    size: int = 0

    def frames(self) -> Iterator[bytes]:
        """Each ``MSG-LEN SP SYSLOG-MSG`` frame, read back by its octet count."""
        for data in self.parts:
            pos = 0
            while pos < len(data):
                space = data.index(b" ", pos)
                end = space + 1 + int(data[pos:space])
                yield data[pos:end]
                pos = end


class Encoder:
    """RFC 5424 messages for the events of batches. Plain log lines are formatted in groups that share
    their timestamp text and the width of their sequence numbers: one ``%`` per line, nothing else."""

    def __init__(self, o: SyslogOptions, session: str, hostname: str, server_attributes: Mapping[str, Any]) -> None:
        self.o = o
        self.facility = FACILITIES[o.facility]
        self.after_stamp = f" {hostname} {o.app_name} - ".encode()
        self.meta_open = f'[shipctl@{o.enterprise_number} si="{sd_escape(session)}" sn="'.encode()
        self.attrs_id = f"attrs@{o.enterprise_number}"
        self.hostname = hostname
        self.server = {str(k): v for k, v in server_attributes.items()}
        self._stamps: dict[int, bytes] = {}
        self._attrs_cache: tuple[Any, bytes] = (None, b"")

    def stamp(self, ts_ns: int) -> bytes:
        """TIMESTAMP: RFC 3339, UTC, microseconds; ``-`` for a time no calendar holds."""
        seconds, us = divmod(int(ts_ns) // 1000, 1_000_000)
        head = self._stamps.get(seconds)
        if head is None:
            try:
                t = time.gmtime(seconds)
            except (OverflowError, OSError, ValueError):
                return b"-"
            if not 0 < t.tm_year <= 9999:
                return b"-"
            head = time.strftime("%Y-%m-%dT%H:%M:%S", t).encode()
            if len(self._stamps) > 4096:
                self._stamps.clear()
            self._stamps[seconds] = head
        return b"%b.%06dZ" % (head, us)

    def attrs_sd(self, attrs: Mapping[str, Any]) -> bytes:
        """The ``attrs@PEN`` element of these attributes (cached: a batch's events share one dict)."""
        cached = self._attrs_cache  # one read: two requests may be sealed at once, in two threads
        if cached[0] is attrs:
            return cached[1]
        merged = {**self.server, **attrs}
        if "serverHost" in merged and _text(merged["serverHost"]) == self.hostname:
            del merged["serverHost"]  # the HOSTNAME field says it already (kept when that had to be sanitised)
        if not merged:
            out = b""
        else:
            params = "".join(f' {sd_name(str(k))}="{sd_escape(_text(v))}"' for k, v in merged.items())
            out = f"[{self.attrs_id}{params}]".encode("utf-8", "replace")
        self._attrs_cache = (attrs, out)
        return out

    def head(self, kind: str, attrs: Mapping[str, Any]) -> bytes:
        sev = severity(attrs, self.o.severity_attributes, DEFAULT_SEVERITY.get(kind, 6))
        return b"<%d>1 " % (self.facility * 8 + sev)

    def encode(self, batches: list[Batch], first_sn: int) -> Wire:
        parts: list[bytes] = []
        messages = 0
        for b in batches:
            frames: list[bytes] = []
            if not (b.fmt == FMT_RAW and self._raw(b, first_sn, frames)):
                frames.clear()
                self._events(b, first_sn, frames)
            if frames:
                messages += len(frames)
                parts.append(b"".join(frames))
        return Wire(parts, messages, sum(map(len, parts)))

    def _raw(self, b: Batch, first_sn: int, out: list[bytes]) -> bool:
        """Plain lines, all formatted alike. False when a line needs cutting: the caller takes the slow path."""
        payload = b.payload if b.payload.isascii() else b.payload.decode("utf-8", "replace").encode()
        lines = payload.split(b"\n")
        del lines[-1]  # each line ends in "\n"; what follows the last one is empty
        start = max(0, first_sn - b.sn)
        n = len(lines)
        if start >= n:
            return True
        pri = self.head(b.kind, b.attrs)
        mid = self.after_stamp + b.kind.encode() + b" " + self.meta_open
        post = b'" source="' + sd_escape(b.source).encode("utf-8", "replace") + b'"]' + self.attrs_sd(b.attrs) + b" "
        fixed = len(pri) + 27 + len(mid) + len(post)  # 27: the timestamp's length
        if max(map(len, lines[start:])) + fixed + 20 > self.o.max_message_bytes:
            return False
        j = start
        while j < n:
            ts = b.ts + j
            us = ts // 1000
            sn0 = b.sn + j
            digits = len(str(sn0))
            end = min(n, (us + 1) * 1000 - b.ts, 10**digits - b.sn)  # same microsecond, same sn width
            head = pri + self.stamp(ts) + mid
            k = len(head) + digits + len(post)
            out += [
                b"%d %b%d%b%b" % (k + len(line), head, sn, post, line)
                for sn, line in zip(range(sn0, sn0 + end - j), lines[j:end], strict=True)
            ]
            j = end
        return True

    def _events(self, b: Batch, first_sn: int, out: list[bytes]) -> None:
        source = b'" source="' + sd_escape(b.source).encode("utf-8", "replace") + b'"'
        limit = self.o.max_message_bytes
        for ev in b.events():
            if ev.sn < first_sn:
                continue
            attrs = self.attrs_sd(ev.attrs)
            head = self.head(ev.kind, ev.attrs) + self.stamp(ev.ts) + self.after_stamp + ev.kind.encode() + b" "
            meta = self.meta_open + b"%d" % ev.sn + source
            msg = ev.message.encode("utf-8", "replace")
            size = len(head) + len(meta) + 1 + len(attrs) + 1 + len(msg)
            if size > limit:
                meta += b' truncated="%d"' % len(msg)
                if len(head) + len(meta) + 2 + len(attrs) > limit:  # the attributes alone do not fit: say so
                    meta += b' attrs_dropped="%d"' % len(attrs)
                    attrs = b""
                msg = _utf8_cut(msg, limit - (len(head) + len(meta) + 1 + len(attrs) + 1))
            body = b"%b%b]%b %b" % (head, meta, attrs, msg)
            out.append(b"%d %b" % (len(body), body))


# --- the sink ------------------------------------------------------------------------------------------


class SyslogSink(BatchSink):
    carries = ("log", "event")

    def __init__(self, options: SyslogOptions, session: str) -> None:
        self.o = options
        self.session = session
        self.request_bytes = options.request_bytes
        self.host, self.port = parse_address(options.address, options.tls)
        self.where = f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
        self._tls: Any = tls_context(options) if options.tls else None
        self.encoder = Encoder(options, session, options.hostname or "-", {})

    def bind(self, server_attributes: Mapping[str, Any]) -> None:
        host = self.o.hostname or _NOT_PRINTABLE.sub("_", str(server_attributes.get("serverHost") or ""))[:255]
        self.encoder = Encoder(self.o, self.session, host or "-", server_attributes)

    # --- requests: encoded in the worker thread ahead of post() ---------------------------------------
    def seal(self, request: Request) -> None:
        if not isinstance(request.payload, Wire):
            request.payload = self.encoder.encode(request.payload, request.spans[0].first_sn)

    def post(self, request: Request) -> SendResult:
        self.seal(request)
        return self.transmit(request.payload)

    def send(self, batches: list[Batch], first_sn: int) -> SendResult:
        return self.transmit(self.encoder.encode(batches, first_sn))

    def show(self, request: Request) -> str:
        wire = request.payload
        if not isinstance(wire, Wire):
            wire = self.encoder.encode(wire, request.spans[0].first_sn)
        return self._show(wire)

    def describe(self, batches: list[Batch]) -> str:
        return self._show(self.encoder.encode(batches, 0))

    def _show(self, wire: Wire) -> str:
        how = "TLS" if self.o.tls else "TCP"
        text = "\n".join(f.decode("utf-8", "replace") for f in itertools.islice(wire.frames(), 2000))
        if len(text) > SHOW_CHARS:
            text = text[:SHOW_CHARS] + "\n..."
        return (
            f"syslog over {how} to {self.where}: {wire.messages} RFC 5424 messages, {wire.size} bytes"
            f" (octet-counted frames, one per line here)\n{text}"
        )

    # --- the wire --------------------------------------------------------------------------------------
    def transmit(self, wire: Wire) -> SendResult:
        if not wire.messages:
            return SendResult(OK, "nothing to send", status="success")
        total = wire.size
        connect_s, send_s = self.wait_limits(self.o.connect_timeout, self.o.send_timeout)
        try:
            raw = socket.create_connection((self.host, self.port), timeout=connect_s)
        except socket.gaierror as exc:
            return self._retry(f"cannot resolve {self.host}: {exc.strerror or exc}", "error", 0)
        except TimeoutError:
            return self._retry(f"no connection to {self.where} within {connect_s:g} s", "timeout", 0)
        except ConnectionRefusedError:
            return self._retry(
                f"cannot reach {self.where}: connection refused (is the receiver listening?)", "refused", 0
            )
        except (OSError, ValueError) as exc:  # (ValueError, UnicodeError: a name the resolver refuses)
            return self._retry(f"cannot reach {self.where}: {getattr(exc, 'strerror', None) or exc}", "error", 0)
        deadline = time.monotonic() + send_s
        sock: Any = raw
        sent = 0
        stage = "TLS handshake"
        try:
            if self._tls is not None:
                raw.settimeout(max(0.05, deadline - time.monotonic()))
                sock = self._tls.wrap_socket(raw, server_hostname=self.o.server_name or self.host)
            stage = "sending"
            for part in wire.parts:
                view, done = memoryview(part), 0
                while done < len(part):
                    sock.settimeout(_left(deadline))
                    n = sock.send(view[done : done + SEND_CHUNK])
                    done += n
                    sent += n
            if self.o.confirm == "written":
                return SendResult(OK, status="success", request_bytes=total)
            stage = "waiting for the receiver to close"
            answer = self._await_close(sock, raw, deadline)
        except TimeoutError:
            if stage == "sending":
                why = f"sending to {self.where} took over {send_s:g} s: {sent} of {total} bytes written"
            elif stage == "TLS handshake":
                why = f"no TLS handshake with {self.where} within {send_s:g} s"
            else:
                why = (
                    f"all {total} bytes written, but {self.where} did not close the connection within"
                    f" {send_s:g} s, so delivery is unconfirmed (a receiver that keeps connections open needs"
                    ' confirm = "written")'
                )
            return self._retry(why, "timeout", sent)
        except Exception as exc:  # every socket or TLS failure is a retry, said plainly
            return self._retry(self._failure(exc, stage, sent, total), _status(exc), sent)
        finally:
            _close(sock, raw)
        if answer:
            return self._retry(
                f"{self.where} answered {answer[:80]!r}, which a syslog receiver never does: is this the syslog"
                " port (and does it expect TLS?)",
                "bad reply",
                sent,
            )
        return SendResult(OK, status="success", request_bytes=total)

    def _await_close(self, sock: Any, raw: socket.socket, deadline: float) -> bytes:
        """Close our side and wait for the receiver to close its own; returns what it sent meanwhile."""
        answer = b""
        if sock is not raw:
            # TLS: our close_notify, then the receiver's. A TCP close without it is no confirmation: a receiver
            # that refuses the client certificate closes like that too (SSLEOFError: RETRY).
            sock.settimeout(_left(deadline))
            sock = sock.unwrap()
        sock.shutdown(socket.SHUT_WR)
        while True:
            sock.settimeout(_left(deadline))
            chunk = sock.recv(65536)
            if not chunk:
                return answer
            if len(answer) < 200:
                answer += chunk

    def _failure(self, exc: BaseException, stage: str, sent: int, total: int) -> str:
        import ssl

        progress = f"after {sent} of {total} bytes" if stage == "sending" else f"({stage})"
        if isinstance(exc, ssl.SSLCertVerificationError):
            return f"TLS: the certificate of {self.where} was refused: {exc.verify_message or exc.reason}"
        # A TLS receiver that wants a client certificate refuses one's absence after the handshake (TLS 1.3):
        # the sender sees an alert, a reset or a closed connection at whatever it was doing then.
        hint = ""
        if self._tls is not None and not self.o.cert_file:
            hint = " (if the receiver wants a client certificate: set cert_file and key_file)"
        if isinstance(exc, ssl.SSLError):
            return f"TLS error with {self.where} {progress}: {exc.reason or exc}{hint}"
        if isinstance(exc, ConnectionResetError | BrokenPipeError):
            return f"connection reset by {self.where} {progress}; the whole request will be sent again{hint}"
        if isinstance(exc, OSError):
            return f"connection to {self.where} failed {progress}: {exc.strerror or exc}{hint}"
        return f"{type(exc).__name__} {progress}: {exc}"

    def _retry(self, message: str, status: str, sent: int) -> SendResult:
        return SendResult(RETRY, message, status=status, request_bytes=sent)


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    return left


def _status(exc: BaseException) -> str:
    import ssl

    if isinstance(exc, ssl.SSLError):
        return "tls"
    if isinstance(exc, ConnectionResetError | BrokenPipeError):
        return "reset"
    return "error"


def _close(sock: Any, raw: socket.socket) -> None:
    for s in (sock, raw):  # wrap_socket() detached raw: closing it as well is a no-op, never a second close
        with contextlib.suppress(OSError):
            s.close()


__all__ = ["Encoder", "SyslogOptions", "SyslogSink", "Wire", "parse_address"]
