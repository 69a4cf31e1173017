"""The ``kafka`` sink: one Kafka message per event, through librdkafka (``confluent-kafka``, the ``kafka`` extra).

Each message: the value is the JSON object the file sink writes for the event (``jsonl.encode_lines``, without
the newline); the key is the value of the ``key`` attribute (``serverHost`` by default: the event's own
attributes first, then the server attributes), so one host's events stay in one partition and in order; the
headers are ``si`` (this sink's sequence stream id) and ``sn`` (the event's sequence number, decimal ASCII),
unless ``headers = false`` (both are in the value as well).
The topic is ``topic``, or ``topics[kind]`` (log, metric, event).

Delivery: ``acks=all`` and, unless ``idempotence = false``, an idempotent producer, so a batch librdkafka
re-sends after a lost reply is dropped by the broker. ``post()`` produces every event of the request, waits
for the delivery reports (bounded by ``delivery_timeout``) and says OK only when every message was
acknowledged: librdkafka reports only the messages that failed (``delivery.report.only.error``), and
``flush()`` returns once none is left unresolved, so "nothing left and no failure reported" is "every message
acknowledged", without a Python call per message. One failed report and the whole request is RETRIED later:
the messages that did arrive arrive again with the same ``si``/``sn`` (a new producer session, which the
broker's idempotence cannot recognise), and a consumer drops them by that pair, as after a kill -9 in
mid-request. Before its first request (and after any failure) the sink asks the brokers for the topics'
metadata, so a broker that is down, refused credentials or a topic that does not exist backs off within
``connect_timeout`` with a message naming it, instead of waiting out the delivery timeout. Topics are never
created by the sink. Every wait is bounded: a request takes at most about ``connect_timeout + 2 *
delivery_timeout`` (a full local queue waits for room up to ``delivery_timeout``, then each message reports
within ``delivery_timeout`` of being queued).

An event whose JSON is over ``message_max_bytes`` is not sent: no broker would take it, and retrying it would
stall the sink for ever. The request is confirmed without it, as ``partial`` with a notice naming its ``sn``.
A kind that ``topics`` names no topic for stops the request before anything of it is produced.

Speed: a request's messages are built in ``seal()`` (a worker thread, while the previous request is on the
wire), a plain-lines batch at a time with no Python code per line (``_raw_values``), and handed to produce()
by ``starmap``, with one headers dict whose ``sn`` is set before each call (``_produce_all``). What is left per
message is librdkafka's: produce() with its two headers is about 0.8 us here, 0.45 us without them
(``headers = false``). ``linger.ms`` is long enough for a request's batches to fill up to ``batch.size``, and
the delivery reports are served every ``POLL_EVERY`` messages.

librdkafka's own log lines go to the ``shipctl.kafka`` logger at debug level (never to stderr; a reconnect
loop would repeat them every few milliseconds); its error callbacks are kept to name the cause in the retry
message. ``confluent_kafka`` is imported on the first request, so a run with nothing to send never loads it.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import re
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import field as dc_field
from itertools import repeat, starmap
from json.encoder import encode_basestring_ascii  # type: ignore[attr-defined]
from operator import length_hint
from types import MappingProxyType
from typing import Any

from shipctl import runtime
from shipctl.errors import ConfigError
from shipctl.model import FMT_RAW, KINDS, Batch
from shipctl.records import record
from shipctl.schema import field, one_of, positive, scrub
from shipctl.sinks.base import OK, RETRY, BatchSink, Request, SendResult
from shipctl.sinks.byteclass import PRINTABLE_ASCII
from shipctl.sinks.jsonl import encode_lines

INSTALL_HINT = "pip install 'shipctl[kafka]'"
PROTOCOLS = ("plaintext", "ssl", "sasl_plaintext", "sasl_ssl")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
SHOW_MESSAGES = 5  # of a request, for upload --dry-run
LINGER_MS = 50  # librdkafka's linger.ms: see _config
# Messages produced between two polls for their delivery reports. Serving them while they are few (rather
# than once per group, a whole journal batch) keeps librdkafka's report queue short and the messages it still
# holds few: 200 MB of log took ~8% less CPU and wall time with 512 than with a poll per group.
POLL_EVERY = 512
_BROKER = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[^\s:,\[\]/]+):(\d{1,5})")
_TOPIC = re.compile(r"[A-Za-z0-9._-]{1,249}")

# Through the tool's logger, so that it is set up (its log file) before this one's first record.
log = runtime.log.getChild("kafka")


def _protocol(value: str) -> str | None:
    return None if value.lower() in PROTOCOLS else "expected one of " + ", ".join(map(repr, PROTOCOLS))


def _mechanism(value: str) -> str | None:
    return None if not value or value.upper() in MECHANISMS else "expected one of " + ", ".join(map(repr, MECHANISMS))


@record(frozen=True)
class KafkaOptions:
    """Options of the ``kafka`` sink: one JSON message per event, through librdkafka."""

    brokers: tuple[str, ...]  # bootstrap brokers, "host:port"
    topic: str = ""  # every event to one topic, or:
    topics: Mapping[str, str] = dc_field(default_factory=lambda: MappingProxyType({}))  # kind -> topic
    # Attribute whose value keys each message (the event's attributes, then the server attributes); "" = no key.
    key: str = "serverHost"
    # lz4: the least CPU per GB here (zstd costs ~20% more CPU for a smaller wire size).
    compression: str = field("lz4", check=one_of("none", "gzip", "snappy", "lz4", "zstd"))
    idempotence: bool = True  # off only for brokers without InitProducerId (Kafka < 0.11) or its ACL
    # si and sn headers on every message. They are in the JSON value too: false saves ~1/3 of the sink's CPU
    # (librdkafka's per-header cost), for consumers that read them from the value.
    headers: bool = True
    security_protocol: str = field("plaintext", check=_protocol)
    sasl_mechanism: str = field("", check=_mechanism)
    sasl_username: str = ""
    sasl_password: str = field("", secret=True)
    ssl_ca_location: str = ""  # a PEM file of CA certificates; default: the system's
    connect_timeout: float = field(10.0, check=positive)  # reaching the brokers, and the metadata check
    delivery_timeout: float = field(30.0, check=positive)  # the acknowledgement of every message of a request
    message_max_bytes: int = field(1_000_000, check=positive)  # an event bigger than this is not sent (counted)
    # Queued log bytes per request. librdkafka holds a request's messages until all are acknowledged: 4 MiB of
    # log is ~100 MiB peak RSS; smaller saves memory, but each request ends with a wait for its last batch.
    request_bytes: int = field(4 << 20, check=positive)

    def __post_init__(self) -> None:
        if not self.brokers:
            raise ValueError("brokers: expected at least one broker, such as '127.0.0.1:9092'")
        for i, b in enumerate(self.brokers):
            m = _BROKER.fullmatch(b)
            if not m or not 0 < int(m.group(2)) < 65536:
                raise ValueError(f"brokers[{i}]: expected host:port, such as '127.0.0.1:9092', got {b!r}")
        if bool(self.topic) == bool(self.topics):
            raise ValueError(
                'give exactly one of topic = "NAME" and topics = { log = "...", metric = "...", event = "..." }'
            )
        for kind, name in ({"topic": self.topic} if self.topic else self.topics).items():
            where = "topic" if self.topic else f"topics.{kind}"
            if kind not in KINDS and not self.topic:
                raise ValueError(f"{where}: unknown kind {kind!r} (expected {', '.join(map(repr, KINDS))})")
            if not _TOPIC.fullmatch(name) or name in (".", ".."):
                raise ValueError(f"{where}: {name!r} is not a Kafka topic name (letters, digits, '.', '_', '-')")
        sasl = self.security_protocol.lower().startswith("sasl_")
        if sasl and not (self.sasl_mechanism and self.sasl_username):
            raise ValueError(f"security_protocol {self.security_protocol!r} needs sasl_mechanism and sasl_username")
        if not sasl and (self.sasl_mechanism or self.sasl_username or self.sasl_password):
            raise ValueError("sasl_* options need security_protocol = 'sasl_plaintext' or 'sasl_ssl'")
        if self.ssl_ca_location and "ssl" not in self.security_protocol.lower():
            raise ValueError("ssl_ca_location needs security_protocol = 'ssl' or 'sasl_ssl'")
        if importlib.util.find_spec("confluent_kafka") is None:  # said by check-config, before any upload
            raise ValueError(f"the kafka sink needs the confluent-kafka package: {INSTALL_HINT}")


class _LibLog:
    """What confluent-kafka calls for librdkafka's log lines (``logger.log(level, fmt, *args)``): all of them
    to the shipctl log at debug level. Not stderr: a cron job mails stderr, and a broker that is down makes
    librdkafka repeat its complaint on every reconnect."""

    def log(self, level: int, fmt: str, *args: Any) -> None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("librdkafka: " + fmt, *args)


class _Abort(Exception):
    """Stop producing this request: RETRY with this message and status."""

    def __init__(self, message: str, status: str = "error") -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class KafkaSink(BatchSink):
    def __init__(self, options: KafkaOptions, session: str) -> None:
        self.o = options
        self.session = session
        self.request_bytes = options.request_bytes
        self.topics: dict[str, str] = {k: options.topic for k in KINDS} if options.topic else dict(options.topics)
        self.server_attributes: dict[str, Any] = {}
        self._si = session.encode()
        self._producer: Any = None
        self._checked = False  # the brokers answered and every topic exists (this producer)
        self._errors: list[bytes] = []  # librdkafka's error callbacks since the last request, for messages
        self._down = False  # an error callback said the brokers cannot be reached as configured
        self._failed = 0
        self._first_failure = ""

    def bind(self, server_attributes: Mapping[str, Any]) -> None:
        self.server_attributes = dict(server_attributes)

    # --- the producer ---------------------------------------------------------------------------------
    def _config(self) -> dict[str, Any]:
        o = self.o
        conf: dict[str, Any] = {
            "bootstrap.servers": ",".join(o.brokers),
            "client.id": "shipctl",
            "acks": "all",
            "enable.idempotence": o.idempotence,
            "compression.type": o.compression,
            "allow.auto.create.topics": False,  # a missing topic is the operator's to create: say so
            "message.timeout.ms": max(1, int(o.delivery_timeout * 1000)),
            "request.timeout.ms": max(1, int(min(o.delivery_timeout, 30.0) * 1000)),
            "socket.connection.setup.timeout.ms": max(1000, int(o.connect_timeout * 1000)),
            # Topic metadata answers at once: no 30 s wait for a topic "still being created".
            "topic.metadata.propagation.max.ms": max(1, int(min(o.connect_timeout, o.delivery_timeout) * 1000)),
            # A request is flushed as a whole: let librdkafka hold all of it, and build large batches.
            "queue.buffering.max.messages": 2_000_000,
            "queue.buffering.max.kbytes": max(65536, 4 * o.request_bytes // 1024),
            "message.max.bytes": o.message_max_bytes + 4096,  # room for key, headers and the record overhead
            "batch.size": 1_000_000,
            # A request's messages are queued faster than the broker thread sends them, so its batches fill up
            # (batch.size) before this runs out. With 5 ms they went out at ~0.6 MB, with a wake-up of the
            # broker thread per batch: +40% CPU in that thread, contending with produce() for the partition
            # queue's lock (200 MB of log: 1.4 -> 1.0 CPU-s). No wait added: flush() at the end of each request
            # sends what is queued at once, whatever linger.ms says.
            "linger.ms": LINGER_MS,
            "security.protocol": o.security_protocol.lower(),
            "logger": _LibLog(),
            "error_cb": self._on_error,
            "on_delivery": self._on_delivery,
            # Reports only for messages that failed: one Python call per message less. A request is confirmed
            # when flush() leaves nothing unresolved and no failure was reported (see _transmit).
            "delivery.report.only.error": True,
        }
        if o.sasl_mechanism:
            conf["sasl.mechanism"] = o.sasl_mechanism.upper()
            conf["sasl.username"] = o.sasl_username
            conf["sasl.password"] = o.sasl_password
        if o.ssl_ca_location:
            conf["ssl.ca.location"] = o.ssl_ca_location
        return conf

    def _connect(self) -> SendResult | None:
        """Make the producer and check the topics once; a RETRY result says why not."""
        if self._producer is None:
            try:
                import confluent_kafka
            except ImportError as exc:
                raise ConfigError(f"the kafka sink needs the confluent-kafka package: {INSTALL_HINT}") from exc
            try:
                self._producer = confluent_kafka.Producer(self._config())
            except (confluent_kafka.KafkaException, ValueError, TypeError) as exc:
                return self._retry(f"cannot set up the Kafka producer: {_text(exc)}")
            self._checked = False
        if not self._checked:
            problem = self._check_topics()
            if problem is not None:
                self._drop()
                return problem
            self._checked = True
        return None

    def _check_topics(self) -> SendResult | None:
        """One metadata request per topic: the brokers answer, the credentials pass, the topic exists."""
        from confluent_kafka import KafkaError, KafkaException

        brokers = ",".join(self.o.brokers)
        deadline = time.monotonic() + self.o.connect_timeout
        for topic in sorted(set(self.topics.values())):
            while True:
                # Short metadata requests, the error callbacks served between them: a refused connection or
                # refused credentials end the wait at once instead of after connect_timeout.
                try:
                    md = self._producer.list_topics(topic, timeout=max(0.01, min(0.2, deadline - time.monotonic())))
                    break
                except KafkaException as exc:
                    self._producer.poll(0)
                    late = time.monotonic() >= deadline
                    if self._down or late:
                        why = self._errors[-1] if self._errors else _text(exc)
                        within = f" within {self.o.connect_timeout:g} s" if late and not self._down else ""
                        return self._retry(
                            f"no answer from the Kafka brokers {brokers}{within}: {why}",
                            "timeout" if within else "error",
                        )
            t = md.topics.get(topic)
            err = t.error if t is not None else None
            if t is None or (err is not None and err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART):
                return self._retry(
                    f"topic {topic!r} does not exist on the Kafka brokers {brokers}: create it"
                    " (the sink does not create topics)",
                    "unknown topic",
                )
            if err is not None:
                return self._retry(f"topic {topic!r} on {brokers}: {_text(err)}", "error")
        if self.o.idempotence:
            self._await_leader(deadline)
        return None

    def _await_leader(self, deadline: float) -> None:
        """One more metadata request, for an idempotent producer, before its first message.

        Why: the first answer comes over the bootstrap connection, which librdkafka then drops for the
        brokers that answer names. If the idempotent producer asks for its ProducerId in that gap, it finds
        no broker up and tries again only 500 ms later (a fixed timer in librdkafka), holding back every
        message of the first request meanwhile: 8 of 40 fresh producers against tansu did. The second
        request is answered once the new connection is up (about 50 ms here; when the first answer took that
        long it returns at once), and the ProducerId then comes without the timer: 0 stalls in 40 tries, no
        slower when there would have been none. Its failure changes nothing: the first produce then waits for
        the ProducerId as before."""
        from confluent_kafka import KafkaException

        topic = min(self.topics.values())
        try:
            self._producer.list_topics(topic, timeout=max(0.01, min(1.0, deadline - time.monotonic())))
        except KafkaException as exc:
            log.debug("kafka: second metadata request: %s", _text(exc))

    def _on_error(self, err: Any) -> None:
        from confluent_kafka import KafkaError

        if err.code() != KafkaError._ALL_BROKERS_DOWN or not self._errors:  # "1/1 brokers are down" says less
            self._errors.append(_text(err))
            del self._errors[:-5]
        # Every broker refused the connection, the credentials or the TLS handshake: no point waiting on.
        self._down = (
            self._down or err.fatal() or err.code() in (KafkaError._ALL_BROKERS_DOWN, KafkaError._AUTHENTICATION)
        )

    def _on_delivery(self, err: Any, msg: Any) -> None:
        if err is not None:
            self._failed += 1
            if not self._first_failure:
                self._first_failure = _text(err)

    def _drop(self) -> None:
        """Forget the producer (after a failure, and at the end): nothing of it may linger or block."""
        p, self._producer = self._producer, None
        self._checked = False
        if p is None:
            return
        try:
            p.purge()  # queued and in-flight messages end now, as failed reports
            p.flush(0)
        except Exception as exc:  # a producer being thrown away has nothing more to say
            log.debug("kafka: dropping the producer: %s", exc)

    def _retry(self, message: str, status: str = "error", size: int = 0) -> SendResult:
        return SendResult(RETRY, scrub(f"sink {self.sink_id!r}: {message}"), status=status, request_bytes=size)

    # --- sending ----------------------------------------------------------------------------------------
    def _key(self, attrs: Mapping[str, Any]) -> str | None:
        name = self.o.key
        if not name:
            return None
        value = attrs.get(name, self.server_attributes.get(name))
        return None if value is None else _attr_text(value)

    def _groups(self, batches: list[Batch]) -> Iterator[tuple[str, str | None, Iterable[tuple[int, str]]]]:
        """(topic, key, its (sn, JSON line) pairs): one group per plain-lines batch (one kind and one set of
        attributes for all its lines, so the loop over them does nothing per line but produce), one per
        event of the other batches. The lines are pure ASCII (``encode_lines`` escapes the rest)."""
        session = self.session
        for b in batches:
            if b.fmt == FMT_RAW:
                yield self._topic(b.kind), self._key(b.attrs), encode_lines([b], session)
            else:
                for pair, ev in zip(encode_lines([b], session), b.events(), strict=True):
                    yield self._topic(ev.kind), self._key(ev.attrs), (pair,)

    def _topic(self, kind: str) -> str:
        topic = self.topics.get(kind)
        if topic is None:
            raise _Abort(
                f"topics names no topic for kind {kind!r}: add topics.{kind}, or take {kind!r} out of this sink's"
                " kinds = [...]",
                "no topic",
            )
        return topic

    # --- encoding: in a worker thread, ahead of post() ---------------------------------------------------
    def _encode(self, batches: list[Batch], first_sn: int) -> _Encoded:
        """Every message of a request, ready for produce(). Plain-lines batches are formatted without Python
        work per line (``map`` over C functions: the JSON escaping of each line and one ``%`` with its time,
        text and sequence number), into the very bytes ``encode_lines`` gives; other batches event by event."""
        out = _Encoded()
        out.batches = batches  # for upload --dry-run
        try:
            if len(self.topics) < len(KINDS):  # every kind without a topic is named the same way, first by name
                kinds: set[str] = set()
                for b in batches:
                    kinds.update([b.kind] if b.fmt == FMT_RAW else (ev.kind for ev in b.events() if ev.sn >= first_sn))
                for kind in sorted(kinds):
                    self._topic(kind)
            session = self.session
            for b in batches:
                if b.fmt == FMT_RAW:
                    out.add(self._topic(b.kind), self._key(b.attrs), *_raw_values(b, first_sn, session))
                    continue
                for (sn, line), ev in zip(encode_lines([b], session), b.events(), strict=True):
                    if sn >= first_sn:
                        out.add(self._topic(ev.kind), self._key(ev.attrs), [line[:-1].encode()], sn)
        except _Abort as exc:  # a kind without a topic: nothing of the request may go
            out.abort = exc
        out.drop_over(self.o.message_max_bytes)
        return out

    def seal(self, request: Request) -> None:
        payload = request.payload
        if isinstance(payload, _Encoded):
            if not payload.consumed:
                return
            payload = payload.batches  # sent once already: its messages were let go
        request.payload = self._encode(payload, request.spans[0].first_sn)

    def post(self, request: Request) -> SendResult:
        self.seal(request)
        return self._transmit(request.payload)

    def show(self, request: Request) -> str:
        batches = request.payload
        if isinstance(batches, _Encoded):
            batches = batches.batches
        return self.describe(batches)

    def send(self, batches: list[Batch], first_sn: int) -> SendResult:
        return self._transmit(self._encode(batches, first_sn))

    # --- producing ----------------------------------------------------------------------------------------
    def _transmit(self, enc: _Encoded) -> SendResult:
        if enc.abort is not None:
            return self._retry(enc.abort.message, enc.abort.status)
        self._errors.clear()
        self._down = False
        problem = self._connect()
        if problem is not None:
            return problem
        p = self._producer
        self._failed = 0
        self._first_failure = ""
        sent = size = 0
        deadline = time.monotonic() + self.o.delivery_timeout
        too_big = list(enc.too_big)
        try:
            # librdkafka copies each value: ours can go as soon as produced (a post of this request again
            # encodes it again from its batches, see seal).
            groups, enc.groups, enc.consumed = enc.groups, [], True
            groups.reverse()
            while groups:
                topic, key, values, first = groups.pop()
                for start in range(0, len(values), POLL_EVERY):
                    chunk = values[start : start + POLL_EVERY]
                    n, over = self._produce_all(topic, key, chunk, first + start, deadline)
                    sent += n
                    too_big += over
                    size += sum(map(len, chunk))
                    # The delivery reports so far (each one a call into confluent-kafka, which takes the GIL;
                    # the Python callback only for failures) served every POLL_EVERY messages: see there.
                    p.poll(0)
                del values, chunk
            # Each message reports within message.timeout.ms (delivery_timeout) of being queued: a bounded wait.
            left = p.flush(self.o.delivery_timeout + 1.0)
        except _Abort as exc:
            self._drop()
            return self._retry(exc.message, exc.status, size)
        # delivery.report.only.error: a report comes for each message that failed, none for one acknowledged.
        # flush() returning 0 means no message is left unresolved, so no failure report means all acknowledged.
        if left or self._failed:
            return self._failure(sent, left, size)
        note = ""
        if too_big:
            too_big.sort()
            note = (
                f"{len(too_big)} events over message_max_bytes ({self.o.message_max_bytes}) not sent"
                f" (sn {', '.join(map(str, too_big[:5]))}{', ...' if len(too_big) > 5 else ''})"
            )
        return SendResult(OK, note, status="partial" if too_big else "success", request_bytes=size)

    def _produce_all(
        self, topic: str, key: str | None, values: list[bytes], first: int, deadline: float
    ) -> tuple[int, list[int]]:
        """Produce ``values`` (sequence numbers ``first``, ``first + 1``, ...) in order; returns how many were
        queued and the sequence numbers of those over the broker's size limit. The produce() calls are made by
        ``starmap`` (no Python frame per message), with the arguments by position: topic, value, key,
        partition (-1: the partitioner), on_delivery, callback (None: the producer's), timestamp (0: now),
        headers."""
        from confluent_kafka import KafkaError, KafkaException

        produce = self._producer.produce
        n = len(values)
        over: list[int] = []
        pos = 0
        while pos < n:
            # Lazily: each argument tuple lives for one call only (a list of them all would be walked by every
            # run of the garbage collector while it grows).
            todo = iter(values if pos == 0 else values[pos:])
            if self.o.headers:
                # One headers dict for every message, its "sn" set before each call: produce() copies the
                # headers into librdkafka's own before it returns. The setter rides in the ``callback`` slot
                # (it returns None, as that slot wants), so zip() calls it once per tuple, just before the
                # produce() that tuple is for. A dict (insertion order: si, then sn) is also cheaper for
                # produce() to read than a list of pairs: ~0.3 us a message less in all, the list and its
                # tuples included.
                headers = {"si": self._si, "sn": b""}
                sns = map(b"%d".__mod__, range(first + pos, first + n))  # bytes: taken as they are, not encoded
                set_sn = map(headers.__setitem__, repeat("sn"), sns)
                args: Iterator[tuple[Any, ...]] = zip(
                    repeat(topic), todo, repeat(key), repeat(-1), repeat(None), set_sn, repeat(0), repeat(headers)
                )
            else:
                args = zip(repeat(topic), todo, repeat(key))
            try:
                deque(starmap(produce, args), 0)
                return n - len(over), over
            except BufferError:  # librdkafka's queue is full: let the brokers take some first
                failed = n - length_hint(todo) - 1  # zip took one value per call: the one whose produce() raised
                self._produce_when_room(*self._args(topic, values[failed], key, first + failed), deadline=deadline)
            except KafkaException as exc:
                failed = n - length_hint(todo) - 1
                if exc.args[0].code() != KafkaError.MSG_SIZE_TOO_LARGE:
                    raise _Abort(f"cannot produce to {topic!r}: {_text(exc)}") from None
                over.append(first + failed)  # with its key and headers it is over the limit
            pos = failed + 1
        return n - len(over), over

    def _args(self, topic: str, value: bytes, key: str | None, sn: int) -> tuple[Any, ...]:
        """produce()'s arguments for one message, by position as ``_produce_all`` gives them."""
        if self.o.headers:
            return (topic, value, key, -1, None, None, 0, {"si": self._si, "sn": b"%d" % sn})
        return (topic, value, key)

    def _produce_when_room(self, *args: Any, deadline: float) -> None:
        while True:
            if time.monotonic() > deadline:
                raise _Abort(f"the brokers took no messages within {self.o.delivery_timeout:g} s", "timeout")
            self._producer.poll(0.05)
            try:
                self._producer.produce(*args)
                return
            except BufferError:
                continue

    def _failure(self, sent: int, left: int, size: int) -> SendResult:
        """Some message was not acknowledged: the whole request goes again later (same si/sn)."""
        self._drop()  # also ends what is still queued, so no report of this request arrives in the next
        missing = self._failed + left
        why = self._first_failure or f"no delivery report within {self.o.delivery_timeout:g} s"
        if self._errors and self._errors[-1] not in why:
            why += f"; last broker error: {self._errors[-1]}"
        timed_out = left or "timed out" in why.lower()
        return self._retry(
            f"{missing} of {sent} messages not acknowledged by the Kafka brokers ({why});"
            " the whole request is sent again later, consumers drop repeats by si + sn",
            "timeout" if timed_out else "error",
            size,
        )

    def describe(self, batches: list[Batch]) -> str:
        lines = []
        counts: dict[str, int] = {}
        try:
            for topic, key, group in self._groups(batches):
                for sn, line in group:
                    counts[topic] = counts.get(topic, 0) + 1
                    if len(lines) < SHOW_MESSAGES:
                        shown = f"si:{self.session},sn:{sn}" if self.o.headers else "none"
                        lines.append(f"  key={key!r} headers={shown} value={line[:2000].rstrip()}")
        except _Abort as exc:
            lines.append(f"  (stops here: {exc.message})")
        where = ", ".join(f"{n} to topic {t!r}" for t, n in counts.items()) or "nothing"
        auth = f", {self.o.security_protocol.lower()}" + (
            f" as {self.o.sasl_username!r}" if self.o.sasl_username else ""
        )
        head = (
            f"produce {sum(counts.values())} messages ({where}) to the Kafka brokers {','.join(self.o.brokers)}"
            f" (acks=all, idempotence {'on' if self.o.idempotence else 'off'}, compression {self.o.compression}{auth})"
        )
        return "\n".join([head, *lines])

    def close(self) -> None:
        self._drop()


class _Encoded:
    """A request's messages as produce() takes them: groups of consecutive messages that share topic and key,
    each with the sequence number of its first message (the others follow one by one)."""

    def __init__(self) -> None:
        self.groups: list[tuple[str, str | None, list[bytes], int]] = []
        self.too_big: list[int] = []  # sequence numbers of events left out: over message_max_bytes
        self.abort: _Abort | None = None
        self.batches: list[Batch] = []
        self.consumed = False  # produced (or tried): the groups were let go

    def add(self, topic: str, key: str | None, values: list[bytes], first: int) -> None:
        last = self.groups[-1] if self.groups else None
        if (
            last is not None
            and last[0] == topic
            and last[1] == key
            and last[3] + len(last[2]) == first
            and len(values) == 1
        ):
            last[2].append(values[0])  # one event after another of a monitor batch
            return
        if values:
            self.groups.append((topic, key, values, first))

    def drop_over(self, limit: int) -> None:
        """Leave out the values over ``limit`` bytes (ASCII: characters are bytes), recording their sn. Whole
        groups are checked with one ``max`` each; only a group holding one is rebuilt."""
        groups, self.groups = self.groups, []
        for topic, key, values, first in groups:
            if max(map(len, values)) <= limit:
                self.groups.append((topic, key, values, first))
                continue
            for i, v in enumerate(values):
                if len(v) > limit:
                    self.too_big.append(first + i)
                else:
                    self.groups.append((topic, key, [v], first + i))
            # (consecutive singles of one topic and key are not merged again: a rare case, kept simple)


def _raw_values(b: Batch, first_sn: int, session: str) -> tuple[list[bytes], int]:
    """The JSON value of each line of a plain-lines batch from ``first_sn`` on, byte for byte what
    ``encode_lines`` writes (without its newline), and the sequence number of the first.

    No Python work per line: one bytes ``%`` per line, called by ``map`` (about 0.3 us a line here, against
    1.3 us for a generator of f-strings). A batch of printable ASCII, the usual case, is escaped as a whole
    (backslashes and quotes, by two ``replace``); any other goes line by line through the json module's
    escaper, as ``encode_lines`` does."""
    enc = encode_basestring_ascii
    payload = b.payload
    if payload.isascii() and not PRINTABLE_ASCII.outside(payload):
        if b"\\" in payload:
            payload = payload.replace(b"\\", b"\\\\")
        if b'"' in payload:
            payload = payload.replace(b'"', b'\\"')
        lines = payload.split(b"\n")
        del lines[-1]  # each line ends in "\n"; what follows the last one is empty
        quote = b'"'
    else:
        lines = list(map(str.encode, map(enc, b.messages())))  # quoted; ASCII: every other character escaped
        quote = b""
    start = max(0, first_sn - b.sn)
    if start:
        del lines[:start]
    attrs = json.dumps(b.attrs, separators=(",", ":"))
    head = f',"kind":{enc(b.kind)},"source":{enc(b.source)},"message":'.encode() + quote
    tail = quote + f',"attrs":{attrs},"si":"{session}","sn":'.encode()
    fmt = b'{"ts":%d' + head.replace(b"%", b"%%") + b"%b" + tail.replace(b"%", b"%%") + b"%d}"
    ts0, sn0, n = b.ts + start, b.sn + start, len(lines)
    return list(map(fmt.__mod__, zip(range(ts0, ts0 + n), lines, range(sn0, sn0 + n), strict=True))), sn0


def _text(err: Any) -> str:
    """A KafkaError / KafkaException as its own words, not its repr."""
    inner = err.args[0] if isinstance(err, Exception) and err.args else err
    words = getattr(inner, "str", None)
    return str(words() if callable(words) else inner)


def _attr_text(v: Any) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)
