// The API reference and OpenAPI document in proto/docs: up to date with the
// contracts, complete for what the gateway serves, and true to the wire (a
// Connect JSON call through the real gateway answers what the document says).
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { parse } from "yaml";
import { readFileSync } from "node:fs";
import { PartnerService } from "@ttip/proto/ttip/auth/v1/partner_service_pb.js";
import { AuthService } from "@ttip/proto/ttip/auth/v1/auth_service_pb.js";
import { createAuth } from "@ttip/auth";
import { Metrics, type RedisCache, type RunningServer } from "@ttip/runtime";
import { captureLogger, startTestService, type TestService } from "@ttip/runtime/testing";
import { generated, loadContracts, OPENAPI_FILE, publicServices, REFERENCE_FILE, stale } from "../../proto/tools/api-docs.js";
import { startGateway } from "../src/index.js";

type Schema = Record<string, any>;

/** A small JSON Schema check for what the document uses: $ref, type, properties, items, enum, required, additionalProperties. */
function check(value: unknown, schema: Schema, doc: Schema, at = "$"): string[] {
  if (schema.$ref) return check(value, doc.components.schemas[schema.$ref.split("/").pop()], doc, at);
  const errors: string[] = [];
  const types = [schema.type].flat().filter(Boolean);
  const typeOf = (v: unknown) => (Array.isArray(v) ? "array" : v === null ? "null" : Number.isInteger(v) ? "integer" : typeof v);
  if (types.length && !types.some((t) => t === typeOf(value) || (t === "number" && typeof value === "number"))) return [`${at}: ${typeOf(value)} is not ${types.join("|")}`];
  if (schema.enum && !schema.enum.includes(value)) errors.push(`${at}: ${String(value)} is not one of the enum`);
  if (schema.pattern && typeof value === "string" && !new RegExp(schema.pattern).test(value)) errors.push(`${at}: does not match ${schema.pattern}`);
  if (typeOf(value) === "object") {
    const obj = value as Record<string, unknown>;
    for (const r of schema.required ?? []) if (!(r in obj)) errors.push(`${at}.${r}: required`);
    for (const [k, v] of Object.entries(obj)) {
      const p = schema.properties?.[k] ?? (typeof schema.additionalProperties === "object" ? schema.additionalProperties : undefined);
      if (p) errors.push(...check(v, p, doc, `${at}.${k}`));
      else if (schema.additionalProperties === false) errors.push(`${at}.${k}: not in the schema`);
    }
  }
  if (Array.isArray(value) && schema.items) value.forEach((v, i) => errors.push(...check(v, schema.items, doc, `${at}[${i}]`)));
  return errors;
}

describe("API reference and OpenAPI document", () => {
  const registry = loadContracts();
  const doc: Schema = parse(readFileSync(OPENAPI_FILE, "utf8"));
  let t: TestService;
  let gateway: RunningServer;

  before(async () => {
    t = await startTestService(createAuth());
    gateway = await startGateway({
      logger: captureLogger("silent").logger,
      metrics: new Metrics(),
      cache: t.ctx.cache as RedisCache,
      backends: [AuthService, PartnerService].map((service) => ({ service, url: t.service.server.url })),
      rateLimit: { points: 100_000, durationSeconds: 60 },
      corsOrigins: [],
    });
  });

  after(async () => {
    await gateway.close();
    await t.close();
  });

  test("the committed files are what the contracts generate (buf generate)", () => {
    assert.deepEqual(stale(generated(registry)), [], "proto/docs is stale: run `npx buf generate`");
  });

  test("every unary RPC the gateway serves has its path, no internal one has; every $ref resolves", () => {
    const served = publicServices(registry).flatMap((s) => s.methods.filter((m) => m.methodKind === "unary").map((m) => `/${s.typeName}/${m.name}`));
    assert.ok(served.length > 100, `${served.length} RPCs`);
    assert.deepEqual(Object.keys(doc.paths).sort(), served.sort());
    assert.equal(Object.keys(doc.paths).filter((p) => p.includes("InternalService")).length, 0);
    const refs = JSON.stringify(doc).match(/#\/components\/(schemas|parameters)\/[^"]+/g) ?? [];
    const missing = [...new Set(refs)].filter((r) => {
      const [, kind, name] = r.split("/").slice(1);
      return !doc.components[kind]?.[name];
    });
    assert.deepEqual(missing, []);
    // Partner RPCs carry their scope and the signature headers; the reference names them too.
    const create = doc.paths["/ttip.auth.v1.PartnerService/CreateWebhookSubscription"].post;
    assert.equal(create["x-partner-scope"], "webhooks:write");
    assert.deepEqual(create.security, [{ partnerKeyId: [], partnerTimestamp: [], partnerSignature: [] }]);
    assert.ok(doc.webhooks.partnerEvent.post.requestBody.content["application/json"].schema.$ref.endsWith("ttip.auth.v1.WebhookEvent"));
    const md = readFileSync(REFERENCE_FILE, "utf8");
    assert.match(md, /\| CreateWebhookSubscription \| .* \| partner keys only, with the scope `webhooks:write` \|/);
    assert.match(md, /Published on `ttip.payment.tip_succeeded`/);
  });

  test("a Connect JSON call at a documented path answers the documented schema, and an error the documented error", async () => {
    const post = (path: string, body: unknown) =>
      fetch(`${gateway.url}${path}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
    const jwksPath = "/ttip.auth.v1.AuthService/GetJwks";
    assert.ok(doc.paths[jwksPath]);
    const ok = await post(jwksPath, {});
    assert.equal(ok.status, 200);
    const body = (await ok.json()) as { jwksJson: string };
    assert.ok(JSON.parse(body.jwksJson).keys.length > 0);
    assert.deepEqual(check(body, doc.paths[jwksPath].post.responses["200"].content["application/json"].schema, doc), []);

    const startPath = "/ttip.auth.v1.AuthService/StartPhoneVerification";
    const bad = await post(startPath, { phone: "not a phone" });
    assert.equal(bad.status, 400);
    const error = (await bad.json()) as { code: string };
    assert.equal(error.code, "invalid_argument");
    assert.deepEqual(check(error, doc.paths[startPath].post.responses.default.content["application/json"].schema, doc), []);
    // The checker does catch a body the document does not allow.
    assert.notDeepEqual(check({ jwksJson: 7 }, doc.paths[jwksPath].post.responses["200"].content["application/json"].schema, doc), []);
  });
});
