"""Signs partner calls: a pyqwest transport that adds the four partner headers.

Signing happens on the HTTP request as it goes on the wire, so it covers the
exact body bytes whatever the Connect client chose (Connect binary or JSON,
gzip, GET, gRPC or gRPC-web).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from pyqwest import (
    Client,
    Headers,
    HTTPTransport,
    HTTPVersion,
    Request,
    Response,
    SyncClient,
    SyncHTTPTransport,
    SyncRequest,
    SyncResponse,
    SyncTransport,
    Transport,
    get_default_sync_transport,
    get_default_transport,
)

HEADER_KEY_ID = "x-ttip-key-id"
HEADER_TIMESTAMP = "x-ttip-timestamp"
HEADER_SIGNATURE = "x-ttip-signature"
# A request id, signed and spent once: two identical calls in one second are not replays.
HEADER_NONCE = "x-ttip-nonce"

# The gateway reads at most 1 MiB by default; a larger body would be refused anyway.
MAX_SIGNED_BODY_BYTES = 16 << 20

_KEY_ID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


@dataclass(frozen=True)
class PartnerKey:
    """A key an admin issued: its id (a UUID) and its secret (ttip_sk_…), shown once."""

    key_id: str
    secret: str

    def __post_init__(self) -> None:
        if not _KEY_ID.match(self.key_id):
            raise ValueError("partner key id must be the key's UUID")
        if not self.secret:
            raise ValueError("partner key secret is required")

    def __repr__(self) -> str:  # never print the secret
        return f"PartnerKey(key_id={self.key_id!r}, secret=<redacted>)"


def string_to_sign(method: str, path_with_query: str, unix_seconds: int, body_sha256_hex: str, nonce: str = "") -> str:
    """METHOD \\n path (with query) \\n unix seconds \\n hex SHA-256 of the raw body, then
    \\n nonce when the call carries one (without: the first scheme, still accepted, where two
    identical calls in one second are one signed request and the second is a replay)."""
    lines = [method.upper(), path_with_query, str(unix_seconds), body_sha256_hex]
    return "\n".join([*lines, nonce] if nonce else lines)


def hmac_sha256_hex(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def new_nonce() -> str:
    """A fresh nonce for one call (a random UUID)."""
    return str(uuid.uuid4())


def signature_headers(key: PartnerKey, method: str, path_with_query: str, body: bytes, unix_seconds: int, nonce: str | None = None) -> dict[str, str]:
    """The four headers for a request with exactly these body bytes, under a fresh nonce unless one is given."""
    nonce = nonce or new_nonce()
    digest = hashlib.sha256(body).hexdigest()
    to_sign = string_to_sign(method, path_with_query, unix_seconds, digest, nonce)
    return {
        HEADER_KEY_ID: key.key_id,
        HEADER_TIMESTAMP: str(unix_seconds),
        HEADER_NONCE: nonce,
        HEADER_SIGNATURE: hmac_sha256_hex(key.secret, to_sign.encode()),
    }


def _path_with_query(url: str) -> str:
    parts = urlsplit(url)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def _bounded(size: int) -> None:
    if size > MAX_SIGNED_BODY_BYTES:
        raise ValueError(f"a signed request body may be at most {MAX_SIGNED_BODY_BYTES} bytes")


def _join(chunks: Iterable[bytes]) -> bytes:
    body = bytearray()
    for chunk in chunks:
        body += chunk
        _bounded(len(body))
    return bytes(body)


def _signed_headers(key: PartnerKey, method: str, url: str, headers: Headers, body: bytes, now: Callable[[], float], nonce: Callable[[], str]) -> Headers:
    signed = Headers(headers.items())
    for name, value in signature_headers(key, method, _path_with_query(url), body, int(now()), nonce()).items():
        signed[name] = value
    return signed


class PartnerSigner:
    """A synchronous pyqwest transport that signs every request with a partner key."""

    def __init__(self, key: PartnerKey, transport: SyncTransport | None = None, *, now: Callable[[], float] = time.time, nonce: Callable[[], str] = new_nonce) -> None:
        self._key = key
        self._transport = transport or get_default_sync_transport()
        self._now = now
        self._nonce = nonce

    def execute_sync(self, request: SyncRequest) -> SyncResponse:
        content = request.content
        body = content if isinstance(content, bytes) else _join(content or ())
        _bounded(len(body))
        headers = _signed_headers(self._key, request.method, request.url, request.headers, body, self._now, self._nonce)
        return self._transport.execute_sync(SyncRequest(request.method, request.url, headers=headers, content=body))


class AsyncPartnerSigner:
    """An asynchronous pyqwest transport that signs every request with a partner key."""

    def __init__(self, key: PartnerKey, transport: Transport | None = None, *, now: Callable[[], float] = time.time, nonce: Callable[[], str] = new_nonce) -> None:
        self._key = key
        self._transport = transport or get_default_transport()
        self._now = now
        self._nonce = nonce

    async def execute(self, request: Request) -> Response:
        content = request.content
        if isinstance(content, bytes):
            body = content
        elif content is None:
            body = b""
        else:
            body = await _join_async(content)
        _bounded(len(body))
        headers = _signed_headers(self._key, request.method, request.url, request.headers, body, self._now, self._nonce)
        return await self._transport.execute(Request(request.method, request.url, headers=headers, content=body))


async def _join_async(chunks: AsyncIterator[bytes]) -> bytes:
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        _bounded(len(body))
    return bytes(body)


def signed_http_client(key: PartnerKey, *, h2c: bool = False, now: Callable[[], float] = time.time, nonce: Callable[[], str] = new_nonce) -> SyncClient:
    """A pyqwest SyncClient that signs every call; pass it to a generated ...ClientSync as
    http_client (and close it yourself). h2c=True speaks HTTP/2 without TLS, which the
    gRPC protocol needs on a plaintext address."""
    transport = SyncHTTPTransport(http_version=HTTPVersion.HTTP2) if h2c else None
    return SyncClient(PartnerSigner(key, transport, now=now, nonce=nonce))


def signed_async_http_client(key: PartnerKey, *, h2c: bool = False, now: Callable[[], float] = time.time, nonce: Callable[[], str] = new_nonce) -> Client:
    """The asyncio counterpart of signed_http_client, for the generated async clients."""
    transport = HTTPTransport(http_version=HTTPVersion.HTTP2) if h2c else None
    return Client(AsyncPartnerSigner(key, transport, now=now, nonce=nonce))
