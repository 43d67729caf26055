import { createHash } from "node:crypto";
import { create, toBinary } from "@bufbuild/protobuf";
import type { Interceptor } from "@connectrpc/connect";
import { signPartnerRequest } from "./partner.js";

export interface PartnerKey {
  keyId: string;
  secret: string;
}

/**
 * Signs Connect binary calls as a partner (tests and benches; partners use the
 * SDKs' signers). The same bytes signed twice in one second are one signed
 * request, which the gateway refuses the second time as a replay; a repeated
 * read within a second is signed for the next second.
 */
const lastSigned = new Map<string, number>();
export function partnerCallSigner(key: PartnerKey): Interceptor {
  return (next) => async (req) => {
    if (req.stream) throw new Error("partner keys sign unary calls only");
    const body = toBinary(req.method.input, create(req.method.input, req.message));
    const id = `${key.keyId} ${req.url} ${Buffer.from(body).toString("base64")}`;
    const at = Math.max(Math.floor(Date.now() / 1000), (lastSigned.get(id) ?? 0) + 1);
    lastSigned.set(id, at);
    req.header.set("x-ttip-key-id", key.keyId);
    req.header.set("x-ttip-timestamp", String(at));
    req.header.set("x-ttip-signature", signPartnerRequest(key.secret, "POST", new URL(req.url).pathname, at, createHash("sha256").update(body).digest()));
    return next(req);
  };
}
