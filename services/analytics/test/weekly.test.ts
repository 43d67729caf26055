// The weekly summary with two analytics replicas running: each worker gets
// last week's figures once, in their language, through the real notification
// service (its providers simulated).
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { PaymentMethod, TipSucceededSchema, UserRegisteredSchema, VenueShareAllocatedSchema } from "@ttip/proto/ttip/events/v1/events_pb.js";
import { Channel, TemplateKey } from "@ttip/proto/ttip/notification/v1/notification_pb.js";
import { createNotificationModule, DEFAULT_RETRY } from "@ttip/notification";
import { ProviderSimulator } from "@ttip/notification/testing";
import { eventually, startTestService, type TestService } from "@ttip/runtime/testing";
import { createAnalyticsModule } from "../src/index.js";
import { REBUILD_LOCK } from "../src/ingest.js";
import { event } from "./events.js";

const DAY = 86_400_000;
const EAT = 3 * 3_600_000;

describe("weekly summary (two analytics replicas, notification, real PostgreSQL and JetStream)", () => {
  const sim = new ProviderSimulator();
  let t: TestService;
  const today = Math.floor((Date.now() + EAT) / DAY) * DAY - EAT;
  const weekday = (new Date(today + EAT).getUTCDay() + 6) % 7;
  const monday = today - weekday * DAY;
  // The replicas' clock: Monday 01:00 EAT (nothing owed before 08:00) while last week's events arrive.
  let now = new Date(monday + 3_600_000);
  /** Passes begun by either replica (each pass reads the clock once, first). */
  let passes = 0;
  const lastWeek = monday - 7 * DAY;
  const workers = Array.from({ length: 14 }, () => randomUUID());
  const tips = new Map<string, { count: number; total: bigint }>();

  before(async () => {
    await sim.start();
    // Short leases and small batches, so the replicas take turns and race on the same workers.
    const replica = () => createAnalyticsModule({ weekly: { intervalMs: 50, leaseMs: 40, batchSize: 3, now: () => (passes++, now) } });
    t = await startTestService(replica(), {
      with: [
        createNotificationModule({
          config: { providers: sim.config("africastalking", "at-secret"), retry: { ...DEFAULT_RETRY, baseDelayMs: 30 }, publicUrl: () => "" },
        }),
        replica(),
      ],
    });
    // Swahili for the even ones: notification knows each person's language.
    for (const [i, w] of workers.entries()) {
      await t.db.pool.query("INSERT INTO notification.recipients (user_id, locale) VALUES ($1, $2)", [w, i % 2 ? "en" : "sw"]);
    }
    for (const [i, w] of workers.entries()) {
      await t.ctx.bus.publish(event("ttip.auth.user_registered", UserRegisteredSchema, new Date(lastWeek - DAY), { userId: w, role: "worker", locale: "" }));
      const n = i % 4;
      let total = 0n;
      for (let k = 0; k < n; k++) {
        const amount = BigInt(100 + 50 * k) * 100n;
        // What reached the worker counts: the second tip's fee comes off; the third is a USD card tip credited in KES.
        const fee = k === 1 ? 500n : 0n;
        const card = k === 2;
        const net = card ? 116_280n : amount - fee;
        total += net;
        await t.ctx.bus.publish(event("ttip.payment.tip_succeeded", TipSucceededSchema, new Date(lastWeek + (k + 1) * DAY + 5 * 3_600_000), {
          tipId: randomUUID(), workerId: w, method: card ? PaymentMethod.CARD : PaymentMethod.MPESA,
          amount: card ? { amountMinor: 1_000n, currency: "USD" } : { amountMinor: amount, currency: "KES" },
          fee: card ? { amountMinor: 100n, currency: "USD" } : { amountMinor: fee, currency: "KES" }, net: { amountMinor: net, currency: "KES" },
        }));
      }
      // A pool share is earnings too: a waiter at a venue tipped at its table code got KES 2,000 of them and no tip
      // (before, "0 tips, KES 0.00 in total").
      if (n === 0) {
        total += 200_000n;
        await t.ctx.bus.publish(event("ttip.venue.share_allocated", VenueShareAllocatedSchema, new Date(lastWeek + 2 * DAY), {
          venueId: randomUUID(), distributionId: randomUUID(), memberId: randomUUID(), workerId: w, amount: { amountMinor: 200_000n, currency: "KES" },
        }));
      }
      // A tip this week is not last week's.
      await t.ctx.bus.publish(event("ttip.payment.tip_succeeded", TipSucceededSchema, new Date(monday + 3_600_000), {
        tipId: randomUUID(), workerId: w, method: PaymentMethod.MPESA, amount: { amountMinor: 99_900n, currency: "KES" },
        fee: { amountMinor: 0n, currency: "KES" }, net: { amountMinor: 99_900n, currency: "KES" },
      }));
      tips.set(w, { count: n, total });
    }
    const shares = [...tips.values()].filter((x) => x.count === 0).length;
    const published = workers.length * 2 + [...tips.values()].reduce((a, x) => a + x.count, 0) + shares;
    await eventually("last week's events applied", async () => {
      // (notification's own delivery events come in too; only these are counted)
      const { rows } = await t.db.pool.query<{ n: number }>(
        "SELECT count(*)::int AS n FROM analytics.inbox WHERE subject IN ('ttip.auth.user_registered', 'ttip.payment.tip_succeeded', 'ttip.venue.share_allocated')",
      );
      return rows[0].n === published;
    });
    const early = await t.db.pool.query<{ n: number }>("SELECT count(*)::int AS n FROM analytics.weekly_summaries");
    assert.equal(early.rows[0].n, 0, "nothing is sent before Monday 08:00 EAT");
  });

  after(async () => {
    await t?.close();
    await sim.close();
  });

  test("each worker gets one summary of last week, in their language, whichever replica sends it; none while a rebuild of the rollups runs", async () => {
    // A rebuild (replay.ts) holds the lock while it refills the rollups: before, a pass meanwhile sent short figures, for good.
    const rebuild = await t.db.pool.connect();
    try {
      await rebuild.query("SELECT pg_advisory_lock(hashtext($1))", [REBUILD_LOCK]);
      now = new Date(monday + 9 * 3_600_000);
      const begun = passes;
      await eventually("passes while the rebuild runs", () => passes >= begun + 3, { timeoutMs: 30_000 });
      const during = await t.db.pool.query<{ n: number }>("SELECT count(*)::int AS n FROM analytics.weekly_summaries");
      assert.equal(during.rows[0].n, 0, "nothing sent while the rebuild runs");
    } finally {
      await rebuild.query("SELECT pg_advisory_unlock(hashtext($1))", [REBUILD_LOCK]);
      rebuild.release();
    }
    await eventually("a summary recorded for every worker", async () => {
      const { rows } = await t.db.pool.query<{ n: number }>("SELECT count(*)::int AS n FROM analytics.weekly_summaries");
      return rows[0].n === workers.length;
    });
    // Let both replicas run many more passes (at least 18 more finished; at most one per replica is still running): nothing more may go out.
    const seen = passes;
    await eventually("20 more passes", () => passes >= seen + 20);
    const { rows } = await t.db.pool.query<{ user_id: string; n: number; locale: string; body: string }>(
      `SELECT user_id, count(*)::int AS n, min(locale) AS locale, min(body) AS body FROM notification.deliveries
        WHERE template_key = $1 AND channel = $2 GROUP BY user_id`,
      [TemplateKey.WEEKLY_SUMMARY, Channel.IN_APP],
    );
    assert.equal(rows.length, workers.length);
    for (const [i, w] of workers.entries()) {
      const r = rows.find((x) => x.user_id === w);
      assert.ok(r, `worker ${i} got a summary`);
      assert.equal(r.n, 1, `worker ${i} got exactly one`);
      assert.equal(r.locale, i % 2 ? "en" : "sw");
      const { count, total } = tips.get(w)!;
      const kes = `KES ${(total / 100n).toString().replace(/\B(?=(\d{3})+(?!\d))/g, ",")}\\.${String(total % 100n).padStart(2, "0")}`;
      if (i % 2) assert.match(r.body, new RegExp(`${count} tips, ${kes} in total`));
      else assert.match(r.body, new RegExp(`bakshishi ${count}, jumla ${kes}`));
    }
    const weeks = await t.db.pool.query<{ week_start: Date }>("SELECT DISTINCT week_start FROM analytics.weekly_summaries");
    assert.equal(weeks.rows.length, 1);
  });
});
