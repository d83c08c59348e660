"""End to end through the `wirecopy` CLI: files and Kafka, over the story pages and the samples."""

import base64
import json
import os
import random
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest
import trustme
from kafka.errors import KafkaConnectionError, KafkaTimeoutError

from apache_kafka import on_both_brokers
from test_stories import ORDER_DEPENDENT
from wirecopy.pipelines import cli
from wirecopy.pipelines import options as run_options
from wirecopy.pipelines.kafka_config import client_settings, jaas_credentials, read_properties
from wirecopy.pipelines.demo import sample_lines
from wirecopy.pipelines.enrich import DEFAULT_GROUP_ID, explained
from wirecopy.pipelines.local_broker import committed_offsets, produce, read_topic
from wirecopy.schemas import codec
from wirecopy.transforms.stories import StoryTable

REPO = Path(__file__).resolve().parents[1]
EXPECTED = json.loads((REPO / "pipelines" / "samples" / "expected.json").read_text())


def wirecopy(*args: str, timeout: float = 240, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "wirecopy.pipelines.cli", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env and {**os.environ, **env},
    )


def wirecopy_refusing(capsys, *args: str) -> subprocess.CompletedProcess:
    """`wirecopy ARGS` through `cli.main` in this process, for command lines refused before anything starts
    (no logging set up, no signal handlers): a new interpreter costs each case 5-10 s of imports on CI.
    Whole-process behaviour (imports' own output, exit status) is checked through `wirecopy()`."""
    status = cli.main(list(args))
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(args, status, captured.out, captured.err)


@pytest.fixture(scope="module")
def input_lines(story_pages) -> list[bytes]:
    """The two story pages as raw articles, then every bundled sample line."""
    pages = [orjson.dumps({"id": stem, "text": text}) for stem, text in story_pages.items()]
    return pages + sample_lines()


def expected_dead_letters(lines: list[bytes]) -> dict[int, str]:
    """Line number → reason, from the samples' ground truth (the story pages come first and are valid)."""
    by_id, offset = {}, len(lines) - len(sample_lines())
    for number, line in enumerate(lines):
        try:
            by_id[orjson.loads(line).get("id")] = number
        except (orjson.JSONDecodeError, AttributeError):
            pass
    expected = {}
    for key, reason in EXPECTED["dead_letters"].items():
        number = offset + int(key.removeprefix("line:")) if key.startswith("line:") else by_id[key]
        expected[number] = reason
    return expected


def check_outputs(lines, articles, dead_letters, cluster_events):
    expected_dead = expected_dead_letters(lines)
    assert sorted((d["offset"], d["reason"]) for d in dead_letters) == sorted(expected_dead.items())
    for letter in dead_letters:
        codec.validator(codec.DEAD_LETTER)(letter)
        assert base64.b64decode(letter["payload"]) == lines[letter["offset"]], "dead letters keep the original bytes"
    valid_ids = {orjson.loads(line)["id"] for number, line in enumerate(lines) if number not in expected_dead}
    assert sorted(a["article_id"] for a in articles) == sorted(valid_ids), "one enriched event per valid article"
    for article in articles:
        codec.validator(codec.ENRICHED_ARTICLE)(article)
    for event in cluster_events:
        codec.validator(codec.CLUSTER_EVENT)(event)
    created = Counter(e["cluster_id"] for e in cluster_events if e["type"] == "created")
    merged_from = {e["from"] for e in cluster_events if e["type"] == "merged"}
    assert max(created.values()) == 1, "a cluster is created once"
    assert {a["cluster"]["id"] for a in articles} <= set(created) | merged_from, "every cluster id is announced"
    check_clusters(articles, cluster_events)
    languages = {a["article_id"]: a["language"]["code"] for a in articles}
    for article_id, code in EXPECTED["languages"].items():
        assert languages[article_id] == code, article_id


def cluster_roots(articles, cluster_events) -> dict[str, str]:
    """Article id → cluster, after unioning `merged` events as a consumer does."""
    parent: dict[str, str] = {}

    def root(cluster_id: str) -> str:
        while parent.get(cluster_id, cluster_id) != cluster_id:
            cluster_id = parent[cluster_id]
        return cluster_id

    for event in cluster_events:
        if event["type"] == "merged":
            parent[root(event["from"])] = root(event["into"])
    return {a["article_id"]: root(a["cluster"]["id"]) for a in articles}


def check_clusters(articles, cluster_events):
    clusters = cluster_roots(articles, cluster_events)
    by_id = {a["article_id"]: a for a in articles}
    pages = sorted(stem for stem in clusters if stem.startswith("story_"))
    assert len(pages) == 2 and clusters[pages[0]] == clusters[pages[1]], "the two story pages are one story"
    # whichever arrives second is a copy of the first: near, or contained in / containing the other
    assert {by_id[page]["cluster"]["match"] for page in pages} & {"near", "contained", "contains"}
    # Kafka runs read three partitions in any interleaving: the one known order-dependent excerpt is left out.
    for members in EXPECTED["clusters"]:
        assert len({clusters[m] for m in set(members) - ORDER_DEPENDENT}) == 1, f"one cluster expected: {members}"
    for first, second in EXPECTED["apart"]:
        assert clusters[first] != clusters[second], f"different stories: {first} / {second}"


def test_file_mode_end_to_end(tmp_path, input_lines):
    source = tmp_path / "in.jsonl"
    source.write_bytes(b"\n".join(input_lines) + b"\n")
    output, dead = tmp_path / "out.jsonl", tmp_path / "dead.jsonl"
    finished = wirecopy(
        "run", "--input-jsonl", str(source), "--output-jsonl", str(output), "--dead-letter-jsonl", str(dead)
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert "running on FnApiRunner" in finished.stderr

    def read(path):
        return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]

    dead_letters = read(dead)
    assert {d["topic"] for d in dead_letters} == {str(source)}
    check_outputs(input_lines, read(output), dead_letters, read(tmp_path / "out.clusters.jsonl"))
    check_stories(read(tmp_path / "out.stories.jsonl"), read(output))


def check_stories(records: list[dict], articles: list[dict]) -> None:
    """The story records alone (as a compacted topic keeps them: the last per story) give the expected stories."""
    table = StoryTable()
    for record in records:
        codec.validator(codec.STORY)(record)
        table.apply(record)
    story_of = table.story_of()
    assert set(story_of) == {a["article_id"] for a in articles}, "every enriched article is in one story"
    assert all(table.resolve(a["cluster"]["id"]) == story_of[a["article_id"]] for a in articles)
    for members in EXPECTED["clusters"]:
        assert len({story_of[m] for m in members}) == 1, f"one story expected: {members}"
    for first, second in EXPECTED["apart"]:
        assert story_of[first] != story_of[second], f"different stories: {first} / {second}"


def mangled_sample_lines(count: int, seed: int) -> list[bytes]:
    """The samples under new ids, many mangled: odd characters, nulls, wrong types, flipped bytes."""
    rng = random.Random(seed)
    oddities = [
        "\u0000",
        "\ufeff",
        "\u202e",
        "\U0001f600",
        "\u0301",
        "</p><p>",
        "&amp;",
        "\\",
        '"',
        "\n\n",
        "\u200b",
        "\u00ad",
        "\u2028",
        "\r",
        "x" * 3000,
        "汉字",
        "ا",
    ]
    lines = []
    for number in range(count):
        line = rng.choice(sample_lines())
        try:
            article = orjson.loads(line)
            article["id"] = f"mangled-{number}"
        except (orjson.JSONDecodeError, TypeError):
            lines.append(line)
            continue
        roll = rng.random()
        if roll < 0.2:
            flipped = bytearray(orjson.dumps(article))
            for _ in range(3):
                flipped[rng.randrange(len(flipped))] = rng.choice(b'\x00\xff{}[]",:a')
            lines.append(bytes(flipped).replace(b"\n", b" "))
            continue
        if roll < 0.7:
            for field in rng.sample(["text", "title", "html", "url", "source", "published_at", "language"], 2):
                value = article.get(field) if isinstance(article.get(field), str) else ""
                cut = rng.randint(0, len(value))
                article[field] = rng.choice(
                    [
                        value[:cut] + "".join(rng.choices(oddities, k=5)) + value[cut:],
                        None,
                        7,
                        [],
                        "",
                        "2026-13-45T99:00:00Z",
                        "javascript:alert(1)",
                    ]
                )
        lines.append(orjson.dumps(article))
    return lines


def test_file_mode_accounts_for_every_line_of_mangled_input(tmp_path):
    """Every line comes out once, enriched or dead-lettered. Among these ~500 articles, two share a home shard
    with one published months later that arrived first: such articles were once never emitted (the CLI before
    306b60d lost those 2 lines here, as it did over 2,000 lines of the same seed)."""
    lines = mangled_sample_lines(1000, seed=12)
    source = tmp_path / "in.jsonl"
    source.write_bytes(b"\n".join(lines) + b"\n")
    finished = wirecopy("run", "--input-jsonl", str(source), "--output-jsonl", str(tmp_path / "out.jsonl"))
    assert finished.returncode == 0, finished.stderr[-3000:]
    enriched = [orjson.loads(line)["ingest"]["offset"] for line in (tmp_path / "out.jsonl").read_bytes().splitlines()]
    dead = [orjson.loads(line)["offset"] for line in (tmp_path / "out.dead-letters.jsonl").read_bytes().splitlines()]
    assert Counter(enriched + dead) == Counter(range(len(lines)))
    assert len(enriched) > 400 and len(dead) > 150


def test_file_mode_rejects_kafka_only_options(capsys):
    finished = wirecopy_refusing(capsys, "run", "--input-jsonl", "x.jsonl", "--output-jsonl", "y.jsonl", "--streaming")
    assert finished.returncode == 2 and "Kafka mode only" in finished.stderr


@pytest.mark.parametrize("runner", ["PrismRunner", "DirectRunner"])
def test_prism_without_a_binary_of_ours_is_refused_in_one_line(runner, tmp_path):
    """Beam would download its own Prism, which loses state updates (deploy/README.md, Prism)."""
    finished = wirecopy(
        "run",
        "--input-jsonl",
        str(REPO / "pipelines" / "samples" / "articles.jsonl"),
        "--output-jsonl",
        str(tmp_path / "out.jsonl"),
        "--runner",
        runner,
    )
    assert finished.returncode == 2, finished.stderr[-2000:]
    errors = [line for line in finished.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and f"{runner} needs --prism_location" in errors[0], finished.stderr[-2000:]
    assert "Traceback" not in finished.stderr and not (tmp_path / "out.jsonl").exists()


def test_a_java_client_properties_file_gives_both_clients_their_settings(tmp_path):
    properties = tmp_path / "client.properties"
    properties.write_text(
        "# from the Java client\nsecurity.protocol=SASL_SSL\nsasl.mechanism=SCRAM-SHA-512\n"
        "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required "
        r'username="wirecopy" password="p=\\\"q\\\"";'
        "\n"  # JAAS escapes inside properties escapes
        "ssl.cafile=/etc/kafka/ca.pem\nfetch.max.bytes=1048576\n"
    )
    settings = client_settings(properties, ["max.poll.records=100"], ["linger.ms=5"])
    shared = {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "wirecopy",
        "sasl_plain_password": 'p="q"',
        "ssl_cafile": "/etc/kafka/ca.pem",
    }
    assert settings.consumer == {**shared, "fetch_max_bytes": 1048576, "max_poll_records": 100}
    assert settings.producer == {**shared, "linger_ms": 5}


def test_properties_are_read_as_java_reads_them():
    text = (
        "# comment\n! also a comment\n   \n"
        "a=1\n"
        "b : 2\n"
        "c 3\n"
        "d\t=\t  four  \n"
        "e=first \\\n"
        "     second \\\n"
        "  third\n"
        "f=tab\\there\\u00e9\\\\end\n"
        "key\\ with\\=separators = value=with:separators\n"
        "empty=\n"
        "alone\n"
        "  # not a comment inside a continuation? \\\n"
        "a=again\r\n"
    )
    assert read_properties(text) == {
        "a": "again",
        "b": "2",
        "c": "3",
        "d": "four  ",
        "e": "first second third",
        "f": "tab\there\u00e9\\end",
        "key with=separators": "value=with:separators",
        "empty": "",
        "alone": "",
    }


def test_a_java_client_file_with_every_kind_of_setting(tmp_path, caplog):
    properties = tmp_path / "client.properties"
    properties.write_text(
        "bootstrap.servers: kafka-1:9092,kafka-2:9092\n"
        "group.id newsroom\n"
        "acks=all\n"
        "enable.idempotence=true\n"
        "compression.type=none\n"
        "ssl.truststore.type=PEM\n"
        "ssl.truststore.location=/etc/kafka/ca.pem\n"
        "ssl.endpoint.identification.algorithm=\n"
        "buffer.memory=33554432\n"
        "key.serializer=org.apache.kafka.common.serialization.ByteArraySerializer\n"
        "session.timeout.ms=45000\n"
    )
    settings = client_settings(properties, [], [])
    assert settings.connection == {"bootstrap_servers": "kafka-1:9092,kafka-2:9092", "group_id": "newsroom"}
    assert settings.producer == {
        "acks": "all",
        "enable_idempotence": True,
        "ssl_cafile": "/etc/kafka/ca.pem",
        "ssl_check_hostname": False,
    }
    assert settings.consumer == {
        "ssl_cafile": "/etc/kafka/ca.pem",
        "ssl_check_hostname": False,
        "session_timeout_ms": 45000,
    }
    assert "left out" in caplog.text and "buffer.memory, key.serializer" in caplog.text


@pytest.mark.parametrize(
    "line, message",
    [
        ("bootstrap.server=kafka:9092", "did you mean 'bootstrap.servers'?"),
        ("ssl.truststore.location=/etc/kafka/truststore.jks", "JKS store, which kafka-python cannot read"),
        ("enable.auto.commit=true", "wirecopy commits offsets itself"),
        ("sasl.mechanism=OAUTHBEARER", "token provider"),
        ("request.timeout.ms=soon", "request_timeout_ms must be a number"),
        ("x=\\u12", "malformed \\uXXXX escape"),
    ],
)
def test_settings_that_cannot_work_are_refused_with_a_reason(tmp_path, line, message):
    properties = tmp_path / "client.properties"
    properties.write_text(line + "\n")
    with pytest.raises(ValueError, match=re.escape(message)):
        client_settings(properties, [], [])


def test_connection_settings_come_from_the_command_line_then_the_environment_then_the_file(tmp_path, monkeypatch):
    properties = tmp_path / "client.properties"
    properties.write_text("bootstrap.servers=from-file:9092\ngroup.id=file-group\n")
    monkeypatch.setenv("WIRECOPY_KAFKA_CONFIG", str(properties))
    topics = ["--input-topic", "i", "--output-topic", "o", "--cluster-topic", "c", "--dead-letter-topic", "d"]

    def io(*args):
        return wirecopy_config(*topics, *args).io.read

    assert (io().bootstrap_servers, io().group_id) == ("from-file:9092", "file-group")
    monkeypatch.setenv("WIRECOPY_BOOTSTRAP_SERVERS", "from-env:9092")
    monkeypatch.setenv("WIRECOPY_GROUP_ID", "env-group")
    assert (io().bootstrap_servers, io().group_id) == ("from-env:9092", "env-group")
    assert (
        io("--bootstrap-servers", "cli:9092", "--group-id", "cli-group").bootstrap_servers,
        io("--group-id", "cli-group").group_id,
    ) == ("cli:9092", "cli-group")
    monkeypatch.delenv("WIRECOPY_GROUP_ID")
    monkeypatch.delenv("WIRECOPY_KAFKA_CONFIG")
    assert io().group_id == DEFAULT_GROUP_ID


def wirecopy_config(*args: str):
    from wirecopy.pipelines.cli import run_config

    return run_config(run_options.parse(list(args)))


def test_version():
    finished = wirecopy("--version")
    assert finished.returncode == 0 and re.fullmatch(r"wirecopy \d+\.\d+\.\d+\S*\n", finished.stdout)


def test_run_help_lists_wirecopy_options_and_their_environment_variables(capsys):
    finished = wirecopy_refusing(capsys, "run", "--help")
    assert finished.returncode == 0
    for option in (
        "--bootstrap-servers",
        "--language-threshold",
        "--max-dead-letter-ratio",
        "WIRECOPY_BOOTSTRAP_SERVERS",
    ):
        assert option in finished.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--input-jsonl", "{tmp}/missing.jsonl", "--output-jsonl", "{tmp}/out.jsonl"],
            "--input-jsonl {tmp}/missing.jsonl: no such file",
        ),
        (
            ["--input-jsonl", "{samples}", "--output-jsonl", "{tmp}/out.jsonl", "--runner", "FlinkRuner"],
            "unknown runner 'FlinkRuner'; did you mean FlinkRunner?",
        ),
        (
            ["--input-jsonl", "{samples}", "--output-jsonl", "{tmp}/out.jsonl", "--langauge-threshold", "0.9"],
            "unknown option --langauge-threshold; did you mean --language-threshold?",
        ),
        (
            ["--input-jsonl", "{samples}", "--output-jsonl", "{tmp}/out.jsonl", "--flink_mastr=localhost:8081"],
            "unknown option --flink_mastr; did you mean --flink_master?",
        ),
        (
            ["--input-jsonl", "{samples}", "--output-jsonl", "{tmp}/out.jsonl", "--language-threshold", "1.5"],
            "argument --language-threshold: must be within [0, 1], got 1.5",
        ),
        (
            [
                "--bootstrap-servers",
                "127.0.0.1:1",
                "--input-topic",
                "a",
                "--output-topic",
                "b",
                "--cluster-topic",
                "c",
                "--dead-letter-topic",
                "d",
                "--kafka-config",
                "{tmp}/missing.properties",
            ],
            "--kafka-config: [Errno 2] No such file or directory: '{tmp}/missing.properties'",
        ),
    ],
    ids=["missing-input", "unknown-runner", "typo", "beam-option-typo", "out-of-range", "missing-config"],
)
def test_a_wrong_command_line_is_one_line_and_exit_2_with_nothing_left_behind(tmp_path, capsys, args, message):
    samples = str(REPO / "pipelines" / "samples" / "articles.jsonl")
    finished = wirecopy_refusing(capsys, "run", *(arg.format(tmp=tmp_path, samples=samples) for arg in args))
    assert finished.returncode == 2
    assert finished.stderr.startswith(f"wirecopy: {message.format(tmp=tmp_path)}") and finished.stderr.count("\n") == 1
    assert list(tmp_path.iterdir()) == [], "no output, no beam-temp-* folder"


def test_the_installed_command_refuses_a_wrong_command_line_in_one_line_and_exit_2():
    finished = wirecopy("run", "--input-jsonl", "x.jsonl", "--output-jsonl", "y.jsonl", "--langauge-threshold", "0.9")
    assert finished.returncode == 2
    assert finished.stderr == "wirecopy: unknown option --langauge-threshold; did you mean --language-threshold?\n"


def test_a_run_that_dead_letters_too_much_fails_with_the_reason(tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_bytes(b'{"id": 1}\n{"id": 2}\nnot json\n{"id": "a", "text": "The one good article."}\n')
    failed = wirecopy("run", "--input-jsonl", str(source), "--output-jsonl", str(tmp_path / "out.jsonl"))
    assert failed.returncode == 1
    assert (
        failed.stderr.strip()
        .splitlines()[-1]
        .endswith(
            "3 of 4 records (75%) were dead-lettered, more than --max-dead-letter-ratio 0.5 allows "
            "(schema_violation 2, invalid_json 1)"
        )
    )
    assert len((tmp_path / "out.dead-letters.jsonl").read_bytes().splitlines()) == 3, (
        "the outputs are written all the same"
    )
    tolerated = wirecopy(
        "run",
        "--input-jsonl",
        str(source),
        "--output-jsonl",
        str(tmp_path / "again.jsonl"),
        "--max-dead-letter-ratio",
        "0.8",
    )
    assert tolerated.returncode == 0, tolerated.stderr[-3000:]


def test_a_jaas_login_module_without_a_kafka_python_equivalent_is_refused():
    with pytest.raises(ValueError, match="PLAIN and SCRAM"):
        jaas_credentials("com.sun.security.auth.module.Krb5LoginModule required useKeyTab=true;")
    with pytest.raises(ValueError, match="no password"):
        jaas_credentials('org.apache.kafka.common.security.plain.PlainLoginModule required username="u";')


# On both brokers (Tansu and Apache Kafka): the runs through each kind of listener, the refused certificate and
# password, and the streaming stop condition. On Tansu only: the progress log and the demo, which do not
# depend on the broker.


@pytest.fixture(params=["tls_broker", "sasl_broker"])
def secured_broker(request, broker_kind):
    """A broker reachable only over TLS, and one only after SASL (SCRAM-SHA-512) authentication, of the test's
    `broker_kind`. (No plaintext variant: every other broker test runs over plaintext.)"""
    return request.getfixturevalue(request.param)


def create_topics(broker, topic_name) -> dict[str, str]:
    topics = {role: topic_name(role) for role in ("in", "out", "clusters", "dead")}
    broker.create_topics([topics["in"]], partitions=3)
    broker.create_topics([topics["out"], topics["clusters"], topics["dead"]])
    return topics


@pytest.fixture
def kafka_topics(broker, topic_name):
    return create_topics(broker, topic_name)


def read_outputs(broker, topics):
    def read(role):
        return [
            orjson.loads(r.value) for r in read_topic(broker.bootstrap_servers, topics[role], **broker.client_config)
        ]

    return read("out"), read("dead"), read("clusters")


def committed_total(broker, topic, group) -> int:
    committed = committed_offsets(broker.bootstrap_servers, topic, group, **broker.client_config)
    return sum(offset or 0 for offset in committed.values())


def with_line_numbers(dead_letters, records_in):
    """Kafka spreads the lines over partitions; put each dead letter's line number (the record key) in `offset`."""
    line_of = {(r.partition, r.offset): int(r.key) for r in records_in}
    return [{**letter, "offset": line_of[(letter["partition"], letter["offset"])]} for letter in dead_letters]


def check_kafka_outputs(broker, kafka_topics, group, input_lines):
    articles, dead_letters, cluster_events = read_outputs(broker, kafka_topics)
    dead_letters = with_line_numbers(
        dead_letters, read_topic(broker.bootstrap_servers, kafka_topics["in"], **broker.client_config)
    )
    check_outputs(input_lines, articles, dead_letters, cluster_events)
    assert committed_total(broker, kafka_topics["in"], group) == len(input_lines), "offsets committed at the end"


@pytest.mark.broker
@on_both_brokers
def test_kafka_bounded_end_to_end(secured_broker, topic_name, input_lines, tmp_path, kafka_args):
    topics = create_topics(secured_broker, topic_name)
    keys = [str(number).encode() for number in range(len(input_lines))]
    produce(secured_broker.bootstrap_servers, topics["in"], input_lines, keys, **secured_broker.client_config)
    group = topic_name("group")
    config = tmp_path / "client.properties"
    args = kafka_args(secured_broker, topics, group, config)
    # The connection as a deployment gives it: brokers from the environment; the group and producer
    # guarantees, beside the security settings, from a Java client.properties in its own syntax.
    config.write_text(config.read_text() + f"group.id: {group}\nacks = all\nenable.idempotence=true\n")
    environment = {"WIRECOPY_BOOTSTRAP_SERVERS": secured_broker.bootstrap_servers}
    args = [arg for arg in args[2:] if arg not in ("--group-id", group)]
    finished = wirecopy("run", *args, env=environment)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert "running on FnApiRunner (bounded)" in finished.stderr
    check_kafka_outputs(secured_broker, topics, group, input_lines)


@pytest.mark.broker
@on_both_brokers
def test_kafka_over_tls_with_an_untrusted_certificate_is_a_clear_error(tls_broker, topic_name, tmp_path, kafka_args):
    topics = create_topics(tls_broker, topic_name)
    stranger = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(stranger))
    config = tmp_path / "client.properties"
    args = kafka_args(tls_broker, topics, topic_name("group"), config)
    config.write_text(config.read_text().replace(tls_broker.client_config["ssl_cafile"], str(stranger)))
    started = time.monotonic()
    finished = wirecopy("run", *args)
    assert finished.returncode == 2, finished.stderr[-3000:]
    assert f"cannot reach Kafka at {tls_broker.bootstrap_servers}" in finished.stderr
    assert "CERTIFICATE_VERIFY_FAILED" in finished.stderr, "the TLS handshake itself is what failed"
    assert "Traceback" not in finished.stderr
    assert time.monotonic() - started < 60


@pytest.mark.broker
@on_both_brokers
def test_kafka_with_a_wrong_sasl_password_is_a_clear_error(sasl_broker, topic_name, tmp_path, kafka_args):
    topics = create_topics(sasl_broker, topic_name)
    config = tmp_path / "client.properties"
    args = kafka_args(sasl_broker, topics, topic_name("group"), config)
    config.write_text(config.read_text().replace(sasl_broker.password, "not-the-password"))
    refused_before = len(sasl_broker.authentication_failures())
    started = time.monotonic()
    finished = wirecopy("run", *args)
    assert finished.returncode == 2, finished.stderr[-3000:]
    assert f"cannot reach Kafka at {sasl_broker.bootstrap_servers}" in finished.stderr
    # The broker's refusal, or (when kafka-python lost it to the close that follows) the likely cause.
    assert "Authentication failed" in finished.stderr or "closed them while authenticating" in finished.stderr
    assert "not-the-password" not in finished.stderr
    assert "Traceback" not in finished.stderr
    assert time.monotonic() - started < 60
    assert sasl_broker.authentication_failures()[refused_before:], "the broker saw and refused the credentials"


def test_a_broker_that_closes_connections_while_authenticating_says_what_to_check():
    timed_out = KafkaTimeoutError("Unable to bootstrap from 127.0.0.1:9093")
    sasl = {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-512"}
    assert "check the SCRAM-SHA-512 user and password" in explained(timed_out, sasl, listening=True)
    assert explained(timed_out, sasl, listening=False) == str(timed_out)
    assert explained(timed_out, {}, listening=True) == str(timed_out)
    refused = KafkaConnectionError("Authentication failed for user wirecopy")
    assert explained(refused, sasl, listening=True) == str(refused)


@pytest.mark.broker
@on_both_brokers
def test_kafka_streaming_reads_live_and_stops_at_max_records(broker, kafka_topics, topic_name, input_lines, kafka_args):
    group = topic_name("group")
    half = len(input_lines) // 2
    keys = [str(number).encode() for number in range(len(input_lines))]
    produce(broker.bootstrap_servers, kafka_topics["in"], input_lines[:half], keys[:half])
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "wirecopy.pipelines.cli",
            "run",
            *kafka_args(broker, kafka_topics, group),
            "--streaming",
            "--max-records",
            str(len(input_lines)),
            "--max-read-time",
            "180",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # Live: the first half comes out while the reader is still running (no stop condition met yet).
    deadline = time.monotonic() + 120
    while (
        len(read_topic(broker.bootstrap_servers, kafka_topics["out"]))
        + len(read_topic(broker.bootstrap_servers, kafka_topics["dead"]))
        < half
    ):
        assert process.poll() is None, process.stderr.read()[-3000:]
        assert time.monotonic() < deadline, "no output while streaming: something after the reader is not fused"
        time.sleep(0.5)
    produce(broker.bootstrap_servers, kafka_topics["in"], input_lines[half:], keys[half:])
    _, stderr = process.communicate(timeout=240)
    assert process.returncode == 0, stderr[-3000:]
    assert "running on FnApiRunner (streaming)" in stderr
    check_kafka_outputs(broker, kafka_topics, group, input_lines)


@pytest.mark.broker
def test_a_streaming_run_logs_its_progress_every_10_s(broker, kafka_topics, topic_name, input_lines, kafka_args):
    """Read, produced and written counts show up in the log while the run goes on, not only at its end."""
    produce(broker.bootstrap_servers, kafka_topics["in"], input_lines)
    # The lines come every 10 s of reading. 25 s gives two of each, so the second counts every record even
    # when the processing takes most of 20 s, as on a 2-core machine running the suite's parallel workers
    # (12 s gave one line, which counted every record only if the processing was over within 10 s).
    finished = wirecopy(
        "run", *kafka_args(broker, kafka_topics, topic_name("group")), "--streaming", "--max-read-time", "25"
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    dead = Counter(expected_dead_letters(input_lines).values())
    enriched = len(input_lines) - dead.total()
    assert re.search(
        rf"read {len(input_lines)} records \(\d+/s\); "
        + ", ".join(rf"{kafka_topics['in']}\[{n}\] at \d+ backlog 0" for n in range(3))
        + "; live readers in this process 1",  # the local runner reads with one reader instance
        finished.stderr,
    )
    so_far = re.search(
        rf"so far: enriched {enriched} \((.*)\); dead letters {dead.total()} \((.*)\); "
        rf"cluster events (.*)",
        finished.stderr,
    )
    assert so_far, finished.stderr[-3000:]
    assert sum(int(n) for n in re.findall(r"\w+ (\d+)", so_far[1])) == enriched, "per-language counts add up"
    assert dict(re.findall(r"(\w+) (\d+)", so_far[2])) == {reason: str(n) for reason, n in dead.items()}
    assert "created" in so_far[3]
    assert re.search(
        rf"wrote \(acknowledged\) (.*, )?{enriched} records, [\d.]+ MB to {kafka_topics['out']}(,|$)",
        finished.stderr,
        re.MULTILINE,
    )
    assert all(f"lag.{kafka_topics['in']}.{n}=0" in finished.stderr for n in range(3)), "nothing left uncommitted"


def test_demo_runs_and_shows_stories_and_dead_letters():
    finished = wirecopy("demo")
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert "Stories with copies" in finished.stdout and "Dead letters" in finished.stdout
    assert re.search(r"story c-\w+: 4 articles", finished.stdout), "the sample's largest story, from the story topic"
    for reason in set(EXPECTED["dead_letters"].values()):
        assert reason in finished.stdout
    page = re.search(r"The same as a page: (\S+)", finished.stdout)
    assert page and f"{len(EXPECTED['clusters'])} stories with copies" in Path(page[1]).read_text()


@pytest.mark.parametrize(
    "setting, message",
    [
        ("acks=1", "the sink needs acks=all"),
        ("max.request.size=1000", "the output must take events of at least 16,384 bytes"),
    ],
    ids=["weakened-acks", "tiny-messages"],
)
def test_producer_settings_the_pipeline_cannot_keep_its_promises_with_are_refused_before_connecting(
    capsys, setting, message
):
    finished = wirecopy_refusing(
        capsys,
        "run",
        "--bootstrap-servers",
        "127.0.0.1:1",
        "--input-topic",
        "a",
        "--output-topic",
        "b",
        "--cluster-topic",
        "c",
        "--dead-letter-topic",
        "d",
        "--producer-config",
        setting,
    )
    assert finished.returncode == 2 and message in finished.stderr
    assert "Traceback" not in finished.stderr and "cannot reach Kafka" not in finished.stderr


def test_several_local_workers_are_refused_for_kafka():
    finished = wirecopy(
        "run",
        "--bootstrap-servers",
        "127.0.0.1:1",
        "--input-topic",
        "a",
        "--output-topic",
        "b",
        "--cluster-topic",
        "c",
        "--dead-letter-topic",
        "d",
        "--direct_num_workers",
        "2",
    )
    assert finished.returncode == 2 and "--direct_num_workers > 1 loses Kafka records" in finished.stderr
