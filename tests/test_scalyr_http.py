"""The addEvents sink's HTTP client (``shipctl/sinks/httppost.py``) against small stdlib servers.

What ``requests`` did for the sink and the client must keep doing: reuse a kept-alive connection, open a new
one when the server closed the old one while idle, send a proxy's credentials, take proxies from the
environment unless ``NO_PROXY`` says not to, and tell a refused connection from a silent server.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from shipctl.sinks.httppost import Poster, PostError
from tests.receiver import KEY, config_text


class _Server:
    """Answers every POST with 200 and ``{}``; records each request's line, headers and client port."""

    def __init__(self, *, close_after: bool = False) -> None:
        seen: list[dict[str, Any]] = []
        self.seen = seen

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                seen.append({"line": self.requestline, "headers": dict(self.headers), "port": self.client_address[1],
                             "body": body})  # fmt: skip
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.send_header("Retry-After", "7")
                self.end_headers()
                self.wfile.write(b"{}")
                if close_after:  # close the kept-alive connection without saying so, as an idle timeout does
                    self.close_connection = True

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> _Server:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for var in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(var, raising=False)
        monkeypatch.delenv(var.lower(), raising=False)
    yield


def poster(url: str, **kw: Any) -> Poster:
    return Poster(url, proxies=kw.pop("proxies", {}), verify=True, user_agent="shipctl/test", **kw)


def test_keeps_the_connection_alive_and_reopens_one_the_server_closed(no_proxy_env: None) -> None:
    with _Server() as s:
        p = poster(f"http://127.0.0.1:{s.port}/addEvents")
        for body in (b"one", b"two"):
            r = p.post(body, {"Content-Type": "application/json"}, (2, 2))
            assert (r.status, r.content, r.retry_after) == (200, b"{}", "7")
        assert [x["body"] for x in s.seen] == [b"one", b"two"]
        assert s.seen[0]["port"] == s.seen[1]["port"]  # one connection
        assert s.seen[0]["headers"]["User-Agent"] == "shipctl/test" and s.seen[0]["line"].startswith("POST /addEvents ")
        p.close()
    with _Server(close_after=True) as s:
        p = poster(f"http://127.0.0.1:{s.port}/addEvents")
        p.post(b"one", {}, (2, 2))
        time.sleep(0.2)  # the server has closed it by now
        assert p.post(b"two", {}, (2, 2)).status == 200
        assert [x["body"] for x in s.seen] == [b"one", b"two"] and s.seen[0]["port"] != s.seen[1]["port"]
        p.close()


def test_a_proxy_gets_the_absolute_url_and_its_credentials(no_proxy_env: None) -> None:
    with _Server() as proxy:
        p = poster(
            "http://scalyr.invalid:8080/addEvents", proxies={"http": f"http://us%40er:pw@127.0.0.1:{proxy.port}"}
        )
        assert p.post(b"x", {}, (2, 2)).status == 200
        (got,) = proxy.seen
        assert got["line"].startswith("POST http://scalyr.invalid:8080/addEvents ")
        assert got["headers"]["Proxy-Authorization"] == "Basic dXNAZXI6cHc="  # us@er:pw
        p.close()


def test_proxies_from_the_environment_and_no_proxy(no_proxy_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:3128")
    assert poster("http://scalyr.invalid/addEvents").proxy is not None
    assert poster("https://scalyr.invalid/addEvents").proxy is None  # no HTTPS_PROXY
    monkeypatch.setenv("NO_PROXY", ".invalid")
    assert poster("http://scalyr.invalid/addEvents").proxy is None
    # The sink's own option wins over the environment, NO_PROXY included.
    assert poster("http://scalyr.invalid/addEvents", proxies={"http": "127.0.0.1:9"}).proxy is not None


def test_refused_and_silent_servers_fail_with_their_kind(no_proxy_env: None) -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    with pytest.raises(PostError) as refused:
        poster(f"http://127.0.0.1:{port}/addEvents").post(b"x", {}, (2, 2))
    assert refused.value.kind == "connection" and "refused" in refused.value.reason.lower()
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)  # accepts the connection (backlog) but never answers
    try:
        with pytest.raises(PostError) as timed_out:
            poster(f"http://127.0.0.1:{silent.getsockname()[1]}/addEvents").post(b"x", {}, (2, 0.3))
        assert timed_out.value.kind == "read"
    finally:
        silent.close()


def test_a_run_with_nothing_to_send_loads_no_http_client(tmp_path: Path) -> None:
    # http.client + ssl are ~5 MiB of a no-op run's RSS (and requests ~12 MiB more): loaded on the first post.
    cfg = tmp_path / "shipctl.toml"
    cfg.write_text(config_text("http://127.0.0.1:9", "[agent]\nimplicit_metric_monitor = false\n"
                               "implicit_agent_process_metrics_monitor = false\n"))  # fmt: skip
    code = (
        "import sys\nfrom shipctl.cli import app\n"
        f"try:\n    app(['run', '-c', {str(cfg)!r}])\n"
        "except SystemExit as e:\n    assert not e.code, e.code\n"
        "print(sorted(m for m in ('http.client', 'ssl', 'requests', 'urllib3') if m in sys.modules))"
    )
    env = {**os.environ, "SHIPCTL_STATE": str(tmp_path / "state.db"), "SCALYR_API_KEY": KEY}
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip().endswith("[]"), r.stdout + r.stderr
