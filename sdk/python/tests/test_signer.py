from __future__ import annotations

import pytest
from pyqwest import Headers, SyncRequest, SyncResponse

import hashlib

from ttip_sdk import HEADER_KEY_ID, HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIMESTAMP, PartnerKey, PartnerSigner, signature_headers, string_to_sign
from ttip_sdk.signer import hmac_sha256_hex

# The same vector as the TypeScript and Go SDKs' signers produce.
KEY = PartnerKey("0f8e2b8c-9d43-4c0b-a7a3-4c1f2d3e4a5b", "ttip_sk_vector")
BODY = b'{"qrCodeId":"5b0f3a8e-2a51-4c1e-9c55-0d3c1e6c2f10"}'
AT = 1767225600
NONCE = "6f1d2c3b-4a59-4e68-8f7a-0b1c2d3e4f50"
SIGNATURE = "838e076bacdabfb40bff78fea5d40679312e7452c74d23c7a7d2ddf276d4187b"
# Without a nonce (the first scheme, still accepted).
SIGNATURE_V1 = "cb5e6e28f9e04f972791b31621bcd05303e596fb8a43794ccf369d38c8415ad3"
PATH = "/ttip.qr.v1.QrService/GetQrCode?x=1"


def test_signature_headers_match_the_shared_vector() -> None:
    headers = signature_headers(KEY, "post", PATH, BODY, AT, NONCE)
    assert headers == {HEADER_KEY_ID: KEY.key_id, HEADER_TIMESTAMP: str(AT), HEADER_NONCE: NONCE, HEADER_SIGNATURE: SIGNATURE}
    v1 = string_to_sign("post", PATH, AT, hashlib.sha256(BODY).hexdigest())
    assert hmac_sha256_hex(KEY.secret, v1.encode()) == SIGNATURE_V1


def test_each_call_gets_a_fresh_nonce() -> None:
    first = signature_headers(KEY, "POST", PATH, BODY, AT)
    second = signature_headers(KEY, "POST", PATH, BODY, AT)
    assert first[HEADER_NONCE] != second[HEADER_NONCE]
    assert first[HEADER_SIGNATURE] != second[HEADER_SIGNATURE]


class Recording:
    """A transport that keeps the request it was given."""

    def __init__(self) -> None:
        self.requests: list[SyncRequest] = []

    def execute_sync(self, request: SyncRequest) -> SyncResponse:
        self.requests.append(request)
        return SyncResponse(status=200)


@pytest.mark.parametrize("content", [BODY, iter([BODY[:10], BODY[10:]])], ids=["bytes", "chunks"])
def test_signer_signs_the_bytes_it_sends(content: object) -> None:
    inner = Recording()
    request = SyncRequest("POST", "http://gateway.test/ttip.qr.v1.QrService/GetQrCode?x=1", headers=Headers({"content-type": "application/json"}), content=content)  # type: ignore[arg-type]
    PartnerSigner(KEY, inner, now=lambda: AT + 0.9, nonce=lambda: NONCE).execute_sync(request)
    (sent,) = inner.requests
    assert sent.headers[HEADER_SIGNATURE] == SIGNATURE
    assert sent.headers["content-type"] == "application/json"
    assert sent.content == BODY
    assert HEADER_SIGNATURE not in request.headers


def test_keys_are_checked_before_any_call() -> None:
    with pytest.raises(ValueError, match="UUID"):
        PartnerKey("savanna", "ttip_sk_x")
    with pytest.raises(ValueError, match="secret"):
        PartnerKey(KEY.key_id, "")
    assert "ttip_sk_vector" not in repr(KEY)
