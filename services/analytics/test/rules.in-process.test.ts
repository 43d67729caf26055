// analytics' handler rules in the fast tier: analytics, and the qr service that
// says who manages whom, in this process behind the servers' own interceptors,
// reached through router transports on one real database, with events on the
// in-process bus. Rollup arithmetic, CSVs and replays stay in rollups.test.ts
// (its field checks moved here).
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { type DashboardSnapshot, Granularity, ReportKind } from "@ttip/proto/ttip/analytics/v1/analytics_pb.js";
import { AnalyticsAdminService, AnalyticsService } from "@ttip/proto/ttip/analytics/v1/analytics_service_pb.js";
import { DeliveryUpdatedSchema, PaymentMethod, TipReversalKind, TipReversedSchema, TipSucceededSchema } from "@ttip/proto/ttip/events/v1/events_pb.js";
import { OwnerKind } from "@ttip/proto/ttip/qr/v1/qr_pb.js";
import { QrService } from "@ttip/proto/ttip/qr/v1/qr_service_pb.js";
import { AdjustableClock, type BatchSubscribeOptions, callerHeaders, InProcessBus, Metrics, violationsOf, type DeliveredMessage, type Role } from "@ttip/runtime";
import { type InProcessService, kesMinor, refusal, startInProcessService, eventually } from "@ttip/runtime/testing";
import { createQrModule } from "@ttip/qr";
import { createAnalyticsModule, parseCsv } from "../src/index.js";
import { startConsumers } from "../src/ingest.js";
import { event } from "./events.js";

const DAY = 86_400_000;
const EAT = 3 * 3_600_000;
/** The in-process bus's duplicate window (JetStream's default). */
const DUPLICATE_WINDOW_MS = 120_000;
const lastDay = () => ({ from: timestampFromDate(new Date(Date.now() - DAY)), to: timestampFromDate(new Date(Date.now() + 60_000)) });
const fieldsOf = (err: Parameters<typeof violationsOf>[0]) => violationsOf(err).map((v) => v.field);

describe("analytics rules, in process (with qr)", () => {
  let s: InProcessService;
  const clock = new AdjustableClock();
  const asWorker = (subject: string) => s.client(AnalyticsService, { subject, roles: ["worker"] as Role[] });

  before(async () => {
    s = await startInProcessService(createAnalyticsModule({ env: {}, weekly: false }), {
      clock,
      with: [createQrModule({ env: { QR_SIGNING_KEY: "test-signing-key-0123456789abcdef-qr", QR_TIP_BASE_URL: "https://tips.example/t" } })],
    });
  });
  after(() => s?.close());

  test("bad input is refused as INVALID_ARGUMENT naming the field", async () => {
    const me = asWorker(randomUUID());
    const notUuid = await refusal(me.getWorkerEarnings({ range: lastDay(), workerId: "not-a-uuid" }));
    assert.equal(notUuid.code, Code.InvalidArgument);
    assert.deepEqual(fieldsOf(notUuid), ["worker_id"]);
    const backwards = await refusal(me.getWorkerEarnings({ range: { from: lastDay().to, to: lastDay().from } }));
    assert.equal(backwards.code, Code.InvalidArgument);
    assert.deepEqual(violationsOf(backwards).map((v) => [v.field, v.ruleId]), [["range", "time_range.order"]]);
    const longHourly = { from: timestampFromDate(new Date(Date.now() - 40 * DAY)), to: timestampFromDate(new Date()) };
    const admin = s.client(AnalyticsAdminService, { subject: randomUUID(), roles: ["admin"] as Role[] });
    const hourly = await refusal(admin.getRevenueMetrics({ range: longHourly, granularity: Granularity.HOUR, currency: "KES" }));
    assert.deepEqual(violationsOf(hourly).map((v) => [v.field, v.message]), [["granularity", "hourly figures are served for ranges of at most 31 days"]]);
  });

  test("admins' revenue and summary per currency: a USD tip is USD's alone, a served currency without data is zero (not an error), a malformed or unserved one INVALID_ARGUMENT naming currency", async () => {
    const admin = s.client(AnalyticsAdminService, { subject: randomUUID(), roles: ["admin"] as Role[] });
    const usd = (amountMinor: bigint) => ({ currency: "USD", amountMinor });
    await s.ctx.bus.publish(event("ttip.payment.tip_succeeded", TipSucceededSchema, new Date(), {
      tipId: randomUUID(), workerId: randomUUID(), amount: usd(12_34n), fee: usd(62n), net: kesMinor(1_500_00n), method: PaymentMethod.CARD, rating: 0,
    }));
    const revenue = (currency: string) => admin.getRevenueMetrics({ range: lastDay(), granularity: Granularity.DAY, currency });
    const usdSeries = await eventually("the USD tip counted", async () => {
      const { series } = await revenue("USD");
      return series.length > 0 && series;
    });
    assert.deepEqual(usdSeries.map((p) => [p.tips, p.tipVolume, p.platformFees, p.payouts].map((x) => (typeof x === "bigint" ? x : [x?.currency, x?.amountMinor]))), [
      [1n, ["USD", 12_34n], ["USD", 62n], ["USD", 0n]],
    ]);
    assert.ok((await revenue("KES")).series.every((p) => p.tipVolume?.currency === "KES"), "KES figures are KES");
    // No tip in GBP: no points and a summary of zeros in that currency.
    assert.deepEqual((await revenue("GBP")).series, []);
    const { summary } = await admin.getPlatformSummary({ range: lastDay(), currency: "GBP" });
    assert.deepEqual([summary!.tips, summary!.volume, summary!.fees, summary!.payouts, summary!.poolsDistributed].map((x) => (typeof x === "bigint" ? x : [x?.currency, x?.amountMinor])), [
      0n, ["GBP", 0n], ["GBP", 0n], ["GBP", 0n], ["GBP", 0n],
    ]);
    const { summary: usdSummary } = await admin.getPlatformSummary({ range: lastDay(), currency: "USD" });
    assert.deepEqual([usdSummary!.tips, usdSummary!.volume?.amountMinor, usdSummary!.fees?.amountMinor], [1n, 12_34n, 62n]);
    // A malformed code, or one the platform does not serve (JPY): refused naming currency, not zeros.
    const unserved = [revenue("JPY"), admin.getPlatformSummary({ range: lastDay(), currency: "JPY" })];
    for (const bad of [revenue("usd"), revenue(""), admin.getPlatformSummary({ range: lastDay(), currency: "US" }), ...unserved]) {
      const err = await refusal(bad);
      assert.equal(err.code, Code.InvalidArgument);
      assert.deepEqual(fieldsOf(err), ["currency"]);
    }
  });

  test("the revenue export has every currency's rows, a row per day and currency, the currency column saying which", async () => {
    const admin = s.client(AnalyticsAdminService, { subject: randomUUID(), roles: ["admin"] as Role[] });
    // A day of its own (40 days back), so the other tests' tips are not in it.
    const day = new Date(Math.floor((Date.now() + EAT) / DAY) * DAY - EAT - 40 * DAY);
    const at = new Date(day.getTime() + 12 * 3_600_000);
    const tip = (currency: string, amountMinor: bigint, feeMinor: bigint) => event("ttip.payment.tip_succeeded", TipSucceededSchema, at, {
      tipId: randomUUID(), workerId: randomUUID(), method: currency === "KES" ? PaymentMethod.MPESA : PaymentMethod.CARD, rating: 0,
      amount: { currency, amountMinor }, fee: { currency, amountMinor: feeMinor }, net: { currency, amountMinor: amountMinor - feeMinor },
    });
    await s.ctx.bus.publish(tip("USD", 12_34n, 62n));
    await s.ctx.bus.publish(tip("KES", 500_00n, 15_00n));
    const range = { from: timestampFromDate(day), to: timestampFromDate(new Date(day.getTime() + DAY)) };
    const rows = await eventually("both tips in the export", async () => {
      const csv = parseCsv(new TextDecoder().decode((await admin.exportReport({ kind: ReportKind.REVENUE, range })).csv));
      return csv.length >= 3 && csv;
    });
    assert.deepEqual(rows, [
      ["period_start", "tips", "tip_volume_minor", "platform_fees_minor", "payouts_minor", "currency"],
      [day.toISOString(), "1", "50000", "1500", "0", "KES"],
      [day.toISOString(), "1", "1234", "62", "0", "USD"],
    ]);
  });

  test("the live dashboards report the currency asked for (KES by default): a worker's USD card tip is in the USD stream, not in KES's; a malformed or unserved currency INVALID_ARGUMENT naming currency", async () => {
    const worker = randomUUID();
    const tip = (currency: string, amountMinor: bigint) => event("ttip.payment.tip_succeeded", TipSucceededSchema, new Date(), {
      tipId: randomUUID(), workerId: worker, method: currency === "KES" ? PaymentMethod.MPESA : PaymentMethod.CARD, rating: 0,
      amount: { currency, amountMinor }, fee: { currency, amountMinor: 0n }, net: { currency, amountMinor },
    });
    await s.ctx.bus.publish(tip("USD", 5_00n));
    await s.ctx.bus.publish(tip("KES", 200_00n));
    const first = async (stream: AsyncIterable<{ snapshot?: DashboardSnapshot }>) => {
      for await (const { snapshot } of stream) return snapshot!;
      throw new Error("the stream ended without a snapshot");
    };
    const figures = (d: DashboardSnapshot) => [d.tipsToday, d.volumeToday?.currency, d.volumeToday?.amountMinor, d.averageTip?.currency, d.averageTip?.amountMinor];
    const watch = async (currency?: string) => {
      const abort = new AbortController();
      try {
        return await first(asWorker(worker).watchDashboard(currency === undefined ? {} : { currency }, { signal: abort.signal }));
      } finally {
        abort.abort();
      }
    };
    const usd = await eventually("the USD tip counted", async () => {
      const d = await watch("USD");
      return d.tipsToday > 0n && d;
    });
    assert.deepEqual(figures(usd), [1n, "USD", 5_00n, "USD", 5_00n]);
    await eventually("the KES tip counted", async () => (await watch()).tipsToday > 0n);
    assert.deepEqual(figures(await watch()), [1n, "KES", 200_00n, "KES", 200_00n]);
    assert.deepEqual(figures(await watch("KES")), [1n, "KES", 200_00n, "KES", 200_00n]);
    assert.deepEqual(figures(await watch("GBP")), [0n, "GBP", 0n, "GBP", 0n]);
    // A currency the platform does not serve is refused naming it, as the other reads do (it streamed zeros).
    for (const bad of [watch("JPY"), asWorker(worker).getWorkerEarnings({ range: lastDay(), currency: "JPY" })]) {
      const err = await refusal(bad);
      assert.equal(err.code, Code.InvalidArgument);
      assert.deepEqual(fieldsOf(err), ["currency"]);
    }
    // One stream for every currency: KES first, then each currency tipped today (no GBP: none was).
    const everyCurrency = async (req: { currency?: string } = {}) => {
      const abort = new AbortController();
      try {
        for await (const res of asWorker(worker).watchDashboard({ ...req, allCurrencies: true }, { signal: abort.signal })) return res;
        throw new Error("the stream ended without a snapshot");
      } finally {
        abort.abort();
      }
    };
    const every = await everyCurrency();
    assert.deepEqual(every.snapshots.map(figures), [[1n, "KES", 200_00n, "KES", 200_00n], [1n, "USD", 5_00n, "USD", 5_00n]]);
    assert.deepEqual(figures(every.snapshot!), figures(every.snapshots[0]!), "snapshot is KES's");
    const both = await refusal(everyCurrency({ currency: "USD" }));
    assert.equal(both.code, Code.InvalidArgument);
    assert.deepEqual(fieldsOf(both), ["currency"]);

    const admin = s.client(AnalyticsAdminService, { subject: randomUUID(), roles: ["admin"] as Role[] });
    const abort = new AbortController();
    const platform = await first(admin.watchPlatformDashboard({ currency: "USD" }, { signal: abort.signal })).finally(() => abort.abort());
    assert.equal(platform.volumeToday?.currency, "USD");
    assert.ok(platform.tipsToday >= 1n && platform.volumeToday!.amountMinor >= 5_00n, "the platform's USD figures hold the USD tip");
    // The platform's every currency in one stream too: KES first, USD with the USD tip, snapshot KES's.
    const platformEvery = async (req: { currency?: string } = {}) => {
      const stop = new AbortController();
      try {
        for await (const res of admin.watchPlatformDashboard({ ...req, allCurrencies: true }, { signal: stop.signal })) return res;
        throw new Error("the stream ended without a snapshot");
      } finally {
        stop.abort();
      }
    };
    const all = await platformEvery();
    assert.deepEqual(all.snapshots.slice(0, 1).map((d) => d.volumeToday?.currency), ["KES"]);
    const platformUsd = all.snapshots.find((d) => d.volumeToday?.currency === "USD");
    assert.ok(platformUsd && platformUsd.tipsToday >= 1n && platformUsd.volumeToday!.amountMinor >= 5_00n, "the platform's USD snapshot holds the USD tip");
    assert.deepEqual(figures(all.snapshot!), figures(all.snapshots[0]!), "snapshot is KES's");
    const platformBoth = await refusal(platformEvery({ currency: "USD" }));
    assert.equal(platformBoth.code, Code.InvalidArgument);
    assert.deepEqual(fieldsOf(platformBoth), ["currency"]);

    for (const bad of [watch("usd"), watch("US"), first(admin.watchPlatformDashboard({ currency: "usd" }))]) {
      const err = await refusal(bad);
      assert.equal(err.code, Code.InvalidArgument);
      assert.deepEqual(fieldsOf(err), ["currency"]);
    }
  });

  test("the earnings and venue exports and the WORKERS and PLATFORM reports: a row per currency, never summed across currencies", async () => {
    const admin = s.client(AnalyticsAdminService, { subject: randomUUID(), roles: ["admin"] as Role[] });
    // A day of its own (41 days back), so the other tests' tips are not in it.
    const day = new Date(Math.floor((Date.now() + EAT) / DAY) * DAY - EAT - 41 * DAY);
    const at = new Date(day.getTime() + 12 * 3_600_000);
    const [workerId, venueId] = [randomUUID(), randomUUID()];
    // A card tip's net is credited in the wallet's currency (KES), as payment's event says.
    const tip = (currency: string, amountMinor: bigint, feeMinor: bigint, net: bigint) => event("ttip.payment.tip_succeeded", TipSucceededSchema, at, {
      tipId: randomUUID(), workerId, venueId, method: currency === "KES" ? PaymentMethod.MPESA : PaymentMethod.CARD, rating: 0,
      amount: { currency, amountMinor }, fee: { currency, amountMinor: feeMinor }, net: kesMinor(net),
    });
    await s.ctx.bus.publish(tip("USD", 12_34n, 62n, 1_500_00n));
    await s.ctx.bus.publish(tip("KES", 500_00n, 15_00n, 485_00n));
    const range = { from: timestampFromDate(day), to: timestampFromDate(new Date(day.getTime() + DAY)) };
    const csvOf = (bytes: Uint8Array) => parseCsv(new TextDecoder().decode(bytes));
    const workers = await eventually("both tips in the WORKERS report", async () => {
      const rows = csvOf((await admin.exportReport({ kind: ReportKind.WORKERS, range })).csv).filter((r) => r[0] === workerId);
      return rows.length >= 2 && rows;
    });
    assert.deepEqual(workers, [[workerId, "1", "50000", "50000", "0", "KES"], [workerId, "1", "1234", "1234", "0", "USD"]]);

    const platform = csvOf((await admin.exportReport({ kind: ReportKind.PLATFORM, range })).csv);
    assert.deepEqual(platform[0], ["figure", "value", "detail", "currency"]);
    assert.deepEqual(platform.filter((r) => ["tips", "volume_minor", "fees_minor"].includes(r[0])), [
      ["tips", "1", "", "KES"], ["volume_minor", "50000", "", "KES"], ["fees_minor", "1500", "", "KES"],
      ["tips", "1", "", "USD"], ["volume_minor", "1234", "", "USD"], ["fees_minor", "62", "", "USD"],
    ]);
    assert.equal(platform.filter((r) => r[0] === "scans").length, 1, "figures of no currency once");

    const mine = csvOf((await asWorker(workerId).exportEarnings({ range, scope: { case: "workerId", value: workerId } })).csv);
    // Each row one currency's money: the USD tip's volume in the USD row, its net (credited in KES) in the KES row's.
    assert.deepEqual(mine.filter((r) => r[0] === "period" && r[1] === "in_range"), [["period", "in_range", "1", "50000", "198500", "KES", "0"], ["period", "in_range", "1", "1234", "0", "USD", "0"]]);
    const { earnings } = await asWorker(workerId).getWorkerEarnings({ range, currency: "KES" });
    assert.deepEqual([earnings!.inRange!.tips, earnings!.inRange!.volume!.amountMinor, earnings!.inRange!.net!.amountMinor], [1n, 500_00n, 1_985_00n]);
    assert.deepEqual(mine.filter((r) => r[0] === "average_tip").map((r) => [r[3], r[5]]), [["50000", "KES"], ["1234", "USD"]]);

    const venue = csvOf((await s.client(AnalyticsService, { subject: randomUUID(), roles: ["admin"] as Role[] }).exportEarnings({ range, scope: { case: "venueId", value: venueId } })).csv);
    assert.deepEqual(venue.filter((r) => r[0] === "series" || r[0] === "staff").map((r) => [r[0], r[2], r[3], r[6]]), [
      ["series", "1", "50000", "KES"], ["staff", "1", "50000", "KES"], ["series", "1", "1234", "USD"], ["staff", "1", "1234", "USD"],
    ]);
    assert.deepEqual(venue.filter((r) => r[0] === "funnel").map((r) => r[1]), ["scanned", "amount_chosen", "payment_started", "paid"], "the funnel once");

    // The venue's screen in the currency asked for (KES by default), naming the currencies it was tipped in.
    const admins = s.client(AnalyticsService, { subject: randomUUID(), roles: ["admin"] as Role[] });
    const screen = async (currency?: string) => {
      const v = await admins.getVenueAnalytics({ venueId, range, granularity: Granularity.DAY, ...(currency ? { currency } : {}) });
      return [v.currencies, v.series.map((p) => [p.tips, p.tipVolume?.currency, p.tipVolume?.amountMinor]), v.workers.map((w) => [w.tips, w.volume?.currency, w.volume?.amountMinor]),
        v.funnel.map((f) => f.count)];
    };
    // The funnel scanned -> amount chosen -> payment started -> paid, no scans here. The M-Pesa tip
    // comes without its tip_created (KES: paid only); a card tip has none (payment sends none for
    // cards): its end counts its amount chosen, so USD shows 1 chosen, 1 started, 1 paid (the
    // version before: paid 1 of 0 chosen).
    assert.deepEqual(await screen(), [["KES", "USD"], [[1n, "KES", 500_00n]], [[1n, "KES", 500_00n]], [0n, 0n, 0n, 1n]]);
    assert.deepEqual(await screen("USD"), [["KES", "USD"], [[1n, "USD", 12_34n]], [[1n, "USD", 12_34n]], [0n, 1n, 1n, 1n]]);

    // GetFunnel and GetWorkerPerformance in the currency asked for, KES by default.
    const funnel = async (currency?: string) =>
      (await admins.getFunnel({ range, scope: { case: "venueId", value: venueId }, ...(currency ? { currency } : {}) })).steps.map((f) => [f.step, f.count, f.ofFirstBps]);
    assert.deepEqual(await funnel("USD"), [["scanned", 0n, 0], ["amount_chosen", 1n, 0], ["payment_started", 1n, 0], ["paid", 1n, 0]]);
    assert.deepEqual(await funnel(), [["scanned", 0n, 0], ["amount_chosen", 0n, 0], ["payment_started", 0n, 0], ["paid", 1n, 0]]);
    const performance = async (currency?: string) => {
      const p = (await admins.getWorkerPerformance({ range, workerId, ...(currency ? { currency } : {}) })).performance!;
      return [p.tips, p.volume?.currency, p.volume?.amountMinor, p.averageTip?.currency, p.averageTip?.amountMinor];
    };
    assert.deepEqual(await performance(), [1n, "KES", 500_00n, "KES", 500_00n]);
    assert.deepEqual(await performance("USD"), [1n, "USD", 12_34n, "USD", 12_34n]);
    assert.deepEqual(await performance("EUR"), [0n, "EUR", 0n, "EUR", 0n], "a served currency without tips is zero");

    // A malformed code (protovalidate) or one the platform does not serve: INVALID_ARGUMENT naming currency.
    for (const bad of [
      admins.getVenueAnalytics({ venueId, range, granularity: Granularity.DAY, currency: "usd" }),
      admins.getVenueAnalytics({ venueId, range, granularity: Granularity.DAY, currency: "XYZ" }),
      admins.getFunnel({ range, scope: { case: "venueId", value: venueId }, currency: "usd" }),
      admins.getFunnel({ range, scope: { case: "venueId", value: venueId }, currency: "JPY" }),
      admins.getWorkerPerformance({ range, workerId, currency: "US" }),
      admins.getWorkerPerformance({ range, workerId, currency: "XYZ" }),
    ]) {
      const err = await refusal(bad);
      assert.equal(err.code, Code.InvalidArgument);
      assert.deepEqual(fieldsOf(err), ["currency"]);
    }
  });

  test("card money going back (refunds, a refund refused, a chargeback) comes off the worker's earnings, the venue's volume and the platform's revenue when it goes, in each currency; the tips still count", async () => {
    const admin = s.client(AnalyticsAdminService, { subject: randomUUID(), roles: ["admin"] as Role[] });
    // A day of its own (42 days back), so the other tests' tips are not in it.
    const day = new Date(Math.floor((Date.now() + EAT) / DAY) * DAY - EAT - 42 * DAY);
    const hour = (h: number) => new Date(day.getTime() + h * 3_600_000);
    const [workerId, venueId, usdTip, kesTip] = [randomUUID(), randomUUID(), randomUUID(), randomUUID()];
    const usd = (amountMinor: bigint) => ({ currency: "USD", amountMinor });
    const paid = (tipId: string, amount: { currency: string; amountMinor: bigint }, fee: bigint, net: bigint) => event("ttip.payment.tip_succeeded", TipSucceededSchema, hour(9), {
      tipId, workerId, venueId, method: PaymentMethod.CARD, amount, fee: { currency: amount.currency, amountMinor: fee }, net: kesMinor(net), rating: 5,
    });
    const reversed = (tipId: string, at: number, kind: TipReversalKind, amount: { currency: string; amountMinor: bigint }, fee: bigint, net: bigint) =>
      event("ttip.payment.tip_reversed", TipReversedSchema, hour(at), {
        tipId, workerId, venueId, method: PaymentMethod.CARD, kind, reversalId: randomUUID(), amount, fee: { currency: amount.currency, amountMinor: fee }, net: kesMinor(net),
      });
    // USD 10.00 (fee 0.50) credited KES 1,151.17: USD 4.00 refunded, that refund refused (given back), refunded again; USD 6.00 stays.
    await s.ctx.bus.publish(paid(usdTip, usd(10_00n), 50n, 1_151_17n));
    await s.ctx.bus.publish(reversed(usdTip, 10, TipReversalKind.REFUND, usd(4_00n), 20n, 460_46n));
    await s.ctx.bus.publish(reversed(usdTip, 11, TipReversalKind.REFUND_REFUSED, usd(-4_00n), -20n, -460_46n));
    await s.ctx.bus.publish(reversed(usdTip, 12, TipReversalKind.REFUND, usd(4_00n), 20n, 460_46n));
    // KES 500.00 (fee 15.00, net 485.00), all of it charged back.
    await s.ctx.bus.publish(paid(kesTip, kesMinor(500_00n), 15_00n, 485_00n));
    await s.ctx.bus.publish(reversed(kesTip, 13, TipReversalKind.CHARGEBACK, kesMinor(500_00n), 15_00n, 485_00n));
    const range = { from: timestampFromDate(day), to: timestampFromDate(new Date(day.getTime() + DAY)) };
    const earnings = async (currency: string) => {
      const p = (await asWorker(workerId).getWorkerEarnings({ range, currency })).earnings!.inRange!;
      return [p.tips, p.volume?.amountMinor, p.net?.amountMinor];
    };
    // The USD tip's net is the KES row's: KES 1,151.17 less 460.46.
    await eventually("every reversal counted", async () => (await earnings("KES"))[2] === 690_71n);
    assert.deepEqual(await earnings("KES"), [1n, 0n, 690_71n], "the charged-back tip still counts, its money gone");
    assert.deepEqual(await earnings("USD"), [1n, 6_00n, 0n]);

    const revenue = async (currency: string) =>
      (await admin.getRevenueMetrics({ range, granularity: Granularity.HOUR, currency })).series.map((p) => [p.periodStart?.seconds, p.tips, p.tipVolume?.amountMinor, p.platformFees?.amountMinor]);
    const at = (h: number) => BigInt(hour(h).getTime() / 1000);
    // Each reversal in its own hour, when the money went: a period holding only a refund shows it (the version before dropped hours without a tip).
    assert.deepEqual(await revenue("USD"), [[at(9), 1n, 10_00n, 50n], [at(10), 0n, -4_00n, -20n], [at(11), 0n, 4_00n, 20n], [at(12), 0n, -4_00n, -20n]]);
    assert.deepEqual(await revenue("KES"), [[at(9), 1n, 500_00n, 15_00n], [at(13), 0n, -500_00n, -15_00n]]);
    // What went back to cards, beside the net volume: USD 4.00 refunded (one refund refused), KES 500.00 charged back.
    const summary = async (currency: string) => {
      const s = (await admin.getPlatformSummary({ range, currency })).summary!;
      return [s.tips, s.volume?.amountMinor, s.fees?.amountMinor, s.refunded?.amountMinor, s.chargedBack?.amountMinor];
    };
    assert.deepEqual(await summary("USD"), [1n, 6_00n, 30n, 4_00n, 0n]);
    assert.deepEqual(await summary("KES"), [1n, 0n, 0n, 0n, 500_00n]);
    const platform = parseCsv(new TextDecoder().decode((await admin.exportReport({ kind: ReportKind.PLATFORM, range })).csv));
    assert.deepEqual(platform.filter((r) => r[0] === "refunded_minor" || r[0] === "charged_back_minor"), [
      ["refunded_minor", "0", "", "KES"], ["charged_back_minor", "50000", "", "KES"], ["refunded_minor", "400", "", "USD"], ["charged_back_minor", "0", "", "USD"],
    ]);

    const venue = await s.client(AnalyticsService, { subject: randomUUID(), roles: ["admin"] as Role[] }).getVenueAnalytics({ venueId, range, granularity: Granularity.DAY, currency: "USD" });
    assert.deepEqual(venue.workers.map((w) => [w.tips, w.volume?.amountMinor]), [[1n, 6_00n]]);
    const csvOf = (bytes: Uint8Array) => parseCsv(new TextDecoder().decode(bytes));
    const workers = csvOf((await admin.exportReport({ kind: ReportKind.WORKERS, range })).csv).filter((r) => r[0] === workerId);
    assert.deepEqual(workers.map((r) => [r[1], r[2], r.at(-1)]), [["1", "0", "KES"], ["1", "600", "USD"]]);
  });

  test("a range not on the hour: earnings count the hours that start in it, as performance does", async () => {
    const workerId = randomUUID();
    const hour = Math.floor((Date.now() - 2 * DAY) / 3_600_000) * 3_600_000;
    const at = (minutes: number) => new Date(hour + minutes * 60_000);
    await s.ctx.bus.publish(event("ttip.payment.tip_succeeded", TipSucceededSchema, at(15), {
      tipId: randomUUID(), workerId, method: PaymentMethod.MPESA, amount: kesMinor(300_00n), fee: kesMinor(9_00n), net: kesMinor(291_00n),
    }));
    const admin = s.client(AnalyticsService, { subject: randomUUID(), roles: ["admin"] as Role[] });
    const figures = async (from: number, to: number) => {
      const range = { from: timestampFromDate(at(from)), to: timestampFromDate(at(to)) };
      const [earnings, performance] = await Promise.all([admin.getWorkerEarnings({ range, workerId }), admin.getWorkerPerformance({ range, workerId })]);
      return [earnings.earnings!.inRange!.tips, performance.performance!.tips];
    };
    await eventually("the tip counted", async () => (await figures(0, 60))[1] === 1n);
    // Its hour starts at :00, inside [-30, 20) and not inside [30, 120). Before, earnings widened 30 down to 0 and counted it.
    assert.deepEqual(await figures(-30, 20), [1n, 1n]);
    assert.deepEqual(await figures(30, 120), [0n, 0n]);
  });

  test("access: signed out and workers at the admin service are refused before the handler; another's figures only for their venue's manager, as qr says", async () => {
    assert.equal((await refusal(s.client(AnalyticsService).getWorkerEarnings({ range: lastDay() }))).code, Code.Unauthenticated);
    const worker = randomUUID();
    assert.equal((await refusal(s.client(AnalyticsAdminService, { subject: worker, roles: ["worker"] }).getPlatformSummary({ range: lastDay() }))).code, Code.PermissionDenied);
    const someoneElse = await refusal(asWorker(worker).getWorkerEarnings({ range: lastDay(), workerId: randomUUID() }));
    assert.equal(someoneElse.code, Code.PermissionDenied);
    assert.match(someoneElse.rawMessage, /^worker_id: /);
    assert.equal((await refusal(asWorker(worker).getVenueAnalytics({ venueId: randomUUID(), range: lastDay(), granularity: Granularity.DAY }))).code, Code.PermissionDenied);

    // qr, in this process, keeps who manages a venue: its manager is let in, another manager is not.
    const venueId = randomUUID();
    const managerId = randomUUID();
    await createClient(QrService, s.ctx.peers("qr")).putProfile({ ownerKind: OwnerKind.VENUE, ownerId: venueId, displayName: "Java House" }, { headers: callerHeaders(managerId, "venue_manager") });
    const manager = (subject: string) => s.client(AnalyticsService, { subject, roles: ["venue_manager"] as Role[] });
    const seen = await manager(managerId).getVenueAnalytics({ venueId, range: lastDay(), granularity: Granularity.DAY });
    assert.equal(seen.funnel[0]?.count ?? 0n, 0n);
    const other = await refusal(manager(randomUUID()).getVenueAnalytics({ venueId, range: lastDay(), granularity: Granularity.DAY }));
    assert.equal(other.code, Code.PermissionDenied);
    assert.match(other.rawMessage, /^venue_id: /);

    // A manager removed while watching the venue's live figures: the stream ends refused once its access is asked again
    // (before, it went on for the stream's hour).
    const abort = new AbortController();
    const stream = manager(managerId).watchDashboard({ venueId }, { signal: abort.signal })[Symbol.asyncIterator]();
    try {
      assert.ok((await stream.next()).value?.snapshot, "the first snapshot");
      await s.ctx.pool.query("DELETE FROM qr.venue_managers WHERE venue_id = $1 AND manager_id = $2", [venueId, managerId]);
      clock.advance(61_000);
      // Asked again at its next read (one poll, 2 s); a stream still open after 15 s would have run on.
      const ended = await Promise.race([stream.next().then(() => undefined, (e: unknown) => ConnectError.from(e)), sleep(15_000).then(() => "still streaming")]);
      assert.ok(ended instanceof ConnectError && ended.code === Code.PermissionDenied, String(ended));
    } finally {
      abort.abort();
    }
  });

  test("a tip's event delivered again is counted once (the consumer's inbox, past the bus's duplicate window)", async () => {
    const worker = randomUUID();
    const tip = event("ttip.payment.tip_succeeded", TipSucceededSchema, new Date(), {
      tipId: randomUUID(), workerId: worker, amount: kesMinor(15_000n), fee: kesMinor(700n), net: kesMinor(14_300n), method: PaymentMethod.MPESA, mpesaReceipt: "RKT1", rating: 0,
    });
    const counted = async () => {
      const { earnings: e } = await asWorker(worker).getWorkerEarnings({ range: lastDay() });
      return [e?.inRange?.tips, e?.inRange?.volume?.amountMinor];
    };
    await s.ctx.bus.publish(tip);
    await eventually("the tip counted", async () => (await counted())[0] === 1n);
    // Past the window the bus stores the copy and delivers it: only the inbox stands between it and a second count.
    clock.advance(DUPLICATE_WINDOW_MS + 1_000);
    const held = () => (s.ctx.bus as InProcessBus).held.messages;
    const before = held();
    await s.ctx.bus.publish(tip);
    assert.equal(held(), before + 1, "the bus stored the copy");
    await s.ctx.bus.publish(event("ttip.payment.tip_succeeded", TipSucceededSchema, new Date(), {
      tipId: randomUUID(), workerId: worker, amount: kesMinor(1_000n), fee: kesMinor(50n), net: kesMinor(950n), method: PaymentMethod.MPESA, mpesaReceipt: "RKT2", rating: 0,
    }));
    // The later tip is counted after the copy (one consumer, in order): then the copy has been handled.
    await eventually("the later tip counted", async () => (await counted())[0] === 2n);
    assert.deepEqual(await counted(), [2n, 16_000n]);
  });

  test("the live path decodes each event once: its figures, read to know whether it adds anything, are the ones applied", async () => {
    // The consumers on a bus of their own whose deliveries count the reads of each event's bytes.
    const reads = new Map<string, number>();
    class CountingBus extends InProcessBus {
      override subscribeBatches(options: BatchSubscribeOptions) {
        const counted = (m: DeliveredMessage): DeliveredMessage => {
          const { data, ...rest } = m;
          return { ...rest, get data() { reads.set(m.id, (reads.get(m.id) ?? 0) + 1); return data; } };
        };
        return super.subscribeBatches({ ...options, handler: (batch) => options.handler(batch.map(counted)) });
      }
    }
    const bus = new CountingBus(s.ctx.logger);
    const stop = await startConsumers({ ...s.ctx, bus, metrics: new Metrics() });
    try {
      const worker = randomUUID();
      const tips = [1, 2, 3].map((n) => event("ttip.payment.tip_succeeded", TipSucceededSchema, new Date(), {
        tipId: randomUUID(), workerId: worker, amount: kesMinor(1_000n * BigInt(n)), fee: kesMinor(0n), net: kesMinor(1_000n * BigInt(n)), method: PaymentMethod.MPESA, mpesaReceipt: `RKT${n}`, rating: 0,
      }));
      const nothing = event("ttip.notification.delivery_updated", DeliveryUpdatedSchema, new Date(), { deliveryId: randomUUID(), userId: worker, channel: "push", status: "sent", templateKey: "TIP_RECEIVED", attempt: 1 });
      for (const m of [...tips, nothing]) await bus.publish(m);
      await eventually("the tips applied", async () => {
        const { rows } = await s.ctx.pool.query<{ n: number }>("SELECT count(*)::int AS n FROM analytics.inbox WHERE event_id = ANY($1::uuid[])", [tips.map((m) => m.id)]);
        return rows[0].n === tips.length;
      });
      await eventually("the update that adds nothing handled", () => reads.has(nothing.id));
      assert.deepEqual([...tips, nothing].map((m) => reads.get(m.id)), [1, 1, 1, 1], "each event's bytes read once");
    } finally {
      await stop();
      await bus.close();
    }
  });

  test("a batch whose commit fails is applied again and counted once: the ingest metrics count what committed", async () => {
    // The first commit of a tip's inbox row fails (a deferred trigger; a sequence counts its calls
    // outside any transaction), as a deadlock or a lost connection would fail it: the batch rolls
    // back and the consumer applies it again, split in halves.
    const pool = s.ctx.pool;
    await pool.query(`CREATE SEQUENCE public.inbox_commits;
      CREATE FUNCTION public.fail_first_commit() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN IF nextval('public.inbox_commits') = 1 THEN RAISE EXCEPTION 'the first commit fails'; END IF; RETURN NULL; END $$;
      CREATE CONSTRAINT TRIGGER fail_first_commit AFTER INSERT ON analytics.inbox DEFERRABLE INITIALLY DEFERRED
        FOR EACH ROW WHEN (NEW.subject = 'ttip.payment.tip_succeeded') EXECUTE FUNCTION public.fail_first_commit()`);
    const bus = new InProcessBus(s.ctx.logger, 10);
    const metrics = new Metrics();
    const stop = await startConsumers({ ...s.ctx, bus, metrics });
    try {
      const worker = randomUUID();
      const tips = [1, 2, 3, 4].map((n) => event("ttip.payment.tip_succeeded", TipSucceededSchema, new Date(), {
        tipId: randomUUID(), workerId: worker, amount: kesMinor(1_000n), fee: kesMinor(0n), net: kesMinor(1_000n), method: PaymentMethod.MPESA, mpesaReceipt: `RKF${n}`, rating: 0,
      }));
      for (const m of tips) await bus.publish(m);
      await eventually("the tips applied", async () => {
        const { rows } = await pool.query<{ n: number }>("SELECT count(*)::int AS n FROM analytics.inbox WHERE event_id = ANY($1::uuid[])", [tips.map((m) => m.id)]);
        return rows[0].n === tips.length;
      });
      const { rows: [calls] } = await pool.query<{ n: string }>("SELECT last_value::text AS n FROM public.inbox_commits");
      assert.ok(Number(calls.n) > tips.length, `a commit failed and the batch was applied again (${calls.n} inbox rows checked)`);
      const text = await metrics.registry.metrics();
      const value = (re: RegExp) => Number(re.exec(text)?.[1] ?? NaN);
      assert.deepEqual(
        [
          value(/^ttip_analytics_events_ingested_total\{subject="ttip.payment.tip_succeeded"\} (\d+)$/m),
          value(/^ttip_analytics_event_lag_seconds_count (\d+)$/m),
          value(/^ttip_inbox_events_total\{consumer="analytics-payment",outcome="applied"\} (\d+)$/m),
        ],
        [tips.length, tips.length, tips.length],
        "ingested, lag observations and inbox applied: each tip once",
      );
      const { earnings: e } = await asWorker(worker).getWorkerEarnings({ range: lastDay() });
      assert.equal(e?.inRange?.tips, BigInt(tips.length), "and the figures once");
    } finally {
      await stop();
      await bus.close();
      await pool.query("DROP TRIGGER fail_first_commit ON analytics.inbox; DROP FUNCTION public.fail_first_commit(); DROP SEQUENCE public.inbox_commits");
    }
  });

  test("events arriving while a durable waits out its batch interval are applied in one batch, each once", async () => {
    // The payment durable's batches, as the consumers get them.
    const batches: string[][] = [];
    class RecordingBus extends InProcessBus {
      override subscribeBatches(options: BatchSubscribeOptions) {
        const record = (batch: DeliveredMessage[]) => {
          if (options.durable === "analytics-payment") batches.push(batch.map((m) => m.id));
          return options.handler(batch);
        };
        return super.subscribeBatches({ ...options, handler: record });
      }
    }
    const bus = new RecordingBus(s.ctx.logger);
    // Long enough that the later tips, published one by one, all come within it, on a loaded machine too.
    const stop = await startConsumers({ ...s.ctx, bus, metrics: new Metrics() }, undefined, { batchIntervalMs: 4_000 });
    try {
      const worker = randomUUID();
      const tips = [1, 2, 3, 4, 5].map((n) => event("ttip.payment.tip_succeeded", TipSucceededSchema, new Date(), {
        tipId: randomUUID(), workerId: worker, amount: kesMinor(1_000n), fee: kesMinor(0n), net: kesMinor(1_000n), method: PaymentMethod.MPESA, mpesaReceipt: `RKP${n}`, rating: 0,
      }));
      const applied = async (ids: string[]) =>
        (await s.ctx.pool.query<{ n: number }>("SELECT count(*)::int AS n FROM analytics.inbox WHERE event_id = ANY($1::uuid[])", [ids])).rows[0].n === ids.length;
      await bus.publish(tips[0]);
      await eventually("the first tip applied", () => applied([tips[0].id]));
      for (const m of tips.slice(1)) {
        await bus.publish(m);
        await new Promise((r) => setTimeout(r, 20));
      }
      await eventually("every tip applied", () => applied(tips.map((m) => m.id)), 10_000);
      assert.deepEqual(batches, [[tips[0].id], tips.slice(1).map((m) => m.id)], "the first alone, the four after it together");
      const { earnings: e } = await asWorker(worker).getWorkerEarnings({ range: lastDay() });
      assert.equal(e?.inRange?.tips, BigInt(tips.length));
    } finally {
      await stop();
      await bus.close();
    }
  });
});
