// The identity checks (auth, partner signature) let a call that carries neither a token nor a
// partner's headers through with no async step of their own: what they hand on and what the
// caller gets is as before, the gateway's own headers dropped, a failure of the rest of the
// chain a rejection (never a throw), and a call with a partner header still checked.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { Code, ConnectError, type UnaryRequest, type UnaryResponse } from "@connectrpc/connect";
import { LightHeaders, SESSION_HEADER } from "@ttip/runtime";
import { authInterceptor, nextSettled, principalKey } from "../src/auth.js";
import { PARTNER_HEADERS, partnerInterceptor } from "../src/partner.js";

type Next = (req: UnaryRequest) => Promise<UnaryResponse>;

const values = () => {
  const m = new Map<symbol, unknown>();
  return {
    get: (k: { id: symbol; defaultValue: unknown }) => (m.has(k.id) ? m.get(k.id) : k.defaultValue),
    set(k: { id: symbol }, v: unknown) {
      m.set(k.id, v);
      return this;
    },
    delete(k: { id: symbol }) {
      m.delete(k.id);
      return this;
    },
  };
};
const request = (headers: Record<string, string>) => ({ stream: false, header: LightHeaders.of(headers), contextValues: values(), requestMethod: "POST", url: "http://gateway/x" }) as unknown as UnaryRequest;
const answer = { stream: false, message: {} } as unknown as UnaryResponse;

const checks: Record<string, (next: Next) => Next> = {
  auth: authInterceptor(undefined) as unknown as (next: Next) => Next,
  partner: partnerInterceptor(undefined) as unknown as (next: Next) => Next,
};

describe("gateway identity checks, a call with no token and no partner headers", () => {
  for (const [name, check] of Object.entries(checks)) {
    test(`${name}: hands the call on and answers what the rest answers; a synchronous throw of the rest is a rejection`, async () => {
      const seen: UnaryRequest[] = [];
      const req = request({ [SESSION_HEADER]: "forged", "x-request-id": "r-1" });
      assert.equal(await check((r) => (seen.push(r), Promise.resolve(answer)))(req), answer);
      assert.equal(seen[0], req);
      if (name === "auth") assert.equal(req.header.get(SESSION_HEADER), null, "the gateway's own headers are dropped, whoever sent them");
      assert.equal(req.contextValues.get(principalKey), undefined);
      const boom = new ConnectError("the rest failed", Code.Internal);
      const failed = check(() => {
        throw boom;
      })(request({}));
      assert.ok(failed instanceof Promise, "no throw: a rejected promise");
      await assert.rejects(failed, (err) => err === boom);
    });
  }

  test("a call with any partner header is still checked (refused here: no partner options)", async () => {
    const next: Next = () => Promise.resolve(answer);
    await assert.rejects(checks.partner(next)(request({ [PARTNER_HEADERS.nonce]: "n" })), (err: ConnectError) => err.code === Code.Unauthenticated && /not accepted/.test(err.rawMessage));
    await assert.rejects(checks.auth(next)(request({ authorization: "Basic x" })), (err: ConnectError) => err.code === Code.Unauthenticated);
  });

  test("nextSettled: what next answers, or its synchronous throw as a rejection", async () => {
    const req = request({});
    assert.equal(await nextSettled(() => Promise.resolve(answer), req), answer);
    await assert.rejects(nextSettled(() => Promise.reject(new Error("async")), req), /async/);
    await assert.rejects(nextSettled(() => { throw new Error("sync"); }, req), /sync/);
  });
});
