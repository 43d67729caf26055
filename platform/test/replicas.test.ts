import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import http from "node:http";
import { after, before, describe, test } from "node:test";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { TipStatus } from "@ttip/proto/ttip/payment/v1/payment_pb.js";
import { PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { startDarajaSimulator, type DarajaSimulator } from "@ttip/payment/testing";
import { createTestDatabase, eventually, PlatformProcess, type TestDatabase, testPhone } from "@ttip/runtime/testing";
import { modules } from "../src/modules.js";
import { REPLICAS_SERVING } from "../src/replicas.js";
import { builtPlatform } from "./built-platform.js";
import { replicasEnv } from "./cluster-harness.js";

// A single-host deployment: two copies of the whole platform behind shared ports (main.ts replicas), run
// from the development image's compiled bundle (its replicas role): the primary and each replica it forks
// start on about a third of the CPU of a start from source (no loader resolving some 1,000 modules).
describe("replicas: the whole platform twice behind one port", () => {
  let db: TestDatabase;
  let sim: DarajaSimulator;
  let platform: PlatformProcess;

  before(async () => {
    const building = builtPlatform();
    building.catch(() => undefined); // awaited below, once the database and simulator are assigned (after() closes them)
    // A copy of a database the platform's schemas were migrated into once per test server: the primary's migrations find them applied.
    db = await createTestDatabase({ migrated: modules });
    sim = await startDarajaSimulator({ callbackDelayMs: 50 });
    platform = await PlatformProcess.create((await building).developmentEntry, "replicas", {
      ...await replicasEnv(sim, db.url, { REPLICAS: "2", DATABASE_POOL_MAX: "6" }),
      RATE_LIMIT_POINTS: "100000",
      // A drain delay each service's server once took in turn, past the replica's deadline (SIGTERM's test).
      DRAIN_DELAY_MS: "1500",
    });
    await platform.start(120_000);
    for (let i = 0; !platform.logs.includes(REPLICAS_SERVING); i++) {
      assert.ok(i < 1_200, `the second replica did not start:\n${platform.logs}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  });
  after(async () => {
    await platform?.stop();
    await sim?.close();
    await db?.drop();
  });

  /** The replica a new connection reaches, and how many CreateTip calls it has served (its /metrics). */
  const scrape = () =>
    new Promise<{ replica: string; createTips: number }>((resolve, reject) => {
      http.get({ host: "127.0.0.1", port: platform.port, path: "/metrics", agent: false, timeout: 10_000 }, (res) => {
        let body = "";
        res.on("data", (d) => (body += d)).on("end", () => {
          const replica = /replica="(\d+)"/.exec(body)?.[1] ?? "?";
          const lines = body.split("\n").filter((l) => l.startsWith("grpc_server_handled_total{") && l.includes('grpc_method="CreateTip"'));
          resolve({ replica, createTips: lines.reduce((n, l) => n + Number(l.split(" ").at(-1)), 0) });
        });
      })
        .on("timeout", function (this: http.ClientRequest) {
          this.destroy(new Error("/metrics did not answer within 10 s"));
        })
        .on("error", reject);
    });

  /** The replicas: the primary's child processes node:cluster forked (its argv), not a loader's helper (tsx's esbuild). */
  const replicaPids = () =>
    readFileSync(`/proc/${platform.pid}/task/${platform.pid}/children`, "utf8")
      .trim()
      .split(/\s+/)
      .filter(Boolean)
      .map(Number)
      .filter((pid) => readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").includes("replicas"));
  const alive = (pid: number) => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  };
  /** One tip on a connection of its own, followed until it succeeds. */
  const tipOnce = async () => {
    const pay = createClient(PaymentService, createConnectTransport({ baseUrl: platform.url, httpVersion: "2" }));
    const { tip } = await pay.createTip(
      {
        idempotencyKey: randomUUID(),
        recipient: { case: "workerId", value: randomUUID() },
        amount: { currency: "KES", amountMinor: 5_000n },
        payment: { case: "mpesaPhone", value: testPhone({ format: "+254" }) },
      },
      { timeoutMs: 30_000 },
    );
    let status = tip!.status;
    // Bounded: a test that hangs says nothing; a deadline names the tip that did not end.
    for await (const m of pay.watchTip({ tipId: tip!.tipId }, { timeoutMs: 60_000 })) status = m.tip!.status;
    return status;
  };

  test("tips made over many connections are served by both replicas; every charge is credited exactly once", async () => {
    const worker = randomUUID();
    const tips = 12;
    const tipIds = await Promise.all(
      Array.from({ length: tips }, async () => {
        // A connection per customer, as phones make them: the primary hands each to the next replica.
        const pay = createClient(PaymentService, createConnectTransport({ baseUrl: platform.url, httpVersion: "2" }));
        const { tip } = await pay.createTip({
          idempotencyKey: randomUUID(),
          recipient: { case: "workerId", value: worker },
          amount: { currency: "KES", amountMinor: 10_000n },
          payment: { case: "mpesaPhone", value: testPhone({ format: "+254" }) },
        });
        for await (const m of pay.watchTip({ tipId: tip!.tipId })) assert.notEqual(m.tip!.status, TipStatus.FAILED, `tip ${tip!.tipId} failed`);
        return tip!.tipId;
      }),
    );

    const served = new Map<string, number>();
    for (let i = 0; i < 8 && served.size < 2; i++) {
      const { replica, createTips } = await scrape();
      served.set(replica, createTips);
    }
    assert.equal(served.size, 2, `connections reached replicas ${[...served.keys()].join(", ")}`);
    for (const [replica, n] of served) assert.ok(n > 0, `replica ${replica} served no CreateTip`);

    // The callbacks reach the shared payment port, whichever replica pushed the STK request.
    const { rows } = await db.pool.query<{ tip_id: string; status: string }>(
      `SELECT tip_id, status FROM payment.tips WHERE tip_id = ANY($1::uuid[])`,
      [tipIds],
    );
    assert.equal(rows.length, tips);
    const charged = sim.transactions().filter((t) => t.kind === "stk" && t.resultCode === 0);
    assert.equal(charged.length, tips, "M-Pesa charged every tip once");
    for (const r of rows) assert.equal(r.status, "succeeded", `tip ${r.tip_id}`);
    // Exactly once per charge: one journal entry under its receipt or its CheckoutRequestID, never both.
    // The wallet posts a credit after the tip is decided SUCCEEDED (tens of milliseconds later under load): all posted first.
    const postedPerCharge = async () => {
      const entries = await db.pool.query<{ cause_ref: string; n: number }>(
        "SELECT cause_ref, count(*)::int AS n FROM wallet.entries WHERE cause_kind = 'mpesaReceipt' GROUP BY cause_ref",
      );
      return new Map(entries.rows.map((e) => [e.cause_ref, e.n]));
    };
    const entriesOf = (refs: Map<string, number>, t: (typeof charged)[number]) => (refs.get(t.receipt!) ?? 0) + (refs.get(`stk-${t.checkoutRequestId}`) ?? 0);
    await eventually("every charge's credit posted", async () => {
      const refs = await postedPerCharge();
      return charged.every((t) => entriesOf(refs, t) > 0);
    });
    const refs = await postedPerCharge();
    for (const t of charged) assert.equal(entriesOf(refs, t), 1, `charge ${t.receipt} has ${entriesOf(refs, t)} journal entries`);
    assert.equal([...refs.values()].reduce((a, b) => a + b, 0), tips, "nothing credited that M-Pesa did not charge");
  });

  test("a replica that dies is replaced by a new one; the ports keep serving meanwhile", async () => {
    const before = replicaPids();
    assert.equal(before.length, 2, `replicas: ${before.join(", ")}`);
    process.kill(before[0], "SIGKILL");
    // node:cluster's primary hands each new connection to a replica; one handed over before it has seen
    // the exit goes to the dead replica and hangs (here a CreateTip made at once timed out). Clients
    // retry on their deadline; this test waits for the primary to see it first.
    for (let i = 0; !platform.logs.includes("a replica exited; starting another"); i++) {
      assert.ok(i < 100, `the primary did not see its replica die:\n${platform.logs}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    // The other replica serves every connection until the replacement (node:cluster's worker 3) has started.
    assert.equal(await tipOnce(), TipStatus.SUCCEEDED);
    const seen = new Set<string>();
    for (let i = 0; !seen.has("3"); i++) {
      assert.ok(i < 1_200, `no replacement replica served within 120 s (as long as the first start may take) (saw ${[...seen].join(", ")}):\n${platform.logs}`);
      seen.add((await scrape()).replica);
      if (!seen.has("3")) await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(platform.running, "the primary kept running");
    assert.match(platform.logs, /a replica exited; starting another/);
    const after = replicaPids();
    assert.equal(after.length, 2, `replicas: ${after.join(", ")}`);
    assert.ok(!after.includes(before[0]), "the dead replica is not counted");
    assert.equal(await tipOnce(), TipStatus.SUCCEEDED);
  });

  test("SIGTERM drains every replica before the primary exits", async () => {
    const pids = replicaPids();
    assert.equal(pids.length, 2);
    await platform.stop();
    assert.ok(!platform.running);
    for (const pid of pids) assert.ok(!alive(pid), `replica ${pid} still runs after the primary exited`);
    // Each replica ran its own shutdown (servers drained, bus, cache and pool closed), not node:cluster's
    // exit on losing its primary; then the primary finished its own.
    const lines = platform.logs.split("\n").filter((l) => l.includes('"msg":"shutdown complete"'));
    const replicas = lines.filter((l) => /"role":"replica-\d+"/.test(l));
    assert.equal(replicas.length, 2, `replicas' shutdowns:\n${platform.logs}`);
    assert.match(lines.at(-1) ?? "", /"role":"replicas"/, "the primary finished last");
  });
});
