"""TTIP partner SDK for Python: a request signer for partner keys and a webhook
verifier. Typed Connect clients for the public API are generated under
ttip_sdk.gen (for example ttip_sdk.gen.ttip.qr.v1.qr_service_connect)."""

from ._version import __version__
from .signer import (
    HEADER_KEY_ID,
    HEADER_NONCE,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    AsyncPartnerSigner,
    PartnerKey,
    PartnerSigner,
    new_nonce,
    signature_headers,
    signed_async_http_client,
    signed_http_client,
    string_to_sign,
)
from .webhook import WEBHOOK_SIGNATURE_HEADER, WebhookVerificationError, sign_webhook, verify_webhook

__all__ = [
    "HEADER_KEY_ID",
    "HEADER_NONCE",
    "HEADER_SIGNATURE",
    "HEADER_TIMESTAMP",
    "WEBHOOK_SIGNATURE_HEADER",
    "AsyncPartnerSigner",
    "PartnerKey",
    "PartnerSigner",
    "WebhookVerificationError",
    "__version__",
    "new_nonce",
    "sign_webhook",
    "signature_headers",
    "signed_async_http_client",
    "signed_http_client",
    "string_to_sign",
    "verify_webhook",
]
