// A generated day of events through JetStream into analytics: the figures on
// every screen equal what the events add up to, CSV exports equal the screens,
// a replay rebuilds the same rollups, live dashboards move, access is checked.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { Granularity, ReportKind } from "@ttip/proto/ttip/analytics/v1/analytics_pb.js";
import { AnalyticsAdminService, AnalyticsService } from "@ttip/proto/ttip/analytics/v1/analytics_service_pb.js";
import { DeliveryUpdatedSchema, PaymentMethod, QrScannedSchema, TipFailedSchema, TipSucceededSchema } from "@ttip/proto/ttip/events/v1/events_pb.js";
import { createQrModule } from "@ttip/qr";
import { OwnerKind } from "@ttip/proto/ttip/qr/v1/qr_pb.js";
import { QrService } from "@ttip/proto/ttip/qr/v1/qr_service_pb.js";
import { callerHeaders, type EventBus, InProcessBus } from "@ttip/runtime";
import { eventually, failure, startTestService, type TestService } from "@ttip/runtime/testing";
import { Dim } from "../src/facts.js";
import { createAnalyticsModule, parseCsv, replay, ReplayBeyondStreamError } from "../src/index.js";
import { cast, event, generateDay, percentileCont, type Cast, type Expected } from "./events.js";

const DAY = 86_400_000;
const EAT = 3 * 3_600_000;
/** Midnight EAT, `daysAgo` days before today. */
const midnight = (daysAgo: number) => new Date(Math.floor((Date.now() + EAT) / DAY) * DAY - EAT - daysAgo * DAY);
const range = (from: Date, to: Date) => ({ from: timestampFromDate(from), to: timestampFromDate(to) });

describe("analytics from a generated day of events (real PostgreSQL and JetStream)", () => {
  let t: TestService;
  let c: Cast;
  let expected: Expected;
  let eventCount: number;
  let eventsBySubject: Record<string, number>;
  const admin = { subject: randomUUID(), roles: ["admin" as const] };
  const day = midnight(3);
  const dayRange = range(day, new Date(day.getTime() + DAY));

  before(async () => {
    t = await startTestService(createAnalyticsModule({ weekly: false, config: { livePollMs: 200 } }), { with: [createQrModule({ env: { QR_ALLOW_DEV_SIGNING_KEY: "true" } })] });
    c = cast(12, 3);
    const g = generateDay(c, day, 400, 16);
    expected = g.expected;
    eventCount = g.events.length;
    eventsBySubject = {};
    for (const m of g.events) eventsBySubject[m.subject] = (eventsBySubject[m.subject] ?? 0) + 1;
    for (const m of g.events) await t.ctx.bus.publish(m);
    const admins = t.client(AnalyticsAdminService, admin);
    await eventually("every event applied", async () => {
      const { rows } = await t.db.pool.query<{ n: number }>("SELECT count(*)::int AS n FROM analytics.inbox");
      return rows[0].n === eventCount;
    });
    assert.ok(admins);
  });

  after(async () => {
    await t?.close();
  });

  test("the platform summary equals what the events add up to", async () => {
    const { summary: s } = await t.client(AnalyticsAdminService, admin).getPlatformSummary({ range: dayRange });
    assert.ok(s);
    assert.equal(s.tips, BigInt(expected.succeeded));
    assert.equal(s.attempts, BigInt(expected.succeeded + expected.failed));
    assert.equal(s.volume?.amountMinor, expected.amount);
    assert.equal(s.fees?.amountMinor, expected.fee);
    assert.equal(s.takeRateBps, Number((expected.fee * 10_000n) / expected.amount));
    assert.equal(s.successRateBps, Math.floor((expected.succeeded * 10_000) / (expected.succeeded + expected.failed)));
    assert.deepEqual(
      Object.fromEntries(s.failures.map((f) => [f.resultCode, Number(f.count)])),
      Object.fromEntries(expected.failuresByCode),
    );
    assert.ok(s.failures.every((f) => f.reason.length > 0), "each failure code has the words customers saw");
    assert.equal(s.payoutsSucceeded, BigInt(expected.payoutsSucceeded));
    assert.equal(s.payoutsFailed, BigInt(expected.payoutsFailed));
    assert.equal(s.payouts?.amountMinor, expected.payoutMinor);
    assert.equal(Number(s.payoutLatencyP50Ms), Math.round(percentileCont(expected.payoutLatenciesMs, 0.5)));
    assert.equal(Number(s.payoutLatencyP95Ms), Math.round(percentileCont(expected.payoutLatenciesMs, 0.95)));
    assert.equal(s.newWorkers, BigInt(expected.newWorkers));
    assert.equal(s.activeVenues, BigInt(expected.activeVenues.size));
    assert.equal(s.scans, BigInt(expected.scans));
    assert.equal(s.smsSent, BigInt(expected.smsSent));
    assert.equal(s.smsSpend?.amountMinor, BigInt(expected.smsSent) * 80n);
    assert.equal(s.poolsDistributed?.amountMinor, expected.pooled);
  });

  test("/metrics: every event counted once by the inbox, the outbox and pool reported", async () => {
    const text = await t.ctx.metrics.registry.metrics();
    const value = (re: RegExp) => Number(re.exec(text)?.[1] ?? NaN);
    const applied = [...text.matchAll(/^ttip_inbox_events_total\{consumer="analytics-[^"]+",outcome="applied"\} (\d+)$/gm)].reduce((n, m) => n + Number(m[1]), 0);
    if (applied !== eventCount) {
      // What each consumer counted and holds, to say why. (The CI failure once blamed on this check, 258 against
      // 247, was the tip_succeeded ingest count below: it counted a batch rolled back and applied again twice.)
      const counted = [...text.matchAll(/^ttip_inbox_events_total\{consumer="(analytics-[^"]+)",outcome="(\w+)"\} (\d+)$/gm)].map((m) => `${m[1]} ${m[2]} ${m[3]}`);
      const { rows } = await t.db.pool.query<{ consumer: string; n: number }>("SELECT consumer, count(*)::int AS n FROM analytics.inbox GROUP BY consumer ORDER BY consumer");
      assert.fail(`applied ${applied} != ${eventCount} events; counted: ${counted.join("; ")}; inbox: ${rows.map((r) => `${r.consumer} ${r.n}`).join("; ")}; by subject: ${JSON.stringify(eventsBySubject)}`);
    }
    assert.equal(value(/^ttip_analytics_events_ingested_total\{subject="ttip.payment.tip_succeeded"\} (\d+)$/m), expected.succeeded);
    assert.equal(value(/^ttip_outbox_pending\{service="analytics"\} (\d+)$/m), 0);
    assert.ok(value(/^ttip_db_pool_connections\{pool="[a-z]+",state="idle"\} (\d+)$/m) >= 0);
    assert.match(text, /^ttip_analytics_event_lag_seconds_count (\d+)$/m);
  });

  test("a worker's earnings: by hour of day, average tip and ratings; another worker's figures are refused", async () => {
    const worker = c.workers[0];
    const w = expected.perWorker.get(worker)!;
    const { earnings: e } = await t.client(AnalyticsService, { subject: worker, roles: ["worker"] }).getWorkerEarnings({ range: dayRange });
    assert.ok(e);
    assert.equal(e.workerId, worker);
    assert.equal(e.inRange?.tips, BigInt(w.tips));
    assert.equal(e.inRange?.volume?.amountMinor, w.amount);
    assert.equal(e.inRange?.net?.amountMinor, w.net);
    assert.equal(e.inRange?.poolShare?.amountMinor, w.pool, "pool shares are the worker's earnings too");
    // A worker of the venue whose split was reversed: each share is taken back (before, kept, and counted twice once the period was split again).
    const reversedAt = c.workers.find((x) => c.venueOf.get(x) === c.venues.at(-1));
    assert.ok(reversedAt);
    const back = (await t.client(AnalyticsService, { subject: reversedAt, roles: ["worker"] }).getWorkerEarnings({ range: dayRange })).earnings;
    assert.equal(back?.inRange?.poolShare?.amountMinor ?? 0n, expected.perWorker.get(reversedAt)!.pool);
    assert.deepEqual(e.byHourOfDay.map((h) => Number(h.tips)), w.byHour);
    assert.equal(e.byWeekday.reduce((n, d) => n + Number(d.tips), 0), w.tips);
    assert.equal(e.averageTip?.amountMinor, w.tips ? w.amount / BigInt(w.tips) : 0n);
    assert.equal(e.averageRatingX100, w.ratingCount ? Math.floor((w.ratingSum * 100) / w.ratingCount) : 0);
    assert.equal(e.ratings.reduce((n, r) => n + Number(r.count), 0), w.ratingCount);
    // Three days ago is not today.
    assert.equal(e.today?.tips, 0n);

    // The worker's CSV equals the screen.
    const { csv } = await t.client(AnalyticsService, { subject: worker, roles: ["worker"] }).exportEarnings({ range: dayRange, scope: { case: "workerId", value: worker } });
    const rows = parseCsv(new TextDecoder().decode(csv));
    assert.deepEqual(rows.find((r) => r[0] === "period" && r[1] === "in_range")?.slice(2, 5), [String(e.inRange?.tips), String(e.inRange?.volume?.amountMinor), String(e.inRange?.net?.amountMinor)]);
    assert.deepEqual(rows.filter((r) => r[0] === "hour_of_day").map((r) => r[2]), e.byHourOfDay.map((h) => String(h.tips)));
    assert.deepEqual(rows.filter((r) => r[0] === "rating").map((r) => r[2]), e.ratings.map((r) => String(r.count)));

    const other = c.workers[1];
    await assert.rejects(
      t.client(AnalyticsService, { subject: worker, roles: ["worker"] }).getWorkerEarnings({ range: dayRange, workerId: other }),
      (err: unknown) => ConnectError.from(err).code === Code.PermissionDenied && /worker_id/.test(ConnectError.from(err).rawMessage),
    );
    // A manager who made "a venue" of that worker's id (qr knew nothing of it) manages no worker by it.
    const squatter = { subject: randomUUID(), roles: ["venue_manager" as const] };
    await createClient(QrService, t.ctx.peers("qr")).putProfile({ ownerKind: OwnerKind.VENUE, ownerId: other, displayName: "Not a venue" }, { headers: callerHeaders(squatter.subject, ...squatter.roles) });
    await assert.rejects(
      t.client(AnalyticsService, squatter).getWorkerEarnings({ range: dayRange, workerId: other }),
      (err: unknown) => ConnectError.from(err).code === Code.PermissionDenied && /worker_id/.test(ConnectError.from(err).rawMessage),
    );
    await assert.rejects(t.client(AnalyticsService).getWorkerEarnings({ range: dayRange }), (err: unknown) => ConnectError.from(err).code === Code.Unauthenticated);
    // Admins see anyone.
    const { earnings } = await t.client(AnalyticsService, admin).getWorkerEarnings({ range: dayRange, workerId: other });
    assert.equal(earnings?.inRange?.tips, BigInt(expected.perWorker.get(other)!.tips));
  });

  test("only the platform has day rows; a day row of a worker or venue (as an earlier version wrote them) is read by no screen", async () => {
    const { rows: dims } = await t.db.pool.query<{ dim: number }>("SELECT DISTINCT dim FROM analytics.rollups WHERE grain = 'd' ORDER BY dim");
    assert.deepEqual(dims.map((r) => r.dim), [1], "a worker's, venue's or code's days are their hours summed");
    const worker = c.workers[0];
    const venue = c.venueOf.get(worker)!;
    const screens = async () => {
      const asAdmin = t.client(AnalyticsService, admin);
      const [earnings, daily] = await Promise.all([
        asAdmin.getWorkerEarnings({ range: dayRange, workerId: worker }),
        asAdmin.getVenueAnalytics({ venueId: venue, range: dayRange, granularity: Granularity.DAY }),
      ]);
      return { earnings: earnings.earnings, funnel: daily.funnel, series: daily.series, workers: daily.workers, codes: daily.codes, failures: daily.failures };
    };
    const before = await screens();
    assert.equal(before.earnings?.inRange?.tips, BigInt(expected.perWorker.get(worker)!.tips));
    // Figures no event added, in day rows of the worker, the venue and its staff member and code.
    const NIL = "00000000-0000-0000-0000-000000000000";
    const stale: [number, string, string, string, string][] = [
      [2, worker, NIL, "mpesa", "0"], [3, venue, NIL, "mpesa", "0"], [3, venue, NIL, "mpesa", "1032"], [3, venue, NIL, "", ""],
      [5, venue, worker, "mpesa", "0"], [6, venue, c.codes.get(worker)!, "", ""],
    ];
    const keys = [stale.map((r) => r[0]), stale.map((r) => r[1]), stale.map((r) => r[2]), stale.map((r) => r[3]), stale.map((r) => r[4])];
    await t.db.pool.query(
      `INSERT INTO analytics.rollups (dim, id, sub, grain, bucket, method, result_code, currency, scans, created, succeeded, failed, amount_minor, net_minor)
       SELECT k.dim, k.id, k.sub, 'd', $6, k.method, k.code, CASE WHEN k.method = '' THEN '' ELSE 'KES' END, 1000, 1000, 1000, 1000, 1000000000, 1000000000
         FROM unnest($1::smallint[], $2::uuid[], $3::uuid[], $4::text[], $5::text[]) AS k(dim, id, sub, method, code)`,
      [...keys, day],
    );
    try {
      assert.deepEqual(await screens(), before);
    } finally {
      await t.db.pool.query("DELETE FROM analytics.rollups WHERE grain = 'd' AND dim <> 1");
    }
  });

  test("a venue's funnel, staff and codes; its CSV equals the screen", async () => {
    const venue = c.venues[0];
    const v = expected.perVenue.get(venue)!;
    const res = await t.client(AnalyticsService, admin).getVenueAnalytics({ venueId: venue, range: dayRange, granularity: Granularity.HOUR });
    assert.deepEqual(res.funnel.map((s) => [s.step, Number(s.count)]), [
      ["scanned", v.scans], ["amount_chosen", v.created], ["payment_started", v.created - v.pushRefused], ["paid", v.succeeded],
    ]);
    assert.equal(res.funnel[3].ofFirstBps, Math.floor((v.succeeded * 10_000) / v.scans));
    assert.equal(res.series.reduce((n, p) => n + (p.tipVolume?.amountMinor ?? 0n), 0n), v.amount);
    const staff = c.workers.filter((w) => c.venueOf.get(w) === venue && expected.perWorker.get(w)!.tips > 0);
    assert.deepEqual(new Set(res.workers.map((w) => w.workerId)), new Set(staff));
    assert.equal(res.codes.reduce((n, q) => n + Number(q.scans), 0), v.scans);
    assert.equal(res.failures.reduce((n, f) => n + Number(f.count), 0), v.created - v.succeeded);

    const { csv, fileName } = await t.client(AnalyticsService, admin).exportEarnings({ range: dayRange, scope: { case: "venueId", value: venue } });
    // Named by its Nairobi days (it starts at Nairobi's midnight, 21:00 UTC the evening before; before, the UTC dates).
    const nairobi = (d: Date) => new Date(d.getTime() + EAT).toISOString().slice(0, 10);
    assert.equal(fileName, `ttip-venue-${venue.slice(0, 8)}-${nairobi(day)}_${nairobi(new Date(day.getTime() + DAY))}.csv`);
    const rows = parseCsv(new TextDecoder().decode(csv));
    const daily = await t.client(AnalyticsService, admin).getVenueAnalytics({ venueId: venue, range: dayRange, granularity: Granularity.DAY });
    assert.deepEqual(rows.filter((r) => r[0] === "funnel").map((r) => [r[1], r[2]]), daily.funnel.map((s) => [s.step, String(s.count)]));
    assert.deepEqual(rows.filter((r) => r[0] === "series").map((r) => [r[1], r[3]]), daily.series.map((p) => [timestampDate(p.periodStart!).toISOString(), String(p.tipVolume?.amountMinor)]));
    assert.deepEqual(rows.filter((r) => r[0] === "staff").map((r) => [r[1], r[2], r[3]]), daily.workers.map((w) => [w.workerId, String(w.tips), String(w.volume?.amountMinor)]));
    // A worker who manages nothing may not see a venue.
    await assert.rejects(
      t.client(AnalyticsService, { subject: c.workers[0], roles: ["worker"] }).getVenueAnalytics({ venueId: venue, range: dayRange, granularity: Granularity.DAY }),
      (err: unknown) => ConnectError.from(err).code === Code.PermissionDenied,
    );
  });

  test("a venue's CSV holds every code tipped, past the screen's 500", async () => {
    const venue = randomUUID();
    const codes = Array.from({ length: 600 }, () => randomUUID());
    // Dim 3 is the venue (its currencies), 6 its codes: a tip each.
    await t.db.pool.query(
      `INSERT INTO analytics.rollups (dim, id, sub, grain, bucket, method, result_code, currency, scans, created, succeeded, failed, amount_minor, net_minor)
       SELECT 3, $1::uuid, '00000000-0000-0000-0000-000000000000'::uuid, 'h', $3::timestamptz, 'mpesa', '0', 'KES', 600, 600, 600, 0, 600000, 540000
       UNION ALL
       SELECT 6, $1::uuid, code, 'h', $3::timestamptz, '', '', '', 1, 1, 1, 0, 1000, 900 FROM unnest($2::uuid[]) AS code`,
      [venue, codes, day],
    );
    try {
      const { csv } = await t.client(AnalyticsService, admin).exportEarnings({ range: dayRange, scope: { case: "venueId", value: venue } });
      const rows = parseCsv(new TextDecoder().decode(csv));
      // Before, the 500 with the most volume, and no word of the other 100.
      assert.equal(rows.filter((r) => r[0] === "qr_code").length, 600);
    } finally {
      await t.db.pool.query("DELETE FROM analytics.rollups WHERE id = $1", [venue]);
    }
  });

  test("admin reports as CSV equal the RPCs", async () => {
    const admins = t.client(AnalyticsAdminService, admin);
    const revenue = await admins.getRevenueMetrics({ range: dayRange, granularity: Granularity.DAY, currency: "KES" });
    const csv = parseCsv(new TextDecoder().decode((await admins.exportReport({ kind: ReportKind.REVENUE, range: dayRange })).csv));
    assert.deepEqual(csv.slice(1).map((r) => [r[0], r[1], r[2], r[3], r[4]]), revenue.series.map((p) => [
      timestampDate(p.periodStart!).toISOString(), String(p.tips), String(p.tipVolume?.amountMinor), String(p.platformFees?.amountMinor), String(p.payouts?.amountMinor),
    ]));
    assert.equal(revenue.series.reduce((n, p) => n + (p.tipVolume?.amountMinor ?? 0n), 0n), expected.amount);

    const rates = await admins.getPaymentSuccessRates({ range: dayRange, granularity: Granularity.DAY });
    const tipsCsv = parseCsv(new TextDecoder().decode((await admins.exportReport({ kind: ReportKind.TIPS, range: dayRange })).csv));
    assert.deepEqual(tipsCsv.slice(1).map((r) => [r[1], r[2], r[3], r[4]]), rates.series.map((p) => [p.method, String(p.attempted), String(p.succeeded), String(p.successRateBps)]));

    const payouts = parseCsv(new TextDecoder().decode((await admins.exportReport({ kind: ReportKind.PAYOUTS, range: dayRange })).csv)).slice(1);
    assert.equal(payouts.length, expected.payoutsSucceeded + expected.payoutsFailed);
    assert.equal(payouts.filter((r) => r[2] === "succeeded").reduce((n, r) => n + BigInt(r[4]), 0n), expected.payoutMinor);

    const platform = parseCsv(new TextDecoder().decode((await admins.exportReport({ kind: ReportKind.PLATFORM, range: dayRange })).csv));
    const { summary } = await admins.getPlatformSummary({ range: dayRange });
    assert.equal(platform.find((r) => r[0] === "volume_minor")?.[1], String(summary?.volume?.amountMinor));
    assert.equal(platform.find((r) => r[0] === "payout_latency_p95_ms")?.[1], String(summary?.payoutLatencyP95Ms));

    await assert.rejects(
      t.client(AnalyticsAdminService, { subject: c.workers[0], roles: ["worker"] }).getPlatformSummary({ range: dayRange }),
      (err: unknown) => ConnectError.from(err).code === Code.PermissionDenied,
    );
  });

  test("a range not at Nairobi midnight: the series and success rates by day hold what the summary does, no whole day's rows around it", async () => {
    const admins = t.client(AnalyticsAdminService, admin);
    // 00:00 UTC to 00:00 UTC, as a finance tool asks: before, the day rows that start in it (none) were read.
    const shifted = range(new Date(day.getTime() + EAT), new Date(day.getTime() + DAY + EAT));
    const { summary } = await admins.getPlatformSummary({ range: shifted });
    assert.ok(summary!.volume!.amountMinor > 0n && summary!.volume!.amountMinor < expected.amount, "the first three hours left out");
    const revenue = await admins.getRevenueMetrics({ range: shifted, granularity: Granularity.DAY, currency: "KES" });
    assert.equal(revenue.series.reduce((n, p) => n + (p.tipVolume?.amountMinor ?? 0n), 0n), summary!.volume!.amountMinor);
    const rates = await admins.getPaymentSuccessRates({ range: shifted, granularity: Granularity.DAY });
    assert.equal(rates.series.reduce((n, p) => n + p.attempted, 0n), summary!.attempts);
  });

  test("a WORKERS report over more rows than it holds is refused naming the range, not cut short", async () => {
    const admins = t.client(AnalyticsAdminService, admin);
    // 10,000 KES rows and one in USD (listed last) in the day's first hour: before, the file held 10,000 rows, the USD one left out, and said nothing.
    const at = new Date(day.getTime() + 30 * 60_000);
    const { rows } = await t.db.pool.query<{ id: string }>(
      `INSERT INTO analytics.rollups (dim, id, sub, grain, bucket, method, result_code, currency, succeeded, amount_minor)
       SELECT ${Dim.Worker}, gen_random_uuid(), '00000000-0000-0000-0000-000000000000', 'h', date_trunc('hour', $1::timestamptz), 'mpesa', '0', CASE WHEN n = 0 THEN 'USD' ELSE 'KES' END, 1, 100
         FROM generate_series(0, 10000) n RETURNING id`,
      [at],
    );
    try {
      const refused = await failure(admins.exportReport({ kind: ReportKind.WORKERS, range: dayRange }));
      assert.deepEqual(refused, { code: Code.InvalidArgument, message: "range: the WORKERS report holds at most 10,000 rows and this range has more: narrow it" });
    } finally {
      await t.db.pool.query("DELETE FROM analytics.rollups WHERE dim = $1 AND id = ANY($2::uuid[])", [Dim.Worker, rows.map((r) => r.id)]);
    }
    const csv = parseCsv(new TextDecoder().decode((await admins.exportReport({ kind: ReportKind.WORKERS, range: dayRange })).csv));
    assert.ok(csv.length > 1 && csv.length <= 10_001, "the day's own workers, whole");
  });

  test("a replay from any day rebuilds the same rollups, whatever was there", async () => {
    const snapshot = async () =>
      (await t.db.pool.query("SELECT * FROM analytics.rollups ORDER BY dim, id, grain, bucket, sub, method, result_code, currency")).rows;
    const before = await snapshot();
    assert.ok(before.length > 100);
    // Damage what replay must fix: a row counted twice, one lost, one invented.
    await t.db.pool.query("UPDATE analytics.rollups SET succeeded = succeeded * 2, amount_minor = amount_minor * 2 WHERE dim = 1");
    await t.db.pool.query("DELETE FROM analytics.rollups WHERE dim = 2 AND id = $1", [c.workers[0]]);
    await t.db.pool.query("DELETE FROM analytics.payout_results");
    const r = await replay({ pool: t.db.pool, bus: t.ctx.bus, logger: t.ctx.logger, from: new Date(day.getTime() + 5 * 3_600_000) });
    assert.equal(r.from.getTime(), day.getTime(), "rounded down to midnight EAT");
    assert.equal(r.applied, eventCount);
    assert.deepEqual(await snapshot(), before);
    // Again: a replay over untouched figures changes nothing.
    await replay({ pool: t.db.pool, bus: t.ctx.bus, logger: t.ctx.logger, from: midnight(10) });
    assert.deepEqual(await snapshot(), before);
    const { summary } = await t.client(AnalyticsAdminService, admin).getPlatformSummary({ range: dayRange });
    assert.equal(summary?.payoutsSucceeded, BigInt(expected.payoutsSucceeded));
  });

  test("a replay that stops halfway changes no figure: its clearing and its batches commit together or not at all", async () => {
    const snapshot = async () =>
      (await t.db.pool.query("SELECT * FROM analytics.rollups ORDER BY dim, id, grain, bucket, sub, method, result_code, currency")).rows;
    const before = await snapshot();
    // The stream read back until its 40th event, then the connection lost: batches of 10 applied before it.
    const cut: EventBus = Object.create(t.ctx.bus);
    cut.readStored = (o) => {
      let n = 0;
      return t.ctx.bus.readStored!({ ...o, handler: async (m) => {
        if (++n > 40) throw new Error("connection to the stream lost");
        await o.handler(m);
      } });
    };
    await assert.rejects(replay({ pool: t.db.pool, bus: cut, logger: t.ctx.logger, from: day, batchSize: 10 }), /connection to the stream lost/);
    // Before, the clearing and the batches before the cut had committed: the day's figures cut short, unseen.
    assert.deepEqual(await snapshot(), before);
  });

  test("a tip announced failed before a replay's first day and paid after it: its failure is taken back once, not again by the replay", async () => {
    const from = midnight(1);
    const [tipId, workerId] = [randomUUID(), randomUUID()];
    const failedAt = new Date(from.getTime() - 2 * 60_000);
    const tip = { tipId, workerId, amount: { currency: "KES", amountMinor: 10_000n }, method: PaymentMethod.MPESA };
    const applied = async () => (await t.db.pool.query<{ n: number }>("SELECT count(*)::int AS n FROM analytics.inbox")).rows[0].n;
    const before = await applied();
    await t.ctx.bus.publish(event("ttip.payment.tip_failed", TipFailedSchema, failedAt, { ...tip, resultCode: "expired", reason: "No answer in time" }));
    await t.ctx.bus.publish(event("ttip.payment.tip_succeeded", TipSucceededSchema, new Date(from.getTime() + 3 * 60_000), {
      ...tip, fee: { currency: "KES", amountMinor: 300n }, net: { currency: "KES", amountMinor: 9_700n }, mpesaReceipt: "RLATE1", replacedFailureAt: timestampFromDate(failedAt), replacedFailureCode: "expired",
    }));
    await eventually("both applied", async () => (await applied()) === before + 2);
    const failedTheDayBefore = async () => (await t.db.pool.query<{ n: number }>(
      "SELECT coalesce(sum(failed), 0)::int AS n FROM analytics.rollups WHERE dim = $1 AND id = $2 AND bucket < $3", [Dim.Worker, workerId, from])).rows[0].n;
    assert.equal(await failedTheDayBefore(), 0, "announced failed, then taken back");
    await replay({ pool: t.db.pool, bus: t.ctx.bus, logger: t.ctx.logger, from });
    // Before, the replay applied the take-back (dated the day before) again: -1.
    assert.equal(await failedTheDayBefore(), 0, "not taken back a second time");
  });

  test("a replay from before the oldest event the stream holds is refused and clears nothing; from the day it names it runs", async () => {
    const snapshot = async () => (await t.db.pool.query("SELECT * FROM analytics.rollups ORDER BY dim, id, grain, bucket, sub, method, result_code, currency")).rows;
    const before = await snapshot();
    // A stream whose limits dropped its oldest event (JetStream's max age does it to a week-old one).
    const stream = new InProcessBus(t.ctx.logger, 50, { maxMessages: 1 });
    for (let n = 0; n < 2; n++) await stream.publish(event("ttip.qr.scanned", QrScannedSchema, new Date(), { qrCodeId: c.codes.get(c.workers[0]), workerId: c.workers[0], shortCode: "ABC" }));
    const refused = await replay({ pool: t.db.pool, bus: stream, logger: t.ctx.logger, from: day }).catch((err: unknown) => err);
    assert.ok(refused instanceof ReplayBeyondStreamError, `refused, got ${String(refused)}`);
    assert.deepEqual(await snapshot(), before, "nothing cleared");
    const heldFrom = (await stream.storedWholeSince())!.getTime();
    assert.ok(refused.earliest.getTime() - 15 * 60_000 >= heldFrom && refused.earliest.getTime() - heldFrom <= DAY + 15 * 60_000, "the first midnight whose replay the stream holds whole");
    assert.equal((refused.earliest.getTime() + EAT) % DAY, 0, "a midnight, East Africa Time");
    assert.match(refused.message, /^the stream holds events stored from .* a replay from \d{4}-\d{2}-\d{2} would clear figures it cannot rebuild; the earliest day it can rebuild is \d{4}-\d{2}-\d{2} \(East Africa Time\)$/);
    assert.equal((await replay({ pool: t.db.pool, bus: stream, logger: t.ctx.logger, from: refused.earliest })).applied, 0, "the day it names is accepted");
    await stream.close();
  });

  test("live dashboard: today's snapshot, then a new one when a tip lands", async () => {
    const worker = c.workers[2];
    const abort = new AbortController();
    const stream = t.client(AnalyticsService, { subject: worker, roles: ["worker"] }).watchDashboard({}, { signal: abort.signal });
    const it = stream[Symbol.asyncIterator]();
    const first = (await it.next()).value!.snapshot!;
    const now = new Date();
    await t.ctx.bus.publish(event("ttip.payment.tip_succeeded", TipSucceededSchema, now, {
      tipId: randomUUID(), workerId: worker, venueId: c.venueOf.get(worker), qrCodeId: c.codes.get(worker), method: PaymentMethod.MPESA,
      amount: { amountMinor: 20_000n, currency: "KES" }, fee: { amountMinor: 600n, currency: "KES" }, net: { amountMinor: 19_400n, currency: "KES" },
    }));
    const next = (await it.next()).value!.snapshot!;
    abort.abort();
    assert.equal(next.tipsToday, first.tipsToday + 1n);
    assert.equal(next.volumeToday?.amountMinor, (first.volumeToday?.amountMinor ?? 0n) + 20_000n);
  });

  test("a notification update the figures do not read (a push, an SMS queued) adds nothing and leaves no inbox row; an SMS sent counts", async () => {
    const today = midnight(0);
    const smsSent = async () => (await t.client(AnalyticsAdminService, admin).getPlatformSummary({ range: range(today, new Date(today.getTime() + DAY)) })).summary!.smsSent;
    const before = await smsSent();
    const update = (channel: string, status: string) =>
      event("ttip.notification.delivery_updated", DeliveryUpdatedSchema, new Date(), {
        deliveryId: randomUUID(), userId: c.workers[0], channel, status, templateKey: "TIP_RECEIVED", attempt: 1,
      });
    const unread = [update("push", "sent"), update("sms", "queued"), update("inbox", "delivered")];
    const sent = update("sms", "sent");
    // In order on one subject: when the SMS sent is recorded, the three before it were handled.
    for (const m of [...unread, sent]) await t.ctx.bus.publish(m);
    await eventually("the SMS sent recorded", async () => (await t.db.pool.query("SELECT 1 FROM analytics.inbox WHERE event_id = $1", [sent.id])).rowCount === 1);
    const { rows } = await t.db.pool.query("SELECT event_id FROM analytics.inbox WHERE event_id = ANY($1::uuid[])", [unread.map((m) => m.id)]);
    assert.deepEqual(rows, [], "no inbox row for an update that adds nothing");
    assert.equal(await smsSent(), before + 1n);
  });
});
