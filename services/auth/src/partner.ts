import { hmacSha256 } from "@ttip/runtime";

/**
 * The string a partner signs for a server-to-server call:
 * METHOD \n path \n unix seconds \n hex SHA-256 of the body, and, when the call
 * carries a nonce (x-ttip-nonce), \n nonce as a fifth line. The nonce is spent
 * once, so two identical calls in one second both go through; a call without
 * one (the first scheme, still accepted) spends its signature instead.
 * The signature is hex HMAC-SHA256 of it under the key's secret.
 */
export function partnerStringToSign(method: string, path: string, unixSeconds: number | bigint, bodySha256: Uint8Array, nonce = ""): string {
  const lines = [method.toUpperCase(), path, String(unixSeconds), Buffer.from(bodySha256).toString("hex")];
  return (nonce ? [...lines, nonce] : lines).join("\n");
}

export function signPartnerRequest(secret: string, method: string, path: string, unixSeconds: number | bigint, bodySha256: Uint8Array, nonce = ""): string {
  return hmacSha256(secret, partnerStringToSign(method, path, unixSeconds, bodySha256, nonce), "hex");
}
