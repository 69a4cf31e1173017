"""A POST with bounded waits, its reply mapped to the upload outcomes; shared by the HTTP metric sinks.

``requests`` is imported on the first post, so a run with nothing to send never loads it.
"""

from __future__ import annotations

from typing import Any

from shipctl.records import record
from shipctl.schema import scrub
from shipctl.sinks.base import RETRY, SendResult, cut_to_deadline


@record(frozen=True)
class Reply:
    """A receiver's reply: the HTTP status and its body as text."""

    code: int
    text: str
    retry_after: float | None


class Poster:
    def __init__(self, connect_timeout: float, read_timeout: float) -> None:
        self.timeouts = (connect_timeout, read_timeout)
        self._session: Any = None

    def post(
        self, url: str, body: bytes, headers: dict[str, str], auth: Any = None, deadline: float | None = None
    ) -> Reply | SendResult:
        """The server's reply, or a RETRY result when there was none (refused, timed out, TLS). Waits end by
        ``deadline`` (``time.monotonic()``) when one is given: the run's budget."""
        import requests

        if self._session is None:
            self._session = requests.Session()
        host = url.split("/")[2] if "//" in url else url
        timeouts = cut_to_deadline(*self.timeouts, deadline)
        try:
            resp = self._session.post(url, data=body, headers=headers, auth=auth, timeout=timeouts)
        except requests.exceptions.ConnectTimeout:
            return SendResult(RETRY, f"no connection to {host} within {timeouts[0]:g} s", status="timeout")
        except requests.exceptions.ReadTimeout:
            return SendResult(RETRY, f"no reply from {host} within {timeouts[1]:g} s", status="timeout")
        except requests.exceptions.RequestException as exc:
            return SendResult(RETRY, scrub(f"cannot reach {host}: {type(exc).__name__}"), status="error")
        after: float | None = None
        raw = resp.headers.get("Retry-After")
        if raw:
            try:
                after = min(3600.0, max(0.0, float(raw)))
            except ValueError:
                after = None
        return Reply(resp.status_code, scrub(resp.text.strip()[:500]), after)

    def failed(self, reply: Reply, size: int, sink_id: str) -> SendResult:
        """The outcome of a reply that is neither success nor a sink-specific case."""
        if reply.code in (401, 403):
            return SendResult(
                RETRY,
                f"sink {sink_id!r}: the server refused the credentials (HTTP {reply.code}): {reply.text}",
                status=f"http {reply.code}",
                request_bytes=size,
            )
        return SendResult(
            RETRY,
            f"HTTP {reply.code}: {reply.text}",
            status=f"http {reply.code}",
            request_bytes=size,
            retry_after=reply.retry_after if reply.code == 429 or reply.code >= 500 else None,
        )

    def close(self) -> None:
        if self._session is not None:
            self._session.close()


def check_header_values(values: dict[str, str]) -> None:
    """HTTP header values (and basic-auth credentials) travel as Latin-1 on one line: say so at config time
    rather than fail every upload. ValueError names the option."""
    for name, value in values.items():
        if not value:
            continue
        if "\r" in value or "\n" in value:
            raise ValueError(f"{name}: a header value cannot contain a line break")
        try:
            value.encode("latin-1")
        except UnicodeEncodeError:
            raise ValueError(f"{name}: only Latin-1 characters can go in an HTTP header, got {value!r}") from None


def tag_text(v: Any) -> str:
    """A dimension or server attribute as a tag or label value: text as it is, booleans as InfluxDB and
    Prometheus spell them, anything else as str() does."""
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)
