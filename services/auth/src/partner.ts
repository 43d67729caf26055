import { createHmac } from "node:crypto";

/**
 * The string a partner signs for a server-to-server call:
 * METHOD \n path \n unix seconds \n hex SHA-256 of the body.
 * The signature is hex HMAC-SHA256 of it under the key's secret.
 */
export function partnerStringToSign(method: string, path: string, unixSeconds: number | bigint, bodySha256: Uint8Array): string {
  return [method.toUpperCase(), path, String(unixSeconds), Buffer.from(bodySha256).toString("hex")].join("\n");
}

export function signPartnerRequest(secret: string, method: string, path: string, unixSeconds: number | bigint, bodySha256: Uint8Array): string {
  return createHmac("sha256", secret).update(partnerStringToSign(method, path, unixSeconds, bodySha256)).digest("hex");
}
