// A generated day through the real payment and wallet services (M-Pesa by the
// Daraja simulator): mixed successes, failures with Daraja's codes, automatic
// payouts some of which fail. Analytics' figures, built only from the event
// stream, must equal payment's own tables and the wallet's ledger.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { AnalyticsAdminService, AnalyticsService } from "@ttip/proto/ttip/analytics/v1/analytics_service_pb.js";
import { Granularity } from "@ttip/proto/ttip/analytics/v1/analytics_pb.js";
import { PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { createPaymentModule, type PaymentConfig } from "@ttip/payment";
import { simulatedPaymentConfig, startDarajaSimulator, type DarajaSimulator } from "@ttip/payment/testing";
import { createQrModule } from "@ttip/qr";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { callerHeaders, signingInterceptor } from "@ttip/runtime";
import { KES, startTestService, testPhone, type TestService, eventually } from "@ttip/runtime/testing";
import { wallet } from "@ttip/wallet";
import { createAnalyticsModule } from "../src/index.js";
import { rng } from "./events.js";

/** A fresh Safaricom-style number; its last four digits script the simulator (5678 pays, 1032 cancels, 0001 no funds, 2001 wrong PIN). */
const phone = (suffix: string) => testPhone({ format: "07", suffix });

describe("analytics equals payment and the ledger after a generated day (payment, wallet, qr, analytics; real PostgreSQL and JetStream)", () => {
  let t: TestService;
  let sim: DarajaSimulator;
  const admin = { subject: randomUUID(), roles: ["admin" as const] };
  const workers = Array.from({ length: 6 }, () => randomUUID());
  const TIPS = 48;
  /** payment's own port (the harness's clients talk to analytics). */
  const payment = (worker?: string) =>
    createClient(PaymentService, createGrpcTransport({
      baseUrl: t.urls.get("payment")!,
      interceptors: [(next) => (req) => {
        if (worker) for (const [k, v] of Object.entries(callerHeaders(worker, "worker"))) req.header.set(k, v);
        return next(req);
      }, signingInterceptor()],
    }));

  before(async () => {
    sim = await startDarajaSimulator({ callbackDelayMs: 20 });
    const config: PaymentConfig = simulatedPaymentConfig(sim, {
      fraud: { phonePerWindow: 5, workerPerWindow: 10_000, windowMs: 600_000, outlierMinor: 20_000_00n, pinFailures: 3 },
      // The workers are unknown to auth (not in this test): each first payout number would wait a day.
      payoutNumberCoolingOffMs: 0,
    });
    t = await startTestService(createAnalyticsModule({ weekly: false }), { with: [wallet, createQrModule({ env: { QR_ALLOW_DEV_SIGNING_KEY: "true" } }), createPaymentModule({ config: () => config })] });
    config.callbackBaseUrl = t.urls.get("payment")!;

    // Every other worker withdraws each tip at once; one of them to a number whose B2C fails.
    for (const [i, w] of workers.entries()) {
      if (i % 2) continue;
      await payment(w).updatePayoutSettings({
        autoPayout: true, autoPayoutMinimum: KES(10), payoutPhone: phone(i === 2 ? "2001" : "5678"),
      });
    }
    const rand = rng(7);
    const outcomes = ["5678", "5678", "5678", "5678", "5678", "1032", "0001", "2001"];
    const pay = payment();
    const created: string[] = [];
    for (let i = 0; i < TIPS; i++) {
      const { tip } = await pay.createTip({
        idempotencyKey: randomUUID(),
        recipient: { case: "workerId", value: workers[Math.floor(rand() * workers.length)] },
        amount: KES(50 + 10 * Math.floor(rand() * 30)),
        payment: { case: "mpesaPhone", value: phone(outcomes[Math.floor(rand() * outcomes.length)]) },
        customerCoversFee: rand() < 0.3,
        rating: Math.floor(rand() * 6),
      });
      created.push(tip!.tipId);
    }
    await eventually("every tip ended", async () => {
      const { rows } = await t.db.pool.query<{ n: number }>("SELECT count(*)::int AS n FROM payment.tips WHERE status = 'pending' OR (credit_key IS NOT NULL AND credit_entry_id IS NULL)");
      return rows[0].n === 0;
    });
    await eventually("every payout ended", async () => {
      const { rows } = await t.db.pool.query<{ n: number; open: number }>(
        "SELECT count(*)::int AS n, count(*) FILTER (WHERE status NOT IN ('succeeded', 'failed'))::int AS open FROM payment.payouts",
      );
      return rows[0].n > 0 && rows[0].open === 0;
    });
    assert.equal(created.length, TIPS);
  });

  after(async () => {
    await t?.close();
    await sim?.close();
  });

  const today = () => {
    const from = new Date(Date.now() - 3_600_000 * 2);
    return { from: timestampFromDate(from), to: timestampFromDate(new Date(Date.now() + 3_600_000)) };
  };

  test("tips, volume, fees, failures by result code and payouts equal payment's tables and the ledger", async () => {
    const own = (
      await t.db.pool.query<{ tips: bigint; volume: bigint; fees: bigint; net: bigint; ended: bigint; created: bigint }>(
        `SELECT count(*) FILTER (WHERE status = 'succeeded')::int8 AS tips,
                COALESCE(sum(amount_minor) FILTER (WHERE status = 'succeeded'), 0)::int8 AS volume,
                COALESCE(sum(fee_minor) FILTER (WHERE status = 'succeeded'), 0)::int8 AS fees,
                COALESCE(sum(worker_receives_minor) FILTER (WHERE status = 'succeeded'), 0)::int8 AS net,
                count(*) FILTER (WHERE status IN ('succeeded', 'failed', 'expired'))::int8 AS ended,
                count(*)::int8 AS created
           FROM payment.tips`,
      )
    ).rows[0];
    const failures = (await t.db.pool.query<{ result_code: string; n: bigint }>(
      "SELECT result_code, count(*)::int8 AS n FROM payment.tips WHERE status IN ('failed', 'expired') GROUP BY result_code",
    )).rows;
    const payouts = (await t.db.pool.query<{ ok: bigint; failed: bigint; paid: bigint }>(
      `SELECT count(*) FILTER (WHERE status = 'succeeded')::int8 AS ok, count(*) FILTER (WHERE status = 'failed')::int8 AS failed,
              COALESCE(sum(amount_minor) FILTER (WHERE status = 'succeeded'), 0)::int8 AS paid FROM payment.payouts`,
    )).rows[0];
    // The ledger: what tips put in workers' wallets and the platform's fee account.
    const ledger = (await t.db.pool.query<{ to_workers: bigint; fees: bigint; entries: bigint }>(
      `SELECT COALESCE(sum(p.amount_minor) FILTER (WHERE a.kind = 1 AND p.memo = 'tip'), 0)::int8 AS to_workers,
              COALESCE(sum(p.amount_minor) FILTER (WHERE a.kind = 3 AND p.memo = 'platform fee'), 0)::int8 AS fees,
              count(DISTINCT p.entry_id) FILTER (WHERE a.kind = 1 AND p.memo = 'tip')::int8 AS entries
         FROM wallet.postings p JOIN wallet.accounts a USING (account_id)`,
    )).rows[0];
    assert.ok(own.tips > 10n && own.ended > own.tips, `a mixed day: ${own.tips} of ${own.ended} succeeded`);
    assert.ok(payouts.ok > 0n && payouts.failed > 0n, "payouts both paid and failed");

    const admins = t.client(AnalyticsAdminService, admin);
    const s = await eventually("analytics caught up", async () => {
      const { summary } = await admins.getPlatformSummary({ range: today() });
      return summary && summary.tips === own.tips && summary.attempts === own.ended && summary.payoutsSucceeded + summary.payoutsFailed === payouts.ok + payouts.failed && summary;
    }, 30_000);
    assert.equal(s.volume?.amountMinor, own.volume);
    assert.equal(s.fees?.amountMinor, own.fees);
    assert.equal(s.fees?.amountMinor, ledger.fees, "fees equal the platform fee account's tip postings");
    assert.equal(s.tips, ledger.entries, "one ledger entry per successful tip");
    assert.deepEqual(
      Object.fromEntries(s.failures.map((f) => [f.resultCode, f.count])),
      Object.fromEntries(failures.map((f) => [f.result_code, f.n])),
    );
    assert.equal(s.payoutsSucceeded, payouts.ok);
    assert.equal(s.payoutsFailed, payouts.failed);
    assert.equal(s.payouts?.amountMinor, payouts.paid);
    assert.ok(s.payoutLatencyP95Ms >= s.payoutLatencyP50Ms && s.payoutLatencyP50Ms > 0n, "payout latency measured from hold to result");

    // Per worker: net earnings equal what the ledger credited to that worker's wallet.
    let net = 0n;
    for (const w of workers) {
      const { earnings } = await t.client(AnalyticsService, { subject: w, roles: ["worker"] }).getWorkerEarnings({ range: today() });
      const credited = (await t.db.pool.query<{ n: bigint }>(
        `SELECT COALESCE(sum(p.amount_minor), 0)::int8 AS n FROM wallet.postings p JOIN wallet.accounts a USING (account_id)
          WHERE a.kind = 1 AND a.owner_id = $1 AND p.memo = 'tip'`,
        [w],
      )).rows[0].n;
      assert.equal(earnings?.today?.net?.amountMinor, credited, `worker ${w}'s net today equals the ledger`);
      net += credited;
    }
    assert.equal(net, own.net);
    assert.equal(net, ledger.to_workers);

    // payment's own counters on /metrics say the same.
    const text = await t.ctx.metrics.registry.metrics();
    const counter = (labels: string) => Number(new RegExp(`^ttip_payment_tips_total\\{${labels}\\} (\\d+)$`, "m").exec(text)?.[1] ?? 0);
    assert.equal(counter('status="succeeded",method="mpesa"'), Number(own.tips));
    assert.equal(counter('status="created",method="mpesa"'), Number(own.created));
    assert.equal(counter('status="failed",method="mpesa"'), Number(own.ended - own.tips));
  });

  test("the success rates per day add up to the same attempts", async () => {
    const { series } = await t.client(AnalyticsAdminService, admin).getPaymentSuccessRates({ range: today(), granularity: Granularity.HOUR });
    const attempted = series.reduce((n, p) => n + p.attempted, 0n);
    const { rows } = await t.db.pool.query<{ n: bigint }>("SELECT count(*)::int8 AS n FROM payment.tips WHERE status IN ('succeeded', 'failed', 'expired')");
    assert.equal(attempted, rows[0].n);
    assert.ok(series.every((p) => p.method === "mpesa"));
  });
});
