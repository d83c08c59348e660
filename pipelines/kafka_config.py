"""Kafka client settings where operators keep them: a Java `client.properties`
file, `--consumer-config`/`--producer-config` on the command line.

The file is read as `java.util.Properties.load` reads it (`=`, `:` or white
space between key and value, `\\` continuation lines, escapes, `#`/`!`
comments), so a Java client's file works as it is. Each setting becomes
kafka-python's (`security.protocol` → `security_protocol`) and goes to
whichever client knows it; Java settings with another name or form in
kafka-python are translated (`sasl.jaas.config`, PEM trust and key stores,
`ssl.endpoint.identification.algorithm`, `acks=all`); Java settings that
kafka-python has no counterpart for are left out with a warning; anything
else is refused with the nearest known name. `bootstrap.servers` and
`group.id` in the file are the run's connection settings unless the command
line or the environment gives them (see `pipelines/options.py`).
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import re
from pathlib import Path
from typing import Any, Mapping

from kafka import KafkaConsumer, KafkaProducer

_LOG = logging.getLogger(__name__)

_CLIENT_DEFAULTS = {"consumer": KafkaConsumer.DEFAULT_CONFIG, "producer": KafkaProducer.DEFAULT_CONFIG}
_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}
_SEPARATORS = "=:"
_WHITE_SPACE = " \t\f"


def read_properties(text: str) -> dict[str, str]:
    """The key/value pairs of a `.properties` text, as `java.util.Properties.load` reads them; a later key wins."""
    properties: dict[str, str] = {}
    for line in _logical_lines(text):
        key, value = _split_key(line)
        properties[key] = value
    return properties


def _logical_lines(text: str) -> list[str]:
    """Lines joined where one ends in an odd number of backslashes; comments and blank lines left out."""
    lines, pending = [], None
    for natural in re.split(r"\r\n|\r|\n", text):
        stripped = natural.lstrip(_WHITE_SPACE)
        if pending is None and (not stripped or stripped[0] in "#!"):
            continue
        trailing = len(stripped) - len(stripped.rstrip("\\"))
        continued = trailing % 2 == 1
        part = stripped[:-1] if continued else stripped
        pending = part if pending is None else pending + part
        if not continued:
            lines.append(pending)
            pending = None
    if pending is not None:
        lines.append(pending)
    return lines


def _split_key(line: str) -> tuple[str, str]:
    """(key, value) of one logical line: the key ends at the first unescaped separator or white space."""
    index, key_end = 0, len(line)
    while index < len(line):
        char = line[index]
        if char == "\\":
            index += 2
            continue
        if char in _SEPARATORS or char in _WHITE_SPACE:
            key_end = index
            break
        index += 1
    rest = line[key_end:].lstrip(_WHITE_SPACE)
    if rest[:1] and rest[0] in _SEPARATORS:
        rest = rest[1:].lstrip(_WHITE_SPACE)
    return _unescape(line[:key_end]), _unescape(rest)


def _unescape(text: str) -> str:
    def replace(match: re.Match) -> str:
        escaped = match.group(1)
        if escaped.startswith("u"):
            if not re.fullmatch(r"u[0-9a-fA-F]{4}", escaped):
                raise ValueError(f"malformed \\uXXXX escape in {text!r}")
            return chr(int(escaped[1:], 16))
        return _ESCAPES.get(escaped, escaped)

    return re.sub(r"\\(u[0-9a-fA-F]{0,4}|.)", replace, text, flags=re.DOTALL)


# --- Java settings in kafka-python -------------------------------------------

_JAAS_LOGIN_MODULES = (
    "org.apache.kafka.common.security.plain.PlainLoginModule",
    "org.apache.kafka.common.security.scram.ScramLoginModule",
)
# Java client settings kafka-python has no counterpart for: left out, with a warning naming them.
_JAVA_ONLY = frozenset(
    {
        "buffer.memory",
        "socket.connection.setup.timeout.ms",
        "socket.connection.setup.timeout.max.ms",
        "metadata.max.idle.ms",
        "default.api.timeout.ms",
        "retry.backoff.max.ms",
        "internal.leave.group.on.close",
        "auto.include.jmx.reporter",
        "metrics.recording.level",
        "enable.metrics.push",
        "interceptor.classes",
        "partitioner.class",
        "partitioner.ignore.keys",
        "partitioner.adaptive.partitioning.enable",
        "partitioner.availability.timeout.ms",
        "security.providers",
        "ssl.protocol",
        "ssl.enabled.protocols",
        "ssl.keymanager.algorithm",
        "ssl.trustmanager.algorithm",
        "ssl.secure.random.implementation",
        "ssl.engine.factory.class",
        "ssl.provider",
        "ssl.truststore.password",
        "sasl.login.refresh.window.factor",
        "sasl.login.refresh.window.jitter",
        "sasl.login.refresh.min.period.seconds",
        "sasl.login.refresh.buffer.seconds",
        "sasl.kerberos.min.time.before.relogin",
        "sasl.kerberos.ticket.renew.jitter",
        "sasl.kerberos.ticket.renew.window.factor",
        "sasl.kerberos.kinit.cmd",
        # wirecopy reads and writes the records' bytes itself
        "key.serializer",
        "value.serializer",
        "key.deserializer",
        "value.deserializer",
    }
)
# Settings of a Java file that name the connection rather than a client's behaviour.
CONNECTION_KEYS = {"bootstrap.servers": "bootstrap_servers", "group.id": "group_id"}
_PEM_SUFFIXES = (".pem", ".crt", ".cer", ".key")


@dataclasses.dataclass(frozen=True)
class ClientSettings:
    consumer: dict[str, Any]
    producer: dict[str, Any]
    connection: dict[str, str]  # bootstrap_servers and group_id the file gave


def jaas_credentials(jaas_config: str) -> list[tuple[str, str]]:
    """A Java client's `sasl.jaas.config` line as kafka-python's settings: a
    client.properties written for Java carries its SASL credentials there."""
    if not jaas_config.startswith(_JAAS_LOGIN_MODULES):
        raise ValueError(
            "sasl.jaas.config: only the PLAIN and SCRAM login modules have kafka-python equivalents; "
            "for other mechanisms give kafka-python's own settings"
        )
    options = {
        name: re.sub(r"\\(.)", r"\1", quoted)
        for name, quoted in re.findall(r'(\w+)\s*=\s*"((?:[^"\\]|\\.)*)"', jaas_config)
    }
    missing = [name for name in ("username", "password") if name not in options]
    if missing:
        raise ValueError(f"sasl.jaas.config has no {' or '.join(missing)}")
    return [("sasl_plain_username", options["username"]), ("sasl_plain_password", options["password"])]


def _store(properties: Mapping[str, str], kind: str) -> str | None:
    """A trust or key store's path, if kafka-python can read it (PEM); raises for JKS and PKCS12."""
    location = properties.get(f"ssl.{kind}store.location")
    if location is None:
        return None
    store_type = properties.get(f"ssl.{kind}store.type", "PEM" if location.lower().endswith(_PEM_SUFFIXES) else "JKS")
    if store_type.upper() != "PEM":
        target = "ssl.cafile" if kind == "trust" else "ssl.certfile and ssl.keyfile"
        raise ValueError(
            f"ssl.{kind}store.location is a {store_type} store, which kafka-python cannot read: "
            f"export it as PEM (keytool -exportcert -rfc, or openssl pkcs12) and give {target}"
        )
    return location


def _translated(properties: Mapping[str, str]) -> list[tuple[str, str]]:
    """kafka-python (name, text value) pairs for the Java settings of a file or command line."""
    settings: list[tuple[str, str]] = []
    ignored = sorted(key for key in properties if key in _JAVA_ONLY)
    if ignored:
        _LOG.warning(
            "Kafka settings left out (Java client settings kafka-python has no counterpart for): %s", ", ".join(ignored)
        )
    if (truststore := _store(properties, "trust")) is not None:
        settings.append(("ssl_cafile", truststore))
    if (keystore := _store(properties, "key")) is not None:  # a PEM key store holds the certificate and its key
        settings += [("ssl_certfile", keystore), ("ssl_keyfile", keystore)]
    for key, value in properties.items():
        if key in _JAVA_ONLY or key in CONNECTION_KEYS or key.startswith(("ssl.truststore.", "ssl.keystore.")):
            continue
        if key == "sasl.jaas.config":
            settings += jaas_credentials(value)
        elif key == "ssl.endpoint.identification.algorithm":
            settings.append(("ssl_check_hostname", "true" if value.strip() else "false"))
        elif key == "ssl.key.password":
            settings.append(("ssl_password", value))
        elif key == "sasl.mechanism" and value.upper() == "OAUTHBEARER":
            raise ValueError("sasl.mechanism=OAUTHBEARER: kafka-python takes its token provider as code, not a setting")
        elif key == "enable.auto.commit" and value.strip().lower() == "true":
            raise ValueError(
                "enable.auto.commit=true: wirecopy commits offsets itself, after the outputs are flushed "
                "(at-least-once); leave it out"
            )
        elif key == "enable.auto.commit":
            continue  # false is what the reader sets anyway
        elif key == "compression.type" and value.strip().lower() == "none":
            continue  # kafka-python's default: no compression
        else:
            settings.append((key.replace(".", "_"), value))
    return settings


def typed_setting(key: str, value: str, defaults: Mapping[str, Any]) -> Any:
    """The value in the type of the client's own default (strings stay strings: passwords may be digits)."""
    value = value.strip() if key not in ("ssl_password", "sasl_plain_password") else value
    if key == "acks":  # Java writes all, -1, 0 or 1; kafka-python takes "all", 0 or 1
        return "all" if value.lower() in ("all", "-1") else int(value)
    default = defaults[key]
    if isinstance(default, bool):
        if value.lower() not in ("true", "false"):
            raise ValueError(f"{key} must be true or false, got {value!r}")
        return value.lower() == "true"
    if isinstance(default, (int, float)):
        try:
            return type(default)(value)
        except ValueError:
            raise ValueError(f"{key} must be a number, got {value!r}") from None
    return value


def _known_names() -> list[str]:
    names = {key.replace("_", ".") for defaults in _CLIENT_DEFAULTS.values() for key in defaults}
    return sorted(names | _JAVA_ONLY | set(CONNECTION_KEYS))


def client_settings(config_file: Path | None, consumer_lines: list[str], producer_lines: list[str]) -> ClientSettings:
    """Consumer and producer settings (the file's go to whichever clients know them), and the file's connection."""
    sources: list[tuple[dict[str, str], tuple[str, ...]]] = []
    if config_file is not None:
        sources.append((read_properties(config_file.read_text(encoding="utf-8")), ("consumer", "producer")))
    for lines, client in ((consumer_lines, "consumer"), (producer_lines, "producer")):
        for line in lines:
            if "=" not in line:
                raise ValueError(f"expected KEY=VALUE, got {line!r}")
            sources.append((read_properties(line), (client,)))
    configs: dict[str, dict[str, Any]] = {"consumer": {}, "producer": {}}
    connection: dict[str, str] = {}
    for properties, clients in sources:
        # kafka-python's names (bootstrap_servers) for the connection too
        properties = {
            (key.replace("_", ".") if key.replace("_", ".") in CONNECTION_KEYS else key): value
            for key, value in properties.items()
        }
        for key, name in CONNECTION_KEYS.items():
            if key in properties:
                if clients != ("consumer", "producer"):
                    raise ValueError(
                        f"{key} is a connection setting: give it to --{name.replace('_', '-')} or the file"
                    )
                connection[name] = properties[key].strip()
        for key, value in _translated(properties):
            known_by = [client for client in clients if key in _CLIENT_DEFAULTS[client]]
            if not known_by:
                raise ValueError(_unknown_message(key.replace("_", "."), clients))
            for client in known_by:
                configs[client][key] = typed_setting(key, value, _CLIENT_DEFAULTS[client])
    return ClientSettings(configs["consumer"], configs["producer"], connection)


def _unknown_message(name: str, clients: tuple[str, ...]) -> str:
    message = f"{name!r} is not a Kafka {' or '.join(clients)} setting"
    close = difflib.get_close_matches(name, _known_names(), n=1)
    return message + (f"; did you mean {close[0]!r}?" if close else "")
