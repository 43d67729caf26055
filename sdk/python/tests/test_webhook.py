from __future__ import annotations

import pytest

from ttip_sdk import WebhookVerificationError, sign_webhook, verify_webhook

BODY = b'{"type":"tip.succeeded"}'
AT = 1767225600
# The same vector as the TypeScript and Go SDKs' webhook signers produce.
HEADER = "t=1767225600,v1=3b5c81eacd6cb40b8c996051e1c4ba6767ea019a871f1752c237db8c146cb3ab"


def test_sign_webhook_matches_the_shared_vector() -> None:
    assert sign_webhook("whsec_vector", BODY, now=AT) == HEADER


def test_a_genuine_delivery_returns_its_body() -> None:
    assert verify_webhook("whsec_vector", BODY, HEADER, now=AT + 10) == BODY
    assert verify_webhook("whsec_vector", BODY.decode(), HEADER, now=AT + 10) == BODY
    # During a secret rotation either v1 may match.
    assert verify_webhook("whsec_vector", BODY, HEADER + ",v1=" + "0" * 64, now=AT) == BODY


@pytest.mark.parametrize(
    ("secret", "body", "header", "message"),
    [
        ("whsec_vector", b'{"type":"tip.refunded"}', HEADER, "signature does not match"),
        ("whsec_other", BODY, HEADER, "signature does not match"),
        ("whsec_vector", BODY, "v1=abc", "malformed x-ttip-webhook-signature header"),
        ("whsec_vector", BODY, "t=1767225600", "malformed x-ttip-webhook-signature header"),
        ("whsec_vector", BODY, None, "malformed x-ttip-webhook-signature header"),
        ("whsec_vector", BODY, sign_webhook("whsec_vector", BODY, now=AT - 600), r"stale timestamp: 600 s old \(at most 300 s\)"),
        ("whsec_vector", BODY, f"t={AT},v1=" + "\xe9" * 64, "signature does not match"),
        ("whsec_vector", BODY, f"t={AT},v1=" + "\ud800" * 64, "signature does not match"),
    ],
    ids=["tampered body", "another secret", "no timestamp", "no signature", "no header", "stale timestamp", "latin-1 signature", "lone surrogate signature"],
)
def test_a_delivery_is_refused_saying_why(secret: str, body: bytes, header: str | None, message: str) -> None:
    with pytest.raises(WebhookVerificationError, match=f"^{message}$"):
        verify_webhook(secret, body, header, now=AT)
