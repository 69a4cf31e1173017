"""Keep-alive HTTP(S) POSTs over the standard library's ``http.client``, for the addEvents sink.

``requests`` costs an upload ~10 MiB of peak RSS and ~0.1 s of CPU to import (urllib3, charset_normalizer,
idna, its adapters), for one POST with a ready-made body per request. This does what the sink used of it:
one connection kept alive and checked before it is reused, separate connect and read timeouts, TLS verified
against ``ca_bundle`` or, as requests did, ``$REQUESTS_CA_BUNDLE`` / ``$CURL_CA_BUNDLE`` or certifi's bundle
(the system store if certifi is missing), proxies from the options or else from the environment
(``HTTPS_PROXY``, ``HTTP_PROXY``, ``ALL_PROXY``, ``NO_PROXY``; credentials in the proxy URL are sent as
basic auth), ``https://`` through a proxy as a CONNECT tunnel and ``http://`` as an absolute URL. Failures are
``PostError`` with a kind the sink maps to its messages.
"""

from __future__ import annotations

import base64
import http.client
import os
import select
import socket
import ssl
from urllib.parse import unquote, urlsplit

from shipctl.records import record

_PROXY_VARS = ("https_proxy", "http_proxy", "all_proxy")


class PostError(Exception):
    """No reply: ``kind`` is "tls", "connect" (timed out connecting), "read" (timed out waiting for the reply)
    or "connection" (refused, reset, a proxy that said no, ...); ``reason`` says what happened."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


@record(frozen=True)
class Reply:
    """A receiver's reply: the HTTP status and its body."""

    status: int
    content: bytes
    retry_after: str | None


def _env_proxy(scheme: str, host: str) -> str | None:
    """The environment's proxy for ``scheme://host``, as requests picked it (NO_PROXY honoured)."""
    if not any(k.lower() in _PROXY_VARS for k in os.environ):  # the usual case: no import, no lookup
        return None
    import urllib.request  # ~2 MiB: only when a proxy variable is set

    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(scheme) or proxies.get("all")
    if not proxy or urllib.request.proxy_bypass_environment(host, proxies):
        return None
    return proxy


def _ca_file() -> str | None:
    for var in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        if os.environ.get(var):
            return os.environ[var]
    try:
        import certifi
    except ImportError:
        return None
    return str(certifi.where())


def _auth_header(userinfo: str) -> dict[str, str]:
    token = base64.b64encode(unquote(userinfo).encode("latin-1")).decode()
    return {"Proxy-Authorization": f"Basic {token}"}


class Poster:
    """One connection to one server (through one proxy, if any), reopened when the server closed it."""

    def __init__(self, url: str, *, proxies: dict[str, str], verify: bool | str, user_agent: str) -> None:
        u = urlsplit(url)
        self.scheme = u.scheme
        self.host = u.hostname or ""
        self.port = u.port or (443 if u.scheme == "https" else 80)
        self.path = (u.path or "/") + (f"?{u.query}" if u.query else "")
        self.url = url
        self.user_agent = user_agent
        self.verify = verify
        proxy = proxies.get(self.scheme) or _env_proxy(self.scheme, self.host)
        self.proxy = urlsplit(proxy if "://" in proxy else f"http://{proxy}") if proxy else None
        self._conn: http.client.HTTPConnection | None = None
        self._context: ssl.SSLContext | None = None

    def _ssl(self) -> ssl.SSLContext:
        if self._context is None:
            if self.verify is False:
                ctx = ssl.create_default_context()
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            else:
                where = self.verify if isinstance(self.verify, str) else _ca_file()
                if where and os.path.isdir(where):
                    ctx = ssl.create_default_context(capath=where)
                else:
                    ctx = ssl.create_default_context(cafile=where)
            self._context = ctx
        return self._context

    def _connection(self, connect_timeout: float) -> http.client.HTTPConnection:
        conn = self._conn
        if conn is not None and conn.sock is not None:
            # A kept-alive connection the server closed (idle timeout) reads as ready: start afresh rather than
            # send a request into it (what urllib3 checks before it reuses a pooled connection).
            try:
                ready = select.select([conn.sock], [], [], 0)[0]
            except (OSError, ValueError):
                ready = [conn.sock]
            if not ready:
                return conn
            self.close()
        p = self.proxy
        if p is None:
            conn = (
                http.client.HTTPSConnection(self.host, self.port, timeout=connect_timeout, context=self._ssl())
                if self.scheme == "https"
                else http.client.HTTPConnection(self.host, self.port, timeout=connect_timeout)
            )
        elif self.scheme == "https":  # a CONNECT tunnel through the proxy, TLS end to end with the server
            conn = http.client.HTTPSConnection(
                p.hostname or "", p.port or 8080, timeout=connect_timeout, context=self._ssl()
            )
            auth = _auth_header(p.netloc.rpartition("@")[0]) if "@" in p.netloc else None
            conn.set_tunnel(self.host, self.port, headers=auth)
        else:  # plain http: the request goes to the proxy with the absolute URL
            conn = http.client.HTTPConnection(p.hostname or "", p.port or 8080, timeout=connect_timeout)
        try:
            conn.connect()
        except ssl.SSLError as exc:
            conn.close()
            raise PostError("tls", _text(exc)) from None
        except TimeoutError:
            conn.close()
            raise PostError("connect", "timed out") from None
        except OSError as exc:  # refused, unreachable, a proxy that refused the tunnel
            conn.close()
            raise PostError("connection", _text(exc)) from None
        # As urllib3 does: without it, Nagle's algorithm holds a body's last partial segment until the
        # server acknowledges the rest, which a delayed ACK makes up to 40 ms per request.
        assert conn.sock is not None
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._conn = conn
        return conn

    def post(self, body: bytes, headers: dict[str, str], timeouts: tuple[float, float]) -> Reply:
        conn = self._connection(timeouts[0])
        assert conn.sock is not None
        conn.sock.settimeout(timeouts[1])
        hdrs = {"User-Agent": self.user_agent, "Accept": "*/*", **headers, "Content-Length": str(len(body))}
        target = self.path
        if self.proxy is not None and self.scheme == "http":
            target = self.url
            if "@" in self.proxy.netloc:
                hdrs.update(_auth_header(self.proxy.netloc.rpartition("@")[0]))
        try:
            conn.request("POST", target, body=body, headers=hdrs)
            resp = conn.getresponse()
            content = resp.read()
        except ssl.SSLError as exc:
            self.close()
            raise PostError("tls", _text(exc)) from None
        except TimeoutError:
            self.close()
            raise PostError("read", "timed out") from None
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise PostError("connection", _text(exc)) from None
        if resp.will_close:
            self.close()
        return Reply(resp.status, content, resp.getheader("Retry-After"))

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _text(exc: BaseException) -> str:
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the host name ({exc.strerror or exc})"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {exc.verify_message}"
    text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return (text or type(exc).__name__)[:200]
