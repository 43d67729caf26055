// The per-tip counts and observations of payment (tips by status and method, amounts, callback to credit),
// qr (cache lookups by entry and result), notification (deliveries by channel, provider and status) and
// analytics (events ingested by subject), against their yardstick in the same process: prom-client's
// Counter.inc and Histogram.observe with the label set (validated and hashed on every call, as the
// services did) and the same calls on Metrics.counterFamily / histogramFamily (each label set's series
// found by its values; counts added to the counter at a scrape). Alternated by round; a scrape ends
// each round (the families' flush is in the figures) and both scrapes' values are checked equal.
// Prints CPU nanoseconds per tip's worth of calls (11: what one tip makes) and the ratio to the yardstick.
//   node --max-semi-space-size=32 --import tsx bench/metric-families.ts [tips per round=200000] [rounds=6]
import { strictEqual } from "node:assert/strict";
import { Metrics } from "@ttip/runtime";
import { compareRounds, type Round } from "./alternated.js";

const perRound = Number(process.argv[2] ?? 200_000);
const rounds = Number(process.argv[3] ?? 6);
const AMOUNT_BOUNDS = [10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 50_000];
const LATENCY_BOUNDS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];

interface Way {
  tips: { inc(labels: { status: string; method: string }): void };
  amounts: { observe(labels: { method: string }, v: number): void };
  latency: { observe(labels: { method: string }, v: number): void };
  cache: { inc(labels: { entry: string; result: string }): void };
  deliveries: { inc(labels: { channel: string; provider: string; status: string }): void };
  ingested: { inc(labels: { subject: string }, n: number): void };
}

/** One registry per way, so each scrape reads only its own figures. */
function before(m: Metrics): Way {
  return {
    tips: m.counter("ttip_payment_tips_total", "t", ["status", "method"]),
    amounts: m.histogram("ttip_payment_tip_amount_kes", "a", ["method"], AMOUNT_BOUNDS),
    latency: m.histogram("ttip_payment_callback_to_credit_seconds", "l", ["method"], LATENCY_BOUNDS),
    cache: m.counter("ttip_qr_cache_lookups_total", "c", ["entry", "result"]),
    deliveries: m.counter("ttip_notification_deliveries_total", "d", ["channel", "provider", "status"]),
    ingested: m.counter("ttip_analytics_events_ingested_total", "i", ["subject"]),
  };
}
function families(m: Metrics): Way {
  return {
    tips: m.counterFamily("ttip_payment_tips_total", "t", ["status", "method"]),
    amounts: m.histogramFamily("ttip_payment_tip_amount_kes", "a", ["method"], AMOUNT_BOUNDS),
    latency: m.histogramFamily("ttip_payment_callback_to_credit_seconds", "l", ["method"], LATENCY_BOUNDS),
    cache: m.counterFamily("ttip_qr_cache_lookups_total", "c", ["entry", "result"]),
    deliveries: m.counterFamily("ttip_notification_deliveries_total", "d", ["channel", "provider", "status"]),
    ingested: m.counterFamily("ttip_analytics_events_ingested_total", "i", ["subject"]),
  };
}

/** What one tip counts: created and credited, three cache reads (code, two profiles), one SMS sent, three events ingested. */
function tip(w: Way, i: number): void {
  w.tips.inc({ status: "created", method: "mpesa" });
  w.tips.inc({ status: i % 50 ? "succeeded" : "held", method: "mpesa" });
  w.amounts.observe({ method: "mpesa" }, 50 + (i % 997));
  w.latency.observe({ method: "mpesa" }, (i % 300) / 1000);
  w.cache.inc({ entry: "code", result: i % 20 ? "hit" : "miss" });
  w.cache.inc({ entry: "profile", result: "hit" });
  w.cache.inc({ entry: "profile", result: i % 30 ? "hit" : "miss" });
  w.deliveries.inc({ channel: "sms", provider: i % 10 ? "africastalking" : "twilio", status: "sent" });
  w.ingested.inc({ subject: "ttip.payment.tip_succeeded" }, 1);
  w.ingested.inc({ subject: "ttip.wallet.entry_posted" }, 1);
  w.ingested.inc({ subject: "ttip.notification.delivery_updated" }, 1);
}

const registries = { before: new Metrics(), families: new Metrics() };

/** A round of tips' calls, a scrape included. */
const round = (way: Way, m: Metrics) => async (tips: number) => {
  for (let i = 0; i < tips; i++) tip(way, i);
  await m.registry.metrics();
};

const ways: [[string, Round], [string, Round]] = [
  ["prom-client, labels per call (before)", round(before(registries.before), registries.before)],
  ["counterFamily / histogramFamily", round(families(registries.families), registries.families)],
];

const scrapeLines = async (m: Metrics) =>
  (await m.registry.metrics()).split("\n").filter((l) => /^ttip_/.test(l)).sort().join("\n");
await compareRounds(ways, perRound, rounds, "tip (11 calls)");
strictEqual(await scrapeLines(registries.families), await scrapeLines(registries.before), "both ways scrape the same figures");
