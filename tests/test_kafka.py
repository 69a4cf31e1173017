"""The kafka sink against a real Kafka-protocol broker (tansu, tests/servers_kafka.py), read back with
confluent-kafka: values, keys and headers exactly; a broker that is down, a missing topic, lost
acknowledgements, refused credentials and kill -9, each ending with every event there exactly once after
dropping repeats by (si, sn), as a consumer does."""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Env, assert_exactly_once, numbered
from tests.servers_kafka import Broker, Factory, Message, free_port, tansu_binary

KINDS = ("log", "metric", "event")
CODECS = ("none", "gzip", "snappy", "lz4", "zstd")
QUIET = "implicit_metric_monitor = false\nimplicit_agent_process_metrics_monitor = false\n"


@pytest.fixture(scope="module")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """One broker for the module; each test makes topics of its own."""
    broker = Broker(tansu_binary(), tmp_path_factory.mktemp("tansu"), free_port(), None, ())
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def kafka_factory(tmp_path: Path) -> Iterator[Factory]:
    """Brokers of the test's own (a chosen port, authentication, a relay in front), stopped at its end."""
    f = Factory(tansu_binary(), tmp_path)
    try:
        yield f
    finally:
        f.close()


def topic_name() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


def kafka_sink(address: str, body: str = "", sink_id: str = "bus") -> str:
    return f'[[sinks]]\nid = "{sink_id}"\ntype = "kafka"\nbrokers = ["{address}"]\n{body}\n'


def write_config(env: Env, sinks: str, *, agent: str = "", logs: str | None = None) -> Path:
    log = env.logs / "app.log"
    logs = f'[[logs]]\npath = "{log}"\n' if logs is None else logs
    env.write_config(f"[agent]\n{QUIET}{agent}\n{logs}{sinks}", sink=False)
    return log


def dedup(messages: list[Message]) -> dict[tuple[bytes, int], Message]:
    """What a consumer keeps: the first message of each (si, sn), from the headers."""
    kept: dict[tuple[bytes, int], Message] = {}
    for m in messages:
        h = dict(m.headers)
        kept.setdefault((h["si"], int(h["sn"])), m)
    return kept


def log_lines(messages: list[Message]) -> list[str]:
    return [json.loads(m.value)["message"] for m in messages]


def one_line(stderr: str) -> str:
    """A failed run says why in one line: no librdkafka chatter, no traceback."""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr and "rdkafka" not in stderr, stderr
    return lines[0]


def test_round_trip_of_logs_and_metrics_exactly_as_the_file_sink_writes_them(env: Env, kafka: Broker) -> None:
    topic = kafka.create_topic(topic_name())
    other = env.logs / "db.log"
    log = write_config(
        env,
        f'[[sinks]]\nid = "archive"\ntype = "file"\npath = "{env.sink}"\n'
        + kafka_sink(kafka.address, f'topic = "{topic}"'),
        agent='server_attributes = { serverHost = "web-1" }\n'
        '[[monitors]]\ntype = "shell"\nid = "answer"\ncommand = "echo 42"\n',
        logs=f'[[logs]]\npath = "{env.logs / "app.log"}"\n'
        f'[[logs]]\npath = "{other}"\nattributes = {{ serverHost = "db-7" }}\n',
    )
    log.write_text('plain line\nsay "hi" \\ \u00e9t\u00e9 \x01\n')
    other.write_text("from the database host\n")
    r = env.proc("run")
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""

    archived = [line for line in env.sink.read_text().splitlines() if line]
    got = kafka.messages(topic)
    assert len(got) == len(archived) == 4
    si = dict(got[0].headers)["si"].decode()
    file_si = json.loads(archived[0])["si"]
    by_sn = {json.loads(m.value)["sn"]: m for m in got}
    for line in archived:
        ev = json.loads(line)
        m = by_sn[ev["sn"]]
        # The very bytes the file sink wrote, but for this sink's own sequence stream id.
        assert m.value == line.replace(f'"si":"{file_si}"', f'"si":"{si}"').encode()
        assert m.headers == [("si", si.encode()), ("sn", str(ev["sn"]).encode())]
        assert m.key == (b"db-7" if ev["source"] == str(other) else b"web-1")
    kinds = sorted(json.loads(m.value)["kind"] for m in got)
    assert kinds == ["log", "log", "log", "metric"]
    assert 'say "hi" \\ \u00e9t\u00e9 \x01' in log_lines(got)
    status = json.loads(env.proc("status", "--json").stdout)
    bus = next(s for s in status["sinks"] if s["sink"] == "bus")
    assert bus["events_uploaded"] == 4 and bus["pending_events"] == 0 and bus["last_status"] == "success"


def _queue_monitor_batch(env: Env) -> None:
    """One monitor batch holding a metric sample and an event, as a script monitor queues them."""
    from shipctl.model import FMT_JSON, PendingBatch
    from shipctl.state import State
    from shipctl.state.queue import insert_batch

    events = [
        {"m": "disk 0.5", "a": {"metric": "disk", "value": 0.5}, "t": 1_000, "k": "metric",
         "x": {"n": "disk", "v": 0.5, "t": "gauge", "d": {"monitor": "m"}}},
        {"m": "Backup finished", "a": {"event": "Backup finished", "host": "h9"}, "t": 2_000, "k": "event"},
    ]  # fmt: skip
    with State.open(env.state) as state, state.write() as conn:
        insert_batch(conn, PendingBatch("metric", "m", 1_000, {}, FMT_JSON, json.dumps(events).encode(), 2))


def test_topics_by_kind_with_every_compression(env: Env, kafka: Broker) -> None:
    """One sink per codec, all in one run: each gets its logs, its metric and its event in their topics."""
    topics = {c: {k: kafka.create_topic(topic_name()) for k in KINDS} for c in CODECS}
    sinks = "".join(
        kafka_sink(
            kafka.address,
            f'compression = "{c}"\nkey = "host"\n'
            f'topics = {{ log = "{t["log"]}", metric = "{t["metric"]}", event = "{t["event"]}" }}',
            sink_id=c,
        )
        for c, t in topics.items()
    )
    log = write_config(env, sinks, logs=f'[[logs]]\npath = "{env.logs / "app.log"}"\nattributes = {{ host = "h1" }}\n')
    log.write_text(numbered(3000))
    assert env.proc("tail-once").returncode == 0
    _queue_monitor_batch(env)
    r = env.proc("upload")
    assert r.returncode == 0, r.stderr
    stored = kafka.read([name for t in topics.values() for name in t.values()])
    for t in topics.values():
        logs = stored[t["log"]]
        assert_exactly_once(log_lines(logs), range(3000))
        assert {m.key for m in logs} == {b"h1"}  # key = "host": the log's attribute
        (metric,) = stored[t["metric"]]
        (event,) = stored[t["event"]]
        assert json.loads(metric.value)["attrs"] == {"metric": "disk", "value": 0.5} and metric.key is None
        assert json.loads(event.value)["message"] == "Backup finished" and event.key == b"h9"
        assert int(dict(event.headers)["sn"]) == int(dict(metric.headers)["sn"]) + 1


def test_no_key_no_headers_and_a_kind_without_a_topic(env: Env, kafka: Broker) -> None:
    topic = kafka.create_topic(topic_name())
    sink = kafka_sink(kafka.address, f'key = ""\nheaders = false\ntopics = {{ log = "{topic}" }}')
    log = write_config(env, sink)
    log.write_text("one\ntwo\n")
    assert env.proc("tail-once").returncode == 0
    _queue_monitor_batch(env)
    r = env.proc("upload")
    assert r.returncode == 69
    assert (
        "topics names no topic for kind 'event': add topics.event, or take 'event' out of this sink's kinds"
        in one_line(r.stderr)
    )
    assert kafka.high_watermark(topic) == 0  # checked before producing: not the logs of the request either
    # Routing the metrics elsewhere is the fix: this sink then takes the logs only.
    write_config(env, sink + 'kinds = ["log"]\n')  # the metric and the event go nowhere else: gone
    r = env.proc("upload", "--force")
    assert r.returncode == 0, r.stderr
    got = kafka.messages(topic)
    assert log_lines(got) == ["one", "two"] and [m.key for m in got] == [None, None]
    assert [m.headers for m in got] == [[], []]  # si and sn are in the value: [1, 2], the same stream
    assert [json.loads(m.value)["sn"] for m in got] == [1, 2] and len({json.loads(m.value)["si"] for m in got}) == 1


def test_broker_down_for_a_run_then_back_delivers_everything_once(env: Env, kafka_factory: Factory) -> None:
    port = free_port()
    topic = topic_name()
    log = write_config(env, kafka_sink(f"127.0.0.1:{port}", f'topic = "{topic}"\nconnect_timeout = 5'))
    log.write_text(numbered(20_000))
    t0 = time.monotonic()
    r = env.proc("run")
    took = time.monotonic() - t0
    assert r.returncode == 69
    said = one_line(r.stderr)
    assert f"no answer from the Kafka brokers 127.0.0.1:{port}" in said and "Connection refused" in said, said
    assert took < 5, took  # every broker refused: no waiting out connect_timeout
    status = json.loads(env.proc("status", "--json").stdout)
    (bus,) = status["sinks"]
    assert bus["pending_events"] == 20_000 and bus["consecutive_failures"] == 1

    broker = kafka_factory.broker(port)
    broker.create_topic(topic)
    assert env.proc("upload").returncode == 0  # still backing off: a no-op
    assert broker.high_watermark(topic) == 0
    r = env.proc("upload", "--force")
    assert r.returncode == 0, r.stderr
    got = broker.messages(topic)
    assert_exactly_once(log_lines(got), range(20_000))
    assert sorted(int(dict(m.headers)["sn"]) for m in got) == list(range(1, 20_001))


def test_missing_topic_backs_off_until_it_is_created(env: Env, kafka: Broker) -> None:
    topic = topic_name()
    log = write_config(env, kafka_sink(kafka.address, f'topic = "{topic}"'))
    log.write_text("a\nb\n")
    r = env.proc("run")
    assert r.returncode == 69
    assert f"topic {topic!r} does not exist on the Kafka brokers {kafka.address}: create it" in one_line(r.stderr)
    assert topic not in _topics(kafka)  # not created behind the operator's back
    kafka.create_topic(topic)
    r = env.proc("upload", "--force")
    assert r.returncode == 0, r.stderr
    assert log_lines(kafka.messages(topic)) == ["a", "b"]


def _topics(kafka: Broker) -> set[str]:
    from confluent_kafka.admin import AdminClient

    from tests.servers_kafka import quiet

    return set(AdminClient({"bootstrap.servers": kafka.address, "logger": quiet}).list_topics(timeout=10).topics)


def test_unacknowledged_messages_retry_the_whole_request(env: Env, kafka_factory: Factory) -> None:
    """The broker stores the first batch but never answers: the request fails within delivery_timeout, and the
    next run sends all of it again with the same si/sn, which a consumer drops."""
    broker, relay = kafka_factory.relayed()
    topic = broker.create_topic(topic_name())
    log = write_config(env, kafka_sink(broker.address, f'topic = "{topic}"\ndelivery_timeout = 1'))
    log.write_text(numbered(5000))
    relay.mode = "blackhole"
    t0 = time.monotonic()
    r = env.proc("run")
    assert r.returncode == 69 and time.monotonic() - t0 < 10
    said = one_line(r.stderr)
    assert "of 5000 messages not acknowledged by the Kafka brokers" in said, said
    assert "the whole request is sent again later, consumers drop repeats by si + sn" in said
    stored = len(broker.messages(topic))
    assert stored > 0  # the first batch reached the log; its acknowledgement did not reach shipctl
    relay.mode = "pass"
    r = env.proc("upload", "--force")
    assert r.returncode == 0, r.stderr
    got = broker.messages(topic)
    assert len(got) == 5000 + stored  # the stored part twice, with the same si and sn
    assert_exactly_once(log_lines(dedup(got).values()), range(5000))  # type: ignore[arg-type]


@pytest.mark.parametrize("idempotence", [True, False])
def test_a_lost_reply_is_deduplicated_by_the_idempotent_producer(
    env: Env, kafka_factory: Factory, idempotence: bool
) -> None:
    """tansu 0.6.0 implements idempotent produce: librdkafka re-sends a batch whose reply was lost, with the same
    producer id and sequence, and the broker keeps one copy. With idempotence = false the copy stays (same
    si/sn, so a consumer still drops it)."""
    broker, relay = kafka_factory.relayed()
    topic = broker.create_topic(topic_name())
    flag = "true" if idempotence else "false"
    log = write_config(env, kafka_sink(broker.address, f'topic = "{topic}"\nidempotence = {flag}'))
    log.write_text(numbered(200))
    relay.mode = "drop-reply"
    r = env.proc("run")
    assert r.returncode == 0, r.stderr
    assert relay.produce_requests >= 2  # the lost one and its re-send
    got = broker.messages(topic)
    assert_exactly_once(log_lines(dedup(got).values()), range(200))  # type: ignore[arg-type]
    if idempotence:
        assert len(got) == 200
    else:
        assert len(got) > 200


def test_kill_9_during_an_upload_repeats_at_most_the_request_in_flight(env: Env, kafka: Broker) -> None:
    topic = kafka.create_topic(topic_name())
    request_bytes = 16_384
    log = write_config(
        env,
        kafka_sink(kafka.address, f'topic = "{topic}"\nrequest_bytes = {request_bytes}'),
        agent="batch_bytes = 4096\n",
        logs=f'[[logs]]\npath = "{env.logs / "app.log"}"\nmax_line_size = 100\n',  # batches of 4096 bytes
    )
    n = 30_000
    log.write_text(numbered(n, width=10))  # 23-byte lines, ~180 per batch, ~4 batches per request
    assert env.proc("tail-once").returncode == 0
    rng = random.Random(20261130)
    kills = 0
    while kills < 8:
        before = kafka.high_watermark(topic)
        if before >= n:
            break
        proc = env.popen("upload", "--force", "--max-seconds", "0")
        deadline = time.monotonic() + 20
        while kafka.high_watermark(topic) == before and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(rng.uniform(0, 0.01))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        _, err = proc.communicate()
        assert "Traceback" not in err, err
    assert kills >= 3, f"only {kills} kills before everything was delivered"
    r = env.proc("upload", "--force", "--max-seconds", "0")
    assert r.returncode == 0, r.stderr
    got = kafka.messages(topic)
    kept = dedup(got)
    assert_exactly_once(log_lines(list(kept.values())), range(n))
    # Only what a killed run had in flight came again: at most one request (a few whole batches) per kill.
    per_request = (request_bytes + 4096) // 23 + 1
    assert len(got) - len(kept) <= kills * per_request, (len(got) - len(kept), kills)


def test_refused_credentials_say_so_and_never_show_the_password(env: Env, kafka_factory: Factory) -> None:
    broker = kafka_factory.broker(None, "--authentication")
    log = write_config(
        env,
        kafka_sink(
            broker.address,
            'topic = "secure"\nsecurity_protocol = "sasl_plaintext"\nsasl_mechanism = "SCRAM-SHA-256"\n'
            'sasl_username = "shipper"\nsasl_password = "$KAFKA_PASSWORD"\n',
        ),
    )
    env.config.write_text('import_vars = ["KAFKA_PASSWORD"]\n' + env.config.read_text())
    log.write_text("x\n")
    password = "hunter2-not-for-logs"
    t0 = time.monotonic()
    r = _run_with(env, {"KAFKA_PASSWORD": password}, "run")
    assert r.returncode == 69 and time.monotonic() - t0 < 8
    said = one_line(r.stderr)
    assert "SASL authentication error" in said and "SCRAM" in said, said
    status = _run_with(env, {"KAFKA_PASSWORD": password}, "status", "--json").stdout
    dry = _run_with(env, {"KAFKA_PASSWORD": password}, "upload", "--dry-run").stdout
    assert "shipper" in dry
    for text in (r.stdout, r.stderr, status, dry, (env.state.parent / "shipctl.log").read_text()):
        assert password not in text


def _run_with(env: Env, extra: dict[str, str], *args: str, raw: bool = False) -> subprocess.CompletedProcess[str]:
    """shipctl (or, ``raw``, python with these arguments) with variables added to the environment."""
    argv = [sys.executable, *args] if raw else [sys.executable, "-m", "shipctl", *args, "-c", str(env.config)]
    return subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **extra},
    )


def test_an_event_over_message_max_bytes_is_counted_not_stalling_the_rest(env: Env, kafka: Broker) -> None:
    topic = kafka.create_topic(topic_name())
    log = write_config(env, kafka_sink(kafka.address, f'topic = "{topic}"\nmessage_max_bytes = 2000'))
    log.write_text("before\n" + "y" * 5000 + "\nafter\n")
    r = env.proc("run")
    assert r.returncode == 0, r.stderr
    assert log_lines(kafka.messages(topic)) == ["before", "after"]
    status = json.loads(env.proc("status", "--json").stdout)
    (bus,) = status["sinks"]
    assert bus["pending_events"] == 0 and bus["last_status"] == "partial"
    assert bus["last_message"] == "1 events over message_max_bytes (2000) not sent (sn 2)"
    assert any("message_max_bytes" in n["message"] for n in status["notices"]), status["notices"]


def test_dry_run_shows_the_messages_and_sends_nothing(env: Env, kafka: Broker) -> None:
    topic = kafka.create_topic(topic_name())
    log = write_config(
        env, kafka_sink(kafka.address, f'topic = "{topic}"'), agent='server_attributes = { serverHost = "h" }\n'
    )
    log.write_text("first\nsecond\n")
    assert env.proc("tail-once").returncode == 0
    r = env.proc("upload", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert f"produce 2 messages (2 to topic {topic!r}) to the Kafka brokers {kafka.address}" in r.stdout
    assert "key='h' headers=si:" in r.stdout and '"message":"second"' in r.stdout
    assert kafka.high_watermark(topic) == 0


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ('brokers = ["127.0.0.1:9092"]', "give exactly one of topic"),
        ('brokers = ["127.0.0.1:9092"]\ntopic = "a"\ntopics = { log = "b" }', "give exactly one of topic"),
        ('brokers = ["127.0.0.1"]\ntopic = "a"', "brokers[0]: expected host:port"),
        ('brokers = []\ntopic = "a"', "brokers: expected at least one broker"),
        ('brokers = ["h:1"]\ntopics = { logs = "a" }', "topics.logs: unknown kind 'logs'"),
        ('brokers = ["h:1"]\ntopic = "a b"', "is not a Kafka topic name"),
        ('brokers = ["h:1"]\ntopic = "a"\ncompression = "brotli"', "compression: expected one of 'none'"),
        ('brokers = ["h:1"]\ntopic = "a"\nsasl_username = "u"', "sasl_* options need security_protocol"),
        ('brokers = ["h:1"]\ntopic = "a"\nsecurity_protocol = "sasl_ssl"', "needs sasl_mechanism and sasl_username"),
        ('brokers = ["h:1"]\ntopic = "a"\nsasl_mechanism = "GSSAPI"', "sasl_mechanism: expected one of 'PLAIN'"),
        ('brokers = ["h:1"]\ntopic = "a"\nssl_ca_location = "/ca.pem"', "ssl_ca_location needs security_protocol"),
        ('brokers = ["h:1"]\ntopic = "a"\nacks = 1', "acks: unknown key"),
    ],
)
def test_config_mistakes_name_the_key(env: Env, options: str, words: str) -> None:
    env.write_config(f'[[sinks]]\nid = "bus"\ntype = "kafka"\n{options}\n', sink=False)
    r = env.cli("check-config")
    assert r.exit_code == 78 and words in r.stderr, r.stderr


def test_without_confluent_kafka_the_error_says_how_to_install_it(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "confluent_kafka", None)  # import fails, find_spec finds nothing
    env.write_config('[[sinks]]\nid = "bus"\ntype = "kafka"\nbrokers = ["h:1"]\ntopic = "a"\n', sink=False)
    for command in ("check-config", "upload"):
        r = env.cli(command)
        assert r.exit_code == 78, (command, r.stderr)
        assert "the kafka sink needs the confluent-kafka package: pip install 'shipctl[kafka]'" in r.stderr
    # The sink itself says the same if the package goes away after the config was checked.
    from shipctl.errors import ConfigError
    from shipctl.sinks.kafka import KafkaOptions, KafkaSink

    monkeypatch.setattr("importlib.util.find_spec", lambda name: object())
    sink = KafkaSink(KafkaOptions(brokers=("h:1",), topic="a"), "s")
    with pytest.raises(ConfigError, match=r"pip install 'shipctl\[kafka\]'"):
        sink.send([], 0)


def test_a_run_with_nothing_to_send_does_not_import_confluent_kafka(env: Env) -> None:
    env.write_config(f"[agent]\n{QUIET}" + kafka_sink("127.0.0.1:9", 'topic = "a"'), sink=False)
    code = (
        "import sys\nfrom shipctl.cli import app\n"
        f"try:\n    app(['upload', '-c', {str(env.config)!r}])\n"
        "except SystemExit as e:\n    assert not e.code, e.code\n"
        "print('confluent_kafka' in sys.modules)"
    )
    r = _run_with(env, {}, "-c", code, raw=True)
    assert r.returncode == 0 and r.stdout.strip().endswith("False"), r.stdout + r.stderr


def test_librdkafka_speaks_to_the_shipctl_log_never_to_stderr(
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    from shipctl.sinks.base import RETRY
    from shipctl.sinks.kafka import KafkaOptions, KafkaSink

    caplog.set_level(logging.DEBUG, logger="shipctl.kafka")
    port = free_port()
    sink = KafkaSink(KafkaOptions(brokers=(f"127.0.0.1:{port}",), topic="a", connect_timeout=2), "s")
    sink.sink_id = "bus"
    res = sink.send([], 0)
    sink.close()
    assert res.outcome == RETRY and f"Connect to ipv4#127.0.0.1:{port} failed: Connection refused" in res.message
    assert any(r.getMessage().startswith("librdkafka: ") and r.levelno == logging.DEBUG for r in caplog.records)
    out, err = capfd.readouterr()
    assert out == err == ""  # nothing written to the file descriptors behind shipctl's back


def test_a_full_local_queue_waits_for_room_and_loses_or_repeats_nothing(
    kafka: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """produce() raises BufferError when librdkafka's queue is full; the sink finds which message of its
    ``starmap`` that was, waits for room, and goes on from exactly there. A queue of 300 messages for a request
    of 5,000 makes it happen many times; every line must arrive once, in order, with its own sn header."""
    from shipctl.model import FMT_RAW, Batch
    from shipctl.sinks.base import Request, Span
    from shipctl.sinks.kafka import KafkaOptions, KafkaSink

    small = KafkaSink._config

    def config(self: KafkaSink) -> dict:
        return {**small(self), "queue.buffering.max.messages": 300, "linger.ms": 1}

    monkeypatch.setattr(KafkaSink, "_config", config)
    waits = []
    wait = KafkaSink._produce_when_room

    def counted(self: KafkaSink, *args: object, deadline: float) -> None:
        waits.append(args[1])
        wait(self, *args, deadline=deadline)

    monkeypatch.setattr(KafkaSink, "_produce_when_room", counted)
    topic = kafka.create_topic(topic_name())
    sink = KafkaSink(KafkaOptions(brokers=(kafka.address,), topic=topic, connect_timeout=20), "s-1")
    sink.sink_id = "bus"
    payload = b"".join(b"line %d\n" % i for i in range(5_000))
    batch = Batch(1, "log", "/l", "l", 1_000, {"serverHost": "h"}, FMT_RAW, 5_000, len(payload), 101, payload)
    req = Request([Span(1, 101, 5_100, True)], 5_000, len(payload), [batch])
    sink.seal(req)
    try:
        res = sink.post(req)
    finally:
        sink.close()
    assert res.outcome == "ok", res.message
    assert len(waits) >= 5  # the queue was full again and again
    got = kafka.messages(topic)
    assert [json.loads(m.value)["message"] for m in got] == [f"line {i}" for i in range(5_000)]
    assert [dict(m.headers)["sn"] for m in got] == [str(sn).encode() for sn in range(101, 5_101)]
    # Exactly the two headers, si first, on every message (they are set in one dict reused from call to call).
    assert {tuple(k for k, _ in m.headers) for m in got} == {("si", "sn")}
    assert {dict(m.headers)["si"] for m in got} == {b"s-1"}
    assert {m.key for m in got} == {b"h"}


@pytest.mark.parametrize("idempotence", [True, False])
def test_an_idempotent_producer_waits_for_the_cluster_connection_before_the_first_message(
    kafka: Broker, monkeypatch: pytest.MonkeyPatch, idempotence: bool
) -> None:
    """After the topic check, an idempotent producer makes one more metadata request (over the connection to
    the broker the first answer named), so librdkafka's ProducerId request does not fall into the gap where
    no connection is up and wait out its fixed 500 ms retry. Without idempotence there is no ProducerId: one
    request per topic only. Either way every message arrives."""
    import confluent_kafka

    from shipctl.model import FMT_RAW, Batch
    from shipctl.sinks.base import Request, Span
    from shipctl.sinks.kafka import KafkaOptions, KafkaSink

    calls: list[str] = []

    class Counting(confluent_kafka.Producer):  # type: ignore[misc]
        def list_topics(self, *args: object, **kwargs: object) -> object:
            answer = super().list_topics(*args, **kwargs)
            calls.append("metadata")  # answered ones only: a timed-out request is asked again (a busy machine)
            return answer

        def produce(self, *args: object, **kwargs: object) -> None:
            if not calls or calls[-1] != "produce":
                calls.append("produce")
            super().produce(*args, **kwargs)

    monkeypatch.setattr(confluent_kafka, "Producer", Counting)
    topic = kafka.create_topic(topic_name())
    opts = KafkaOptions(brokers=(kafka.address,), topic=topic, connect_timeout=20, idempotence=idempotence)
    sink = KafkaSink(opts, "s-1")
    sink.sink_id = "bus"
    payload = b"".join(b"line %d\n" % i for i in range(100))
    batch = Batch(1, "log", "/l", "l", 1_000, {"serverHost": "h"}, FMT_RAW, 100, len(payload), 1, payload)
    req = Request([Span(1, 1, 100, True)], 100, len(payload), [batch])
    try:
        res = sink.post(req)
    finally:
        sink.close()
    assert res.outcome == "ok", res.message
    assert calls == (["metadata", "metadata", "produce"] if idempotence else ["metadata", "produce"])
    assert len(kafka.messages(topic)) == 100


def test_a_request_is_confirmed_without_waiting_out_linger_ms(kafka: Broker, monkeypatch: pytest.MonkeyPatch) -> None:
    """linger.ms lets librdkafka fill large batches while a request is produced; the flush() that ends each
    request must send its last batch at once, not after linger.ms. With linger.ms at 5 s, a one-line request
    (after a first one, which also connects) is still confirmed in well under that."""
    from shipctl.model import FMT_RAW, Batch
    from shipctl.sinks import kafka as kafka_sink
    from shipctl.sinks.base import Request, Span

    assert kafka_sink.LINGER_MS <= 100  # a slow trickle of monitor events must not sit in a batch for long
    monkeypatch.setattr(kafka_sink, "LINGER_MS", 5_000)
    topic = kafka.create_topic(topic_name())
    sink = kafka_sink.KafkaSink(kafka_sink.KafkaOptions(brokers=(kafka.address,), topic=topic), "s-1")
    sink.sink_id = "bus"
    took = []
    try:
        for sn in (1, 2):
            payload = b"line %d\n" % sn
            batch = Batch(sn, "log", "/l", "l", 1_000, {}, FMT_RAW, 1, len(payload), sn, payload)
            req = Request([Span(sn, sn, sn, True)], 1, len(payload), [batch])
            start = time.monotonic()
            res = sink.post(req)
            took.append(time.monotonic() - start)
            assert res.outcome == "ok", res.message
    finally:
        sink.close()
    assert took[1] < 2.5, took
    assert [json.loads(m.value)["message"] for m in kafka.messages(topic)] == ["line 1", "line 2"]


def test_delivery_reports_are_served_every_poll_every_messages(kafka: Broker, monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch of 2,000 lines is produced in runs of at most POLL_EVERY messages with a poll() after each (the
    delivery reports served while few); every line still arrives once, in order, with its own sn."""
    import confluent_kafka

    from shipctl.model import FMT_RAW, Batch
    from shipctl.sinks import kafka as kafka_sink
    from shipctl.sinks.base import Request, Span

    runs: list[int] = [0]

    class Counting(confluent_kafka.Producer):  # type: ignore[misc]
        def produce(self, *args: object, **kwargs: object) -> None:
            runs[-1] += 1
            super().produce(*args, **kwargs)

        def poll(self, *args: object, **kwargs: object) -> int:
            if runs[-1]:
                runs.append(0)
            return super().poll(*args, **kwargs)

    monkeypatch.setattr(confluent_kafka, "Producer", Counting)
    monkeypatch.setattr(kafka_sink, "POLL_EVERY", 300)
    topic = kafka.create_topic(topic_name())
    sink = kafka_sink.KafkaSink(kafka_sink.KafkaOptions(brokers=(kafka.address,), topic=topic), "s-1")
    sink.sink_id = "bus"
    payload = b"".join(b"line %d\n" % i for i in range(2_000))
    batch = Batch(1, "log", "/l", "l", 1_000, {}, FMT_RAW, 2_000, len(payload), 1, payload)
    req = Request([Span(1, 1, 2_000, True)], 2_000, len(payload), [batch])
    try:
        res = sink.post(req)
    finally:
        sink.close()
    assert res.outcome == "ok", res.message
    assert [n for n in runs if n] == [300] * 6 + [200]
    got = kafka.messages(topic)
    assert [json.loads(m.value)["message"] for m in got] == [f"line {i}" for i in range(2_000)]
    assert [dict(m.headers)["sn"] for m in got] == [str(sn).encode() for sn in range(1, 2_001)]
