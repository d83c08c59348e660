"""A SASL-authenticating front for the local broker, for tests.

The embedded broker (Tansu) cannot hold SASL users for an authenticating
listener, so this gate does what a Kafka broker's SASL listener does and
forwards everything else: it answers SaslHandshake and SaslAuthenticate
itself (PLAIN and SCRAM-SHA-256/512, verifying credentials as RFC 5802 says),
refuses any other request before authentication, and once a connection is
authenticated pipes its bytes to the broker untouched. Clients therefore run
their real SASL code against a server that really rejects a wrong password.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import struct
import threading

from kafka.protocol.sasl import (
    SaslAuthenticateRequest,
    SaslAuthenticateResponse,
    SaslHandshakeRequest,
    SaslHandshakeResponse,
)

from wirecopy.pipelines.local_broker import LocalBroker, free_port

_API_VERSIONS, _SASL_HANDSHAKE, _SASL_AUTHENTICATE = 18, 17, 36
_NO_ERROR, _UNSUPPORTED_SASL_MECHANISM, _ILLEGAL_SASL_STATE, _SASL_AUTHENTICATION_FAILED = 0, 33, 34, 58
_SCRAM_HASHES = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}
MECHANISMS = ("PLAIN", *_SCRAM_HASHES)


class AuthenticationFailed(Exception):
    pass


async def _read_frame(reader: asyncio.StreamReader) -> bytes:
    (size,) = struct.unpack(">i", await reader.readexactly(4))
    return await reader.readexactly(size)


def _framed(payload: bytes) -> bytes:
    return struct.pack(">i", len(payload)) + payload


class _PlainExchange:
    def __init__(self, users: dict[str, str]):
        self._users = users
        self.done = False

    def step(self, client_message: bytes) -> bytes:
        _authorization_id, user, password = client_message.decode().split("\0")
        if user not in self._users or not hmac.compare_digest(self._users[user], password):
            raise AuthenticationFailed(f"invalid credentials for {user!r}")
        self.done = True
        return b""


class _ScramExchange:
    """Server side of SCRAM (RFC 5802), two round trips."""

    _ITERATIONS = 4096

    def __init__(self, users: dict[str, str], mechanism: str):
        self._users = users
        self._hash = _SCRAM_HASHES[mechanism]
        self._client_first_bare = self._server_first = None
        self.done = False

    def _hmac(self, key: bytes, message: bytes) -> bytes:
        return hmac.new(key, message, self._hash).digest()

    def step(self, client_message: bytes) -> bytes:
        text = client_message.decode()
        if self._server_first is None:
            if not text.startswith("n,,"):
                raise AuthenticationFailed("channel binding is not supported")
            self._client_first_bare = text[3:]
            attributes = dict(part.split("=", 1) for part in self._client_first_bare.split(","))
            self._user = attributes["n"]
            if self._user not in self._users:
                raise AuthenticationFailed(f"unknown user {self._user!r}")
            self._nonce = attributes["r"] + base64.b64encode(os.urandom(18)).decode()
            self._salt = os.urandom(16)
            self._server_first = f"r={self._nonce},s={base64.b64encode(self._salt).decode()},i={self._ITERATIONS}"
            return self._server_first.encode()
        without_proof, _, proof = text.rpartition(",p=")
        if dict(part.split("=", 1) for part in without_proof.split(",")).get("r") != self._nonce:
            raise AuthenticationFailed("nonce mismatch")
        auth_message = f"{self._client_first_bare},{self._server_first},{without_proof}".encode()
        salted = hashlib.pbkdf2_hmac(self._hash, self._users[self._user].encode(), self._salt, self._ITERATIONS)
        stored_key = hashlib.new(self._hash, self._hmac(salted, b"Client Key")).digest()
        signature = self._hmac(stored_key, auth_message)
        client_key = bytes(a ^ b for a, b in zip(base64.b64decode(proof), signature))
        if not hmac.compare_digest(hashlib.new(self._hash, client_key).digest(), stored_key):
            raise AuthenticationFailed(f"invalid credentials for {self._user!r}")
        self.done = True
        server_signature = self._hmac(self._hmac(salted, b"Server Key"), auth_message)
        return b"v=" + base64.b64encode(server_signature)


class SaslGate:
    """Listens on `port`; authenticates each connection, then forwards it to `upstream_port`."""

    def __init__(self, port: int, upstream_port: int, users: dict[str, str]):
        self._port = port
        self._upstream_port = upstream_port
        self._users = users
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="sasl-gate", daemon=True)
        self.rejections: list[str] = []

    def start(self) -> None:
        self._thread.start()
        serving = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", self._port), self._loop
        )
        self._server = serving.result(timeout=10)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    async def _close(self) -> None:
        self._server.close()
        connections = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in connections:
            task.cancel()
        await asyncio.gather(*connections, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, client_reader, client_writer) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self._upstream_port)
        except OSError:
            client_writer.close()
            return
        try:
            authenticated = await self._authenticate(client_reader, client_writer, upstream_reader, upstream_writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            authenticated = False
        if not authenticated:
            client_writer.close()
            upstream_writer.close()
            return
        await asyncio.gather(self._pipe(client_reader, upstream_writer), self._pipe(upstream_reader, client_writer))

    async def _authenticate(self, client_reader, client_writer, upstream_reader, upstream_writer) -> bool:
        exchange = None
        while True:
            request = await _read_frame(client_reader)
            api_key, version, correlation_id = struct.unpack(">hhi", request[:8])
            if api_key == _API_VERSIONS:  # allowed before authentication, as on a Kafka SASL listener
                upstream_writer.write(_framed(request))
                client_writer.write(_framed(await _read_frame(upstream_reader)))
            elif api_key == _SASL_HANDSHAKE:
                mechanism = SaslHandshakeRequest.decode(request, version=version, header=True).mechanism
                known = mechanism in MECHANISMS
                if known:
                    exchange = (
                        _PlainExchange(self._users) if mechanism == "PLAIN" else _ScramExchange(self._users, mechanism)
                    )
                response = SaslHandshakeResponse(
                    error_code=_NO_ERROR if known else _UNSUPPORTED_SASL_MECHANISM,
                    mechanisms=list(MECHANISMS),
                    version=version,
                )
                client_writer.write(self._encoded(response, correlation_id))
                if not known:
                    return False
            elif api_key == _SASL_AUTHENTICATE and exchange is not None:
                client_message = SaslAuthenticateRequest.decode(request, version=version, header=True).auth_bytes
                try:
                    reply = exchange.step(client_message)
                except AuthenticationFailed as failure:
                    self.rejections.append(str(failure))
                    response = SaslAuthenticateResponse(
                        error_code=_SASL_AUTHENTICATION_FAILED,
                        error_message=f"Authentication failed: {failure}",
                        auth_bytes=b"",
                        session_lifetime_ms=0,
                        version=version,
                    )
                    client_writer.write(self._encoded(response, correlation_id))
                    await client_writer.drain()
                    return False
                response = SaslAuthenticateResponse(
                    error_code=_NO_ERROR, error_message=None, auth_bytes=reply, session_lifetime_ms=0, version=version
                )
                client_writer.write(self._encoded(response, correlation_id))
                if exchange.done:
                    await client_writer.drain()
                    return True
            else:
                self.rejections.append(f"API key {api_key} before authentication")
                return False
            await client_writer.drain()

    @staticmethod
    def _encoded(response, correlation_id: int) -> bytes:
        response.with_header(correlation_id=correlation_id)
        return response.encode(header=True, framed=True)

    @staticmethod
    async def _pipe(reader, writer) -> None:
        try:
            while chunk := await reader.read(1 << 16):
                writer.write(chunk)
                await writer.drain()
        except ConnectionError:
            pass  # the other side went away: close this one too
        finally:
            writer.close()


class SaslFrontedBroker(LocalBroker):
    """A local broker that clients reach only through the SASL gate (it
    advertises the gate's port). `client_config` authenticates as `user`
    with SCRAM-SHA-512; `config_for` gives any mechanism or password."""

    user, password = "wirecopy", "s3cret-p4ss"

    def __init__(self):
        gate_port = free_port()
        super().__init__(advertised_port=gate_port)
        self.gate = SaslGate(gate_port, self.port, {self.user: self.password})
        self.bootstrap_servers = f"127.0.0.1:{gate_port}"
        self.client_config = self.config_for("SCRAM-SHA-512")

    def config_for(self, mechanism: str, password: str | None = None) -> dict[str, str]:
        return {
            "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": mechanism,
            "sasl_plain_username": self.user,
            "sasl_plain_password": password or self.password,
        }

    def authentication_failures(self) -> list[str]:
        return self.gate.rejections

    def start(self) -> "SaslFrontedBroker":
        super().start()
        self.gate.start()
        return self

    def stop(self) -> None:
        self.gate.stop()
        super().stop()
