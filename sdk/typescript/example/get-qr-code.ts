// Usage: TTIP_URL=http://127.0.0.1:8080 TTIP_KEY_ID=... TTIP_SECRET=ttip_sk_... node --import tsx example/get-qr-code.ts <qr code id>
import { ConnectError, createClient } from "@connectrpc/connect";
import { codeToString } from "@connectrpc/connect/protocol-connect";
import { createPartnerTransport } from "@ttip/sdk";
import { QrService } from "@ttip/sdk/gen/ttip/qr/v1/qr_service_pb.js";

// Signs the bytes each call sends, whatever the transport's options.
const transport = createPartnerTransport(
  { keyId: process.env.TTIP_KEY_ID!, secret: process.env.TTIP_SECRET! },
  { baseUrl: process.env.TTIP_URL ?? "http://127.0.0.1:8080" },
);
const qr = createClient(QrService, transport);
try {
  const res = await qr.getQrCode({ qrCodeId: process.argv[2] });
  console.log(res.qrCode);
} catch (err) {
  const e = ConnectError.from(err);
  // e.g. permission_denied: missing scope: ttip.qr.v1.QrService/GetQrCode needs the scope qr:read, ...
  console.error(`${codeToString(e.code)}: ${e.rawMessage}`);
  process.exitCode = 1;
}
