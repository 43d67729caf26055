import { createHash, randomUUID } from "node:crypto";
import { create, toBinary } from "@bufbuild/protobuf";
import type { Interceptor } from "@connectrpc/connect";
import { signPartnerRequest } from "./partner.js";

export interface PartnerKey {
  keyId: string;
  secret: string;
}

/**
 * Signs Connect binary calls as a partner, with a fresh nonce each (tests and
 * the sandbox; partners use the SDKs' signers, which do the same).
 */
export function partnerCallSigner(key: PartnerKey): Interceptor {
  return (next) => async (req) => {
    if (req.stream) throw new Error("partner keys sign unary calls only");
    const body = toBinary(req.method.input, create(req.method.input, req.message));
    const at = Math.floor(Date.now() / 1000);
    const nonce = randomUUID();
    req.header.set("x-ttip-key-id", key.keyId);
    req.header.set("x-ttip-timestamp", String(at));
    req.header.set("x-ttip-nonce", nonce);
    req.header.set("x-ttip-signature", signPartnerRequest(key.secret, "POST", new URL(req.url).pathname, at, createHash("sha256").update(body).digest(), nonce));
    return next(req);
  };
}
