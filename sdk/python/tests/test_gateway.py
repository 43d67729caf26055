"""Against a running gateway: sdk/test/python-sdk.test.ts starts the platform, issues a
partner key and runs these with TTIP_GATEWAY_URL, TTIP_KEY_ID and TTIP_SECRET set.
Outside that harness they are skipped, unless TTIP_REQUIRE_GATEWAY=1."""

from __future__ import annotations

import asyncio
import json
import os
import queue
import re
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from connectrpc.code import Code
from connectrpc.codec import proto_json_codec
from connectrpc.errors import ConnectError
from connectrpc.protocol import ProtocolType

from ttip_sdk import WEBHOOK_SIGNATURE_HEADER, PartnerKey, WebhookVerificationError, new_nonce, signed_async_http_client, signed_http_client, verify_webhook
from ttip_sdk.gen.ttip.auth.v1.partner_pb import WebhookEvent, WebhookEventType
from ttip_sdk.gen.ttip.auth.v1.partner_service_connect import PartnerServiceClientSync
from ttip_sdk.gen.ttip.auth.v1.partner_service_pb import CreateWebhookSubscriptionRequest
from ttip_sdk.gen.ttip.qr.v1.qr_pb import QrCodeStatus
from ttip_sdk.gen.ttip.qr.v1.qr_service_connect import QrServiceClient, QrServiceClientSync
from ttip_sdk.gen.ttip.qr.v1.qr_service_pb import GetQrCodeRequest, GetQrCodeResponse, RotateQrCodeRequest


@dataclass(frozen=True)
class Gateway:
    url: str
    key: PartnerKey


@pytest.fixture(scope="module")
def gateway() -> Gateway:
    url, key_id, secret = (os.environ.get(n, "") for n in ("TTIP_GATEWAY_URL", "TTIP_KEY_ID", "TTIP_SECRET"))
    if not (url and key_id and secret):
        if os.environ.get("TTIP_REQUIRE_GATEWAY") == "1":
            pytest.fail("TTIP_GATEWAY_URL, TTIP_KEY_ID and TTIP_SECRET are required")
        pytest.skip("no running gateway: set TTIP_GATEWAY_URL, TTIP_KEY_ID and TTIP_SECRET")
    return Gateway(url, PartnerKey(key_id, secret))


@pytest.fixture
def client_for(gateway: Gateway) -> Iterator[Callable[..., QrServiceClientSync]]:
    """Makes signed QrService clients, closed after the test."""
    opened: list[QrServiceClientSync] = []

    def make(key: PartnerKey | None = None, *, now: Callable[[], float] = time.time, nonce: Callable[[], str] = new_nonce, h2c: bool = False, **options: object) -> QrServiceClientSync:
        http = signed_http_client(key or gateway.key, h2c=h2c, now=now, nonce=nonce)
        client = QrServiceClientSync(gateway.url, http_client=http, **options)  # type: ignore[arg-type]
        opened.append(client)
        return client

    yield make
    for c in opened:
        c.close()


def assert_echoes(res: GetQrCodeResponse, qr_code_id: str) -> None:
    # The harness's qr service answers with the asked-for id and the short code K7M4QX.
    assert res.qr_code is not None
    assert (res.qr_code.qr_code_id, res.qr_code.short_code, res.qr_code.status) == (qr_code_id, "K7M4QX", QrCodeStatus.ACTIVE)


# Each protocol gets a signed answer; the harness counts the calls the qr service saw
# as this key with the role partner. Connect binary is the client's default, gzip-compressed.
PROTOCOLS: dict[str, dict[str, object]] = {
    "connect-binary-gzip": {},
    "connect-json": {"codec": proto_json_codec()},
    "grpc-web": {"protocol": ProtocolType.GRPC_WEB},
    "grpc": {"protocol": ProtocolType.GRPC, "h2c": True},
}


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_signed_call_gets_an_answer(client_for: Callable[..., QrServiceClientSync], protocol: str) -> None:
    qr_code_id = str(uuid.uuid4())
    assert_echoes(client_for(**PROTOCOLS[protocol]).get_qr_code(GetQrCodeRequest(qr_code_id=qr_code_id)), qr_code_id)


def test_signed_get_gets_an_answer(client_for: Callable[..., QrServiceClientSync]) -> None:
    qr_code_id = str(uuid.uuid4())
    assert_echoes(client_for().get_qr_code(GetQrCodeRequest(qr_code_id=qr_code_id), use_get=True), qr_code_id)


def test_async_signed_call_gets_an_answer(gateway: Gateway) -> None:
    async def call() -> GetQrCodeResponse:
        async with QrServiceClient(gateway.url, http_client=signed_async_http_client(gateway.key)) as client:
            return await client.get_qr_code(GetQrCodeRequest(qr_code_id=qr_code_id))

    qr_code_id = str(uuid.uuid4())
    assert_echoes(asyncio.run(call()), qr_code_id)


def refused(call: Callable[[], object], code: Code, message: str) -> None:
    with pytest.raises(ConnectError) as caught:
        call()
    assert caught.value.code == code
    assert re.fullmatch(message, caught.value.message), caught.value.message


def test_wrong_secret_is_named(gateway: Gateway, client_for: Callable[..., QrServiceClientSync]) -> None:
    client = client_for(PartnerKey(gateway.key.key_id, "ttip_sk_wrong"))
    refused(lambda: client.get_qr_code(GetQrCodeRequest(qr_code_id=str(uuid.uuid4()))), Code.UNAUTHENTICATED,
            r"partner signature refused: signature does not match")


def test_stale_timestamp_is_named(client_for: Callable[..., QrServiceClientSync]) -> None:
    client = client_for(now=lambda: time.time() - 600)
    refused(lambda: client.get_qr_code(GetQrCodeRequest(qr_code_id=str(uuid.uuid4()))), Code.UNAUTHENTICATED,
            r"partner signature refused: stale timestamp: (599|600|601) s behind the gateway's clock \(at most 300 s\)")


def test_identical_calls_in_one_second_both_go_through(client_for: Callable[..., QrServiceClientSync]) -> None:
    # The same body, path and second twice, each under its own nonce. Uncompressed: gzip
    # stamps the current second into its header, so a gzipped body can change between calls.
    at = time.time()
    client = client_for(now=lambda: at, send_compression=None)
    request = GetQrCodeRequest(qr_code_id=str(uuid.uuid4()))
    assert_echoes(client.get_qr_code(request), request.qr_code_id)
    assert_echoes(client.get_qr_code(request), request.qr_code_id)


def test_replayed_request_is_named(client_for: Callable[..., QrServiceClientSync]) -> None:
    # The same nonce twice: the second is a replay.
    nonce = str(uuid.uuid4())
    client = client_for(nonce=lambda: nonce)
    assert_echoes(client.get_qr_code(GetQrCodeRequest(qr_code_id=(first := str(uuid.uuid4())))), first)
    refused(lambda: client.get_qr_code(GetQrCodeRequest(qr_code_id=str(uuid.uuid4()))), Code.UNAUTHENTICATED,
            r"partner signature refused: request replayed \(this nonce was already used\)")


def test_missing_scope_is_named(client_for: Callable[..., QrServiceClientSync]) -> None:
    client = client_for()
    refused(lambda: client.rotate_qr_code(RotateQrCodeRequest(qr_code_id=str(uuid.uuid4()))), Code.PERMISSION_DENIED,
            r"missing scope: ttip\.qr\.v1\.QrService/RotateQrCode needs the scope qr:write, which this key does not have")


@pytest.fixture
def receiver() -> Iterator[tuple[str, queue.Queue[tuple[bytes, dict[str, str]]]]]:
    """The partner's own webhook endpoint on loopback: (its URL, the deliveries it got)."""
    got: queue.Queue[tuple[bytes, dict[str, str]]] = queue.Queue()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            got.put((body, {k.lower(): v for k, v in self.headers.items()}))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hooks/ttip", got
    finally:
        server.shutdown()
        server.server_close()


def test_webhook_delivery_from_the_platform_verifies(gateway: Gateway, receiver: tuple[str, queue.Queue[tuple[bytes, dict[str, str]]]]) -> None:
    """The whole webhook path as a partner lives it: a subscription made with a signed
    call, a tip at the partner's checkout (the harness publishes tip.succeeded for the
    key), the platform's signed delivery to the partner's own server, verified there;
    the same delivery with its body changed, or under another secret, is not."""
    event_url = os.environ.get("TTIP_TEST_TIP_EVENT_URL", "")
    assert event_url, "TTIP_TEST_TIP_EVENT_URL is required with a running gateway"
    url, got = receiver
    with PartnerServiceClientSync(gateway.url, http_client=signed_http_client(gateway.key)) as partner:
        created = partner.create_webhook_subscription(CreateWebhookSubscriptionRequest(
            url=url, event_types=[WebhookEventType.TIP_SUCCEEDED], idempotency_key=f"py-sdk-{uuid.uuid4()}",
        ))
    secret = created.signing_secret
    assert secret and created.subscription is not None and created.subscription.key_id == gateway.key.key_id

    with urllib.request.urlopen(urllib.request.Request(event_url, method="POST", data=b""), timeout=10) as res:
        event_id = json.load(res)["eventId"]
    body, headers = got.get(timeout=30)
    assert event_id.encode() in body
    header = headers.get(WEBHOOK_SIGNATURE_HEADER)
    assert verify_webhook(secret, body, header) == body
    # The body is a ttip.auth.v1.WebhookEvent in protobuf JSON: the generated type parses it.
    event = WebhookEvent.from_json(body)
    assert (event.event_id, event.type, event.delivery_id) == (event_id, WebhookEventType.TIP_SUCCEEDED, headers.get("x-ttip-delivery-id"))
    assert event.data is not None and event.data.field == "tip" and event.data.value.tip_id
    with pytest.raises(WebhookVerificationError, match="^signature does not match$"):
        verify_webhook(secret, b" " + body, header)
    with pytest.raises(WebhookVerificationError, match="^signature does not match$"):
        verify_webhook(secret + "x", body, header)
