"""The ``url`` monitor: fetch a URL, emit the (first line of the) body as ``response`` (Scalyr's url_monitor).

Redirects are not followed: a 301 is what the URL answered. HTTP errors (404, 500) are responses with their
status; only when no response arrives is the value ``"failed"``, with status 0 and the error kind
(``timeout``, ``refused``, ``dns``, ``ssl``, ``reset``, ``disconnected``, ``protocol``, ``network``, ``error``).
"""

from __future__ import annotations

import base64
import re
import time
from urllib.parse import SplitResult, unquote, urlsplit

from shipctl import __version__
from shipctl.monitors.base import GAUGE, MonitorOutput, Sample, as_value, shape_text
from shipctl.records import record
from shipctl.schema import field, positive

MAX_BODY = 4 << 20  # read at most this much of a response body


def _check_url(value: str) -> str | None:
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        return f"expected an http:// or https:// URL ({exc})"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "expected an http:// or https:// URL with a host"
    return None


def _check_method(value: str) -> str | None:
    return None if re.fullmatch(r"[A-Za-z]+", value) else "expected an HTTP method such as GET or POST"


@record(frozen=True)
class RequestHeader:
    """One HTTP header the ``url`` monitor sends."""

    header: str = field(check=lambda v: None if re.fullmatch(r"[!-9;-~]+", v) else "expected a header name")
    value: str = field(
        check=lambda v: None if "\n" not in v and "\r" not in v else "a header value cannot contain a line break"
    )


@record(frozen=True)
class UrlOptions:
    """Options of the ``url`` monitor: a URL fetched and its response emitted (Scalyr's url_monitor)."""

    url: str = field(check=_check_url, doc="http:// or https:// URL to fetch")
    request_method: str = field("GET", check=_check_method)
    request_headers: tuple[RequestHeader, ...] = field((), doc="[{header = ..., value = ...}, ...]")
    request_data: str = field("", doc="request body (sent as UTF-8)")
    timeout: float = field(10.0, check=positive, doc="seconds for the whole request")
    extract: str = field("", regex=True, doc="regex; its first group is kept from the body")
    log_all_lines: bool = False
    max_characters: int = field(200, check=positive)


class UrlMonitor:
    module = "url_monitor"

    def __init__(self, options: UrlOptions) -> None:
        self.options = options
        self.extract = re.compile(options.extract) if options.extract else None

    def sample(self) -> MonitorOutput:
        o = self.options
        parts = urlsplit(o.url)
        dims = {"url": _public_url(parts), "request_method": o.request_method.upper()}
        started = time.monotonic()
        try:
            status, body = self._fetch(parts)
        except Exception as exc:  # every way a request can fail is data about the URL, not a monitor bug
            extra = {
                "status": 0,
                "length": 0,
                "error": _error_kind(exc),
                "error_detail": _short(exc),
                "duration": round(time.monotonic() - started, 3),
            }
            return MonitorOutput(samples=[Sample("response", "failed", GAUGE, dims, extra=extra)])
        text, _ = shape_text(body, self.extract, o.log_all_lines, o.max_characters)
        extra = {"status": status, "length": len(body), "duration": round(time.monotonic() - started, 3)}
        return MonitorOutput(samples=[Sample("response", as_value(text), GAUGE, dims, extra=extra)])

    def _fetch(self, parts: SplitResult) -> tuple[int, str]:
        import http.client

        o = self.options
        deadline = time.monotonic() + o.timeout
        conn: http.client.HTTPConnection
        if parts.scheme == "https":
            import ssl

            conn = http.client.HTTPSConnection(
                parts.hostname or "", parts.port, timeout=o.timeout, context=ssl.create_default_context()
            )
        else:
            conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=o.timeout)
        headers = {"User-Agent": f"shipctl/{__version__} url_monitor", "Accept-Encoding": "identity"}
        if parts.username is not None:
            cred = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(cred).decode()
        for h in o.request_headers:
            headers[h.header] = h.value
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        body = o.request_data.encode() if o.request_data else None
        try:
            conn.request(o.request_method.upper(), path, body=body, headers=headers)
            resp = conn.getresponse()
            chunks: list[bytes] = []
            size = 0
            while size < MAX_BODY:
                # The socket timeout bounds each read; the deadline bounds a server that drips bytes.
                if time.monotonic() > deadline:
                    raise TimeoutError(f"response not complete after {o.timeout:g} s")
                chunk = resp.read1(65536)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
            return resp.status, b"".join(chunks).decode("utf-8", "replace")
        finally:
            conn.close()


def _public_url(parts: SplitResult) -> str:
    """The URL as shown in events: a password in it is masked."""
    if parts.password is None:
        return parts.geturl()
    host = parts.hostname or ""
    if parts.port is not None:
        host += f":{parts.port}"
    return parts._replace(netloc=f"{parts.username}:****@{host}").geturl()


def _error_kind(exc: BaseException) -> str:
    import http.client
    import socket
    import sys

    ssl = sys.modules.get("ssl")
    if isinstance(exc, TimeoutError):
        return "timeout"
    if ssl is not None and isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return "ssl"
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, http.client.RemoteDisconnected):
        return "disconnected"
    if isinstance(exc, ConnectionError):
        return "reset"
    if isinstance(exc, socket.gaierror):
        return "dns"
    if isinstance(exc, http.client.HTTPException):
        return "protocol"
    if isinstance(exc, OSError):
        return "network"
    return "error"


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "..."
