"""A real Apache Kafka broker for the tests: a KRaft single node (broker and
controller in one JVM) on free loopback ports, in a directory of its own.

Its jars come from Maven Central through deploy/kafka/pom.xml (`make
kafka-jars` copies them into .cache/kafka-<version>/libs). One node serves
three client listeners, as a production broker often does: plaintext, TLS
(a certificate from the tests' throwaway authority) and SASL_PLAINTEXT with
SCRAM-SHA-512, whose user is created through the admin API
(AlterUserScramCredentials) once the node runs. `stop()` then `start()` keeps
the log directory: topics, records and committed offsets survive a restart.
"""

from __future__ import annotations

import base64
import shutil
import socket
import subprocess
import time
import uuid
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

import pytest
import trustme
from cryptography.hazmat.primitives import serialization
from kafka import KafkaAdminClient
from kafka.admin import NewTopic, ScramMechanism, UserScramCredentialUpsertion
from kafka.errors import KafkaError, TopicAlreadyExistsError

from wirecopy.pipelines.local_broker import free_port, terminate

REPO = Path(__file__).resolve().parents[1]
POM = REPO / "deploy" / "kafka" / "pom.xml"
_MAVEN = "{http://maven.apache.org/POM/4.0.0}"


# A test parametrized with this runs on Tansu and on Apache Kafka (that variant is marked `apache_kafka`):
# conftest's `broker`, `tls_broker`, `sasl_broker` and `fresh_broker` follow `broker_kind`.
on_both_brokers = pytest.mark.parametrize(
    "broker_kind", ["tansu", pytest.param("apache_kafka", marks=pytest.mark.apache_kafka)]
)


def recent_record_time_ms() -> int:
    """A record time for test records: an hour ago, on a whole second. Apache Kafka deletes records older
    than retention.ms (7 days) by their timestamps, within minutes (log.retention.check.interval.ms), so
    records stamped 2023 can vanish while a test reads them; Tansu keeps them."""
    return (int(time.time()) - 3600) * 1000


class ApacheKafkaUnavailable(RuntimeError):
    """Java or the broker's jars are missing; the message names the install step."""


def kafka_version() -> str:
    return ElementTree.parse(POM).getroot().find(f"{_MAVEN}properties/{_MAVEN}kafka.version").text


def kafka_libs() -> Path:
    """The broker's jars, fetched by `make kafka-jars` (it writes `.complete` last)."""
    return REPO / ".cache" / f"kafka-{kafka_version()}" / "libs"


def java_command() -> list[str]:
    java = shutil.which("java")
    if java is None:
        raise ApacheKafkaUnavailable(
            "no `java` on PATH: Apache Kafka needs a JDK 17 or newer (apt-get install openjdk-17-jre-headless)"
        )
    libs = kafka_libs()
    if not (libs / ".complete").exists():
        raise ApacheKafkaUnavailable(
            f"the Apache Kafka {kafka_version()} jars are not in {libs}: run `make kafka-jars`"
        )
    # A small heap is plenty for a test node. C1 only: format and start took
    # 18-24 s instead of 40-54 s (restart 19-25 s instead of 28-40 s) on the
    # busy 2-core machine, where the C2 compiler competes with the tests.
    return [
        java,
        "-Xmx512m",
        "-XX:TieredStopAtLevel=1",
        "-Dorg.slf4j.simpleLogger.defaultLogLevel=info",
        "-Dorg.slf4j.simpleLogger.showDateTime=true",
        "-Dorg.slf4j.simpleLogger.dateTimeFormat=HH:mm:ss.SSS",
        "-cp",
        f"{libs}/*",
    ]


class Listener:
    """How a client reaches the node through one of its listeners: the
    broker interface the tests use (`bootstrap_servers`, `client_config`,
    `create_topics`), as pipelines.local_broker.LocalBroker offers it."""

    def __init__(self, node: "ApacheKafka", name: str, port: int, client_config: Mapping[str, Any]):
        self.node = node
        self.name = name
        self.port = port
        self.bootstrap_servers = f"127.0.0.1:{port}"
        self.client_config = MappingProxyType(dict(client_config))

    def admin(self) -> KafkaAdminClient:
        return KafkaAdminClient(bootstrap_servers=self.bootstrap_servers, **self.client_config)

    def create_topics(self, names: list[str], partitions: int = 1, configs: dict[str, str] | None = None) -> None:
        admin = self.admin()
        try:
            admin.create_topics([NewTopic(name, partitions, 1, topic_configs=configs or {}) for name in names])
        except TopicAlreadyExistsError:
            pass
        finally:
            admin.close()

    def restart(self) -> None:
        self.node.restart()

    def __repr__(self) -> str:
        return f"ApacheKafka {self.name} listener at {self.bootstrap_servers}"


class SaslListener(Listener):
    """The SCRAM-SHA-512 listener: `client_config` logs in as `user`."""

    user, password = "wirecopy", "s3cret-p4ss"

    def __init__(self, node: "ApacheKafka", port: int):
        super().__init__(
            node,
            "SASL",
            port,
            {
                "security_protocol": "SASL_PLAINTEXT",
                "sasl_mechanism": "SCRAM-SHA-512",
                "sasl_plain_username": self.user,
                "sasl_plain_password": self.password,
            },
        )

    def authentication_failures(self) -> list[str]:
        """The broker's own log lines for connections it refused at authentication."""
        return [line for line in self.node.log_lines() if "Failed authentication" in line]


class ApacheKafka:
    """A KRaft single node; use as a context manager. `plaintext`, `tls` and
    `sasl` are its client listeners (`tls` and `sasl` only when asked for)."""

    def __init__(
        self,
        directory: Path,
        certificate_authority: trustme.CA | None = None,
        cafile: Path | None = None,
        with_sasl: bool = False,
        startup_timeout_s: float = 120.0,
    ):
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self._startup_timeout_s = startup_timeout_s
        self._process: subprocess.Popen | None = None
        self._log = directory / "server.log"
        self._controller_port = free_port()
        self.plaintext = Listener(self, "PLAIN", free_port(), {})
        self.tls = self.sasl = None
        listeners = [self.plaintext]
        if certificate_authority is not None:
            self.tls = Listener(self, "TLS", free_port(), {"security_protocol": "SSL", "ssl_cafile": str(cafile)})
            listeners.append(self.tls)
        if with_sasl:
            self.sasl = SaslListener(self, free_port())
            listeners.append(self.sasl)
        self._properties = directory / "server.properties"
        self._write_properties(listeners, certificate_authority)
        self._formatted = False

    def _write_properties(self, listeners: list[Listener], certificate_authority: trustme.CA | None) -> None:
        protocols = {"PLAIN": "PLAINTEXT", "TLS": "SSL", "SASL": "SASL_PLAINTEXT", "CONTROLLER": "PLAINTEXT"}
        addresses = [f"{listener.name}://{listener.bootstrap_servers}" for listener in listeners]
        settings = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.bootstrap.servers": f"127.0.0.1:{self._controller_port}",
            "controller.listener.names": "CONTROLLER",
            "listeners": ",".join(addresses + [f"CONTROLLER://127.0.0.1:{self._controller_port}"]),
            "advertised.listeners": ",".join(addresses),
            "listener.security.protocol.map": ",".join(f"{name}:{protocol}" for name, protocol in protocols.items()),
            "inter.broker.listener.name": "PLAIN",
            "log.dirs": str(self.directory / "data"),
            # One node: the internal topics cannot have three replicas.
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            # A test group has one member: waiting 3 s for others only slows each run down.
            "group.initial.rebalance.delay.ms": "0",
        }
        if self.tls is not None:
            self._write_keystore(certificate_authority)
            settings.update(
                {
                    "listener.name.tls.ssl.keystore.type": "PEM",
                    "listener.name.tls.ssl.keystore.location": str(self.directory / "keystore.pem"),
                }
            )
        if self.sasl is not None:
            settings.update(
                {
                    "listener.name.sasl.sasl.enabled.mechanisms": "SCRAM-SHA-512",
                    "listener.name.sasl.scram-sha-512.sasl.jaas.config": "org.apache.kafka.common.security.scram.ScramLoginModule required;",
                }
            )
        self._properties.write_text("".join(f"{key}={value}\n" for key, value in settings.items()))

    def _write_keystore(self, certificate_authority: trustme.CA) -> None:
        """Key and certificate chain in one PEM file; Kafka reads PKCS#8 keys only (trustme writes SEC1)."""
        issued = certificate_authority.issue_cert("127.0.0.1")
        key = serialization.load_pem_private_key(issued.private_key_pem.bytes(), password=None)
        pkcs8 = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        chain = b"".join(blob.bytes() for blob in issued.cert_chain_pems)
        (self.directory / "keystore.pem").write_bytes(pkcs8 + chain)

    def _format_storage(self) -> None:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        # "--cluster-id=": one id in 64 starts with "-", which the tool's parser would take for an option (CI saw it)
        formatted = subprocess.run(
            [
                *java_command(),
                "kafka.tools.StorageTool",
                "format",
                "--standalone",
                f"--cluster-id={cluster_id}",
                "--config",
                str(self._properties),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if formatted.returncode != 0:
            raise RuntimeError(f"formatting the Kafka log directory failed:\n{formatted.stdout}{formatted.stderr}")
        self._formatted = True

    def start(self) -> "ApacheKafka":
        if not self._formatted:
            self._format_storage()
        with self._log.open("a") as log:
            self._process = subprocess.Popen(
                [*java_command(), "kafka.Kafka", str(self._properties)], stdout=log, stderr=subprocess.STDOUT
            )
        self._wait_until_serving()
        if self.sasl is not None:
            self._create_scram_user()
        return self

    def _wait_until_serving(self) -> None:
        """Serving means the node lists itself as a broker in its metadata: it
        has registered with its controller and is no longer fenced."""
        deadline = time.monotonic() + self._startup_timeout_s
        while not self._serving():
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"Apache Kafka exited at start with code {self._process.returncode}:\n"
                    + "\n".join(self.log_lines()[-40:])
                )
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"Apache Kafka did not serve within {self._startup_timeout_s} s:\n"
                    + "\n".join(self.log_lines()[-40:])
                )
            time.sleep(0.2)

    def _serving(self) -> bool:
        # The listener accepts connections only once the node has started; a
        # client asked earlier backs off for seconds, so knock first.
        try:
            socket.create_connection(("127.0.0.1", self.plaintext.port), timeout=1).close()
        except OSError:
            return False
        try:
            admin = KafkaAdminClient(bootstrap_servers=self.plaintext.bootstrap_servers, request_timeout_ms=5000)
        except KafkaError:
            return False
        try:
            return bool(admin.describe_cluster()["brokers"])
        except KafkaError:
            return False
        finally:
            admin.close()

    def _create_scram_user(self) -> None:
        admin = self.plaintext.admin()
        try:
            errors = admin.alter_user_scram_credentials(
                [UserScramCredentialUpsertion(self.sasl.user, ScramMechanism.SCRAM_SHA_512, self.sasl.password)]
            )
        finally:
            admin.close()
        if any(errors.values()):
            raise RuntimeError(f"creating the SCRAM user failed: {errors}")

    def stop(self) -> None:
        """A clean shutdown (SIGTERM), as an operator's restart does; killed if it hangs."""
        if self._process is not None:
            terminate(self._process, timeout_s=60)
        self._process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_lines(self) -> list[str]:
        return self._log.read_text(errors="replace").splitlines() if self._log.exists() else []

    def __enter__(self) -> "ApacheKafka":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()
