"""Fetches one QR code with a signed call.

    TTIP_URL=http://127.0.0.1:8080 TTIP_KEY_ID=... TTIP_SECRET=ttip_sk_... python example/get_qr_code.py <qr code id>
"""

from __future__ import annotations

import os
import sys

from connectrpc.errors import ConnectError

from ttip_sdk import PartnerKey, signed_http_client
from ttip_sdk.gen.ttip.qr.v1.qr_service_connect import QrServiceClientSync
from ttip_sdk.gen.ttip.qr.v1.qr_service_pb import GetQrCodeRequest


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: get_qr_code.py <qr code id>", file=sys.stderr)
        return 2
    key = PartnerKey(os.environ["TTIP_KEY_ID"], os.environ["TTIP_SECRET"])
    url = os.environ.get("TTIP_URL", "http://127.0.0.1:8080")
    with QrServiceClientSync(url, http_client=signed_http_client(key)) as qr:
        try:
            res = qr.get_qr_code(GetQrCodeRequest(qr_code_id=sys.argv[1]))
        except ConnectError as e:
            # e.g. permission_denied: missing scope: ttip.qr.v1.QrService/GetQrCode needs the scope qr:read, ...
            print(f"{e.code.name.lower()}: {e.message}", file=sys.stderr)
            return 1
    print(res.qr_code.short_code if res.qr_code else "", res.qr_code.url if res.qr_code else "")
    return 0


if __name__ == "__main__":
    sys.exit(main())
