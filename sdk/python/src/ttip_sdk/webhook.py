"""Verifies webhook deliveries: "x-ttip-webhook-signature: t=<unix seconds>,v1=<hex
HMAC-SHA256 of "<t>.<raw body>">", within a tolerance against replays."""

from __future__ import annotations

import hmac
import re
import time

from .signer import hmac_sha256_hex

WEBHOOK_SIGNATURE_HEADER = "x-ttip-webhook-signature"
DEFAULT_TOLERANCE_SECONDS = 300

_TIMESTAMP = re.compile(r"^\d{1,12}$")


class WebhookVerificationError(Exception):
    """A delivery that is not genuine or not fresh; the message says which."""


def verify_webhook(
    secret: str,
    body: bytes | str,
    signature_header: str | None,
    *,
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> bytes:
    """Checks a delivery and returns its raw body, to parse once it is known genuine.

    body must be the raw bytes as received, before any JSON parsing. Raises
    WebhookVerificationError: "malformed x-ttip-webhook-signature header",
    "stale timestamp: N s old (at most 300 s)" or "signature does not match".
    """
    raw = body.encode() if isinstance(body, str) else body
    stamp = ""
    signatures: list[str] = []
    for part in (signature_header or "").split(","):
        name, _, value = part.strip().partition("=")
        if name == "t" and not stamp:
            stamp = value
        elif name == "v1":
            signatures.append(value)
    if not _TIMESTAMP.match(stamp) or not signatures:
        raise WebhookVerificationError(f"malformed {WEBHOOK_SIGNATURE_HEADER} header")
    age = int(time.time() if now is None else now) - int(stamp)
    if abs(age) > tolerance_seconds:
        raise WebhookVerificationError(f"stale timestamp: {age} s old (at most {tolerance_seconds} s)")
    expected = hmac_sha256_hex(secret, stamp.encode() + b"." + raw)
    # As bytes: compare_digest refuses str with non-ASCII characters (TypeError), and frameworks hand
    # header values over as latin-1 text, so a forged header could answer 500 instead of this refusal.
    if not any(hmac.compare_digest(s.encode("utf-8", "replace"), expected.encode()) for s in signatures):
        raise WebhookVerificationError("signature does not match")
    return raw


def sign_webhook(secret: str, body: bytes | str, *, now: float | None = None) -> str:
    """The header value for a delivery (for tests and senders)."""
    raw = body.encode() if isinstance(body, str) else body
    t = str(int(time.time() if now is None else now))
    return f"t={t},v1={hmac_sha256_hex(secret, t.encode() + b'.' + raw)}"
