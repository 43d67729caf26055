// Every public RPC, its requests generated from its descriptor, sent through
// the gateway as an anonymous caller, a worker and an admin: random and
// boundary values, unknown enum numbers, broken binary, wrong content types,
// deep nesting. Never INTERNAL or a 5xx, no process exit, no lost database
// connection, and a refused request changes no row in any schema.
//
//   FUZZ_SEED=<n>        replay a run (the seed is printed on every run)
//   FUZZ_ROUNDS=<n>      requests per method and caller (default 2; e.g. 50 for a long run)
import assert from "node:assert/strict";
import { randomInt } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { toJsonString, type DescMethod, type DescService, type Message } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { Health, HealthCheckResponse_ServingStatus as Status } from "@ttip/proto/grpc/health/v1/health_pb.js";
import { WalletService } from "@ttip/proto/ttip/wallet/v1/wallet_service_pb.js";
import { publicServices, modules } from "../src/modules.js";
import { startBoundaryPlatform, type BoundaryPlatform } from "./boundary-harness.js";
import { brokenBinary, message, prng } from "./fuzz-values.js";

const SEED = Number(process.env.FUZZ_SEED ?? randomInt(1, 2 ** 31));
const ROUNDS = Number(process.env.FUZZ_ROUNDS ?? 2);
/** Codes that are a server's fault, never a caller's. */
const SERVER_FAULT = new Set([Code.Internal, Code.Unknown, Code.DataLoss]);
/** Tables that record refused attempts on purpose (security audit, fraud signals, rate limits). */
const RECORDS_REFUSALS = new Set<string>([]);

type Caller = "anonymous" | "worker" | "admin";
interface Sent {
  caller: Caller;
  method: DescMethod;
  request: Message;
  binary: boolean;
  code: Code | "ok";
  message: string;
}

function jsonEncodable(method: DescMethod, request: Message): boolean {
  try {
    toJsonString(method.input, request as never);
    return true;
  } catch {
    return false;
  }
}

const describeRequest = (s: Pick<Sent, "caller" | "method" | "request" | "binary">) => {
  let body: string;
  try {
    body = toJsonString(s.method.input, s.request as never);
  } catch {
    body = "<not JSON-encodable>";
  }
  return `${s.caller} ${s.method.parent.typeName}/${s.method.name} (${s.binary ? "binary" : "JSON"}) ${body.slice(0, 400)}`;
};

describe(`fuzz: every public RPC through the gateway (FUZZ_SEED=${SEED} FUZZ_ROUNDS=${ROUNDS})`, () => {
  let p: BoundaryPlatform;
  const tokens: Partial<Record<Caller, string>> = {};
  const lostConnections: string[] = [];
  const services: DescService[] = modules.flatMap(publicServices);
  const methods = services.flatMap((s) => s.methods);
  const sent: Sent[] = [];

  before(async () => {
    console.log(`# fuzz seed ${SEED}, ${ROUNDS} rounds over ${methods.length} methods of ${services.length} services (replay: FUZZ_SEED=${SEED})`);
    p = await startBoundaryPlatform();
    // A connection that dies under a client is an 'error' on that client.
    p.db.pool.on("connect", (client) => client.on("error", (err) => lostConnections.push(err.message)));
    p.db.pool.on("error", (err) => lostConnections.push(err.message));
    tokens.worker = (await p.signUp("worker")).accessToken;
    tokens.admin = (await p.signUp("admin")).accessToken;
  });
  after(() => p?.close());

  async function call(caller: Caller, method: DescMethod, request: Message, wantBinary: boolean): Promise<Sent> {
    // Some values have no JSON form (a Timestamp out of range): those go as binary, where they exist.
    const binary = wantBinary || !jsonEncodable(method, request);
    const transport = createConnectTransport({
      baseUrl: p.platform.gatewayUrl,
      httpVersion: "1.1",
      useBinaryFormat: binary,
      interceptors: [(next) => (req) => {
        if (tokens[caller as "worker"]) req.header.set("authorization", `Bearer ${tokens[caller as "worker"]}`);
        return next(req);
      }],
    });
    const client = createClient(method.parent, transport) as unknown as Record<string, (r: unknown, o: unknown) => unknown>;
    const controller = new AbortController();
    try {
      if (method.methodKind === "server_streaming") {
        // A live stream is not expected to end: the first message, or a second of waiting, is enough.
        const timer = setTimeout(() => controller.abort(), 1_000);
        try {
          for await (const _ of client[method.localName](request, { signal: controller.signal }) as AsyncIterable<unknown>) break;
        } finally {
          clearTimeout(timer);
        }
      } else {
        await client[method.localName](request, { timeoutMs: 15_000 });
      }
      return { caller, method, request, binary, code: "ok", message: "" };
    } catch (err) {
      const e = ConnectError.from(err);
      if (method.methodKind === "server_streaming" && controller.signal.aborted && e.code === Code.Canceled) {
        return { caller, method, request, binary, code: "ok", message: "stream open" };
      }
      return { caller, method, request, binary, code: e.code, message: e.rawMessage };
    }
  }

  /** Whether it signed the caller up again (rows of its own in auth, notification and analytics). */
  async function renewIfRevoked(s: Sent): Promise<boolean> {
    // A fuzzed RevokeAllSessions or Logout ends the caller's own session: sign in again.
    if (s.caller !== "anonymous" && s.code === Code.Unauthenticated && /revoked|sign in/.test(s.message)) {
      tokens[s.caller] = (await p.signUp(s.caller)).accessToken;
      return true;
    }
    return false;
  }

  test("random and boundary requests of every public RPC, as anonymous, worker and admin: never a server fault", async () => {
    const rng = prng(SEED);
    const faults: string[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      for (const method of methods) {
        for (const caller of ["anonymous", "worker", "admin"] as const) {
          const request = message(method.input, rng);
          const s = await call(caller, method, request, rng.chance(0.5));
          sent.push(s);
          if (s.code !== "ok" && SERVER_FAULT.has(s.code)) faults.push(`${Code[s.code]}: ${s.message} <- ${describeRequest(s)}`);
          await renewIfRevoked(s);
        }
      }
    }
    const tally = new Map<string, number>();
    for (const s of sent) tally.set(s.code === "ok" ? "OK" : Code[s.code], (tally.get(s.code === "ok" ? "OK" : Code[s.code]) ?? 0) + 1);
    console.log(`# fuzz answers: ${[...tally].map(([c, n]) => `${c} ${n}`).join(", ")}`);
    assert.deepEqual(faults, [], `server faults (replay with FUZZ_SEED=${SEED}):\n${faults.join("\n")}`);
  });

  test("broken bodies, wrong content types and deep nesting for every public RPC: a 4xx naming the problem, never a 5xx", async () => {
    const rng = prng(SEED + 1);
    const faults: string[] = [];
    for (const method of methods) {
      const url = `${p.platform.gatewayUrl}/${method.parent.typeName}/${method.name}`;
      const bodies: Array<[string, Uint8Array | string]> = [
        ["application/proto", brokenBinary(rng)],
        ["application/proto", brokenBinary(rng)],
        ["application/json", "{"],
        ["application/json", `{"${"a".repeat(10)}": ${"[".repeat(3000)}${"]".repeat(3000)}}`],
        ["application/json", '{"amount": {"amountMinor": "99999999999999999999999"}}'],
        ["text/plain", "hello"],
        ["application/grpc-web+proto", Uint8Array.from([0, 0, 0, 0, 50, 1, 2])],
        ["application/connect+proto", Uint8Array.from([1, 0, 0, 0, 3, 1, 2, 3])],
      ];
      for (const [type, body] of bodies) {
        const res = await fetch(url, { method: "POST", headers: { "content-type": type, "connect-protocol-version": "1" }, body });
        const text = await res.text();
        const faultCode = /"code":"(internal|unknown|data_loss)"|grpc-status:\s*(13|2|15)\b/.exec(text);
        if (res.status >= 500 || faultCode) faults.push(`${res.status} ${text.slice(0, 200)} <- ${method.parent.typeName}/${method.name} ${type}`);
      }
    }
    assert.deepEqual(faults, [], `server faults:\n${faults.join("\n")}`);
  });

  test("a refused request changes no row in any schema (the refused ones replayed in a quiet window)", async () => {
    const refused = sent.filter((s) => s.code !== "ok" && s.code !== Code.Unimplemented && s.method.methodKind === "unary");
    assert.ok(refused.length > 0);
    const settled = () => p.settledRowCounts();
    const changed = (a: Map<string, number>, b: Map<string, number>) =>
      [...b].filter(([t, n]) => a.get(t) !== n && !RECORDS_REFUSALS.has(t)).map(([t, n]) => `${t} ${a.get(t)} -> ${n}`);
    // In chunks: a chunk in which a replayed request is now accepted (state moved on), or whose caller had to sign up
    // again (its session revoked: the sign-up's rows are the test's), is not compared.
    const problems: string[] = [];
    let compared = 0;
    let skipped = 0;
    // The counts after a chunk compared quietly are the next chunk's before: nothing was sent between them,
    // and each settling waits at least one quiet interval.
    let quiet: Map<string, number> | undefined;
    for (let i = 0; i < refused.length; i += 50) {
      const chunk = refused.slice(i, i + 50);
      const before = quiet ?? (await settled());
      quiet = undefined;
      const accepted: Sent[] = [];
      let renewed = false;
      for (const s of chunk) {
        const again = await call(s.caller, s.method, s.request, s.binary);
        if (again.code === "ok") accepted.push(s);
        if (await renewIfRevoked(again)) renewed = true;
      }
      if (accepted.length || renewed) {
        skipped += chunk.length;
        continue;
      }
      compared += chunk.length;
      const after = await settled();
      const diff = changed(before, after);
      if (!diff.length) {
        quiet = after;
        continue;
      }
      // Find the requests responsible, one at a time.
      for (const s of chunk) {
        const b = await settled();
        await call(s.caller, s.method, s.request, s.binary);
        const d = changed(b, await settled());
        if (d.length) problems.push(`${describeRequest(s)}: ${d.join(", ")}`);
      }
      if (problems.length === 0) problems.push(`rows changed while a chunk of refused requests ran: ${diff.join(", ")}`);
    }
    console.log(`# fuzz: ${refused.length} refused requests replayed; ${compared} compared row by row, ${skipped} in chunks where a replay was accepted`);
    assert.deepEqual(problems, [], `refused requests changed rows (FUZZ_SEED=${SEED})`);
    assert.ok(compared > 0, "no chunk of refused requests could be compared");
  });

  test("afterwards: every service SERVING, no database connection lost, a worker's call still works", async () => {
    const health = createClient(Health, createConnectTransport({ baseUrl: p.platform.gatewayUrl, httpVersion: "1.1" }));
    for (const service of services) assert.equal((await health.check({ service: service.typeName })).status, Status.SERVING, service.typeName);
    assert.deepEqual(lostConnections, [], "database connections lost during the fuzz");
    const { accessToken } = await p.signUp("worker");
    const { balances } = await p.api(WalletService, accessToken).getBalance({ currency: "KES" });
    assert.ok(Array.isArray(balances));
    const { rows } = await p.db.pool.query("SELECT 1 AS ok");
    assert.equal(rows[0].ok, 1);
  });
});

