// Generated event streams for analytics' tests and benchmark: what payment,
// wallet, qr, auth and notification publish, at chosen times.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { type DescMessage } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  DeliveryUpdatedSchema,
  PaymentMethod,
  PayoutFailedSchema,
  PayoutHeldSchema,
  PayoutSucceededSchema,
  QrScannedSchema,
  TipCreatedSchema,
  TipFailedSchema,
  TipSucceededSchema,
  UserRegisteredSchema,
  VenueDistributionReversedSchema,
  VenueShareAllocatedSchema,
} from "@ttip/proto/ttip/events/v1/events_pb.js";
import { buildEvent, type BusMessage, type EventInit } from "@ttip/runtime";
import { kesMinor } from "@ttip/runtime/testing";

/**
 * The event as its producer builds it, happened at `at`. The subject is the one the test
 * expects: a message that declares another one fails here, not as a missing figure.
 */
export function event<D extends DescMessage>(subject: string, schema: D, at: Date, init: EventInit<D>): BusMessage {
  const message = buildEvent(subject.split(".")[1], schema, init, "", at);
  assert.equal(message.subject, subject, `${schema.typeName} declares its subject`);
  return message;
}


/** What the stream should add up to, computed independently of analytics. */
export interface Expected {
  scans: number;
  created: number;
  pushRefused: number;
  succeeded: number;
  failed: number;
  amount: bigint;
  fee: bigint;
  net: bigint;
  failuresByCode: Map<string, number>;
  payoutsSucceeded: number;
  payoutsFailed: number;
  payoutMinor: bigint;
  payoutLatenciesMs: number[];
  newWorkers: number;
  smsSent: number;
  perWorker: Map<string, { tips: number; amount: bigint; net: bigint; pool: bigint; ratingSum: number; ratingCount: number; byHour: number[] }>;
  /** Pool shares paid, less reversed distributions. */
  pooled: bigint;
  perVenue: Map<string, { scans: number; created: number; pushRefused: number; succeeded: number; amount: bigint }>;
  activeVenues: Set<string>;
}

export interface Cast {
  workers: string[];
  venues: string[];
  /** Each worker's QR code (at their venue). */
  codes: Map<string, string>;
  venueOf: Map<string, string>;
}

export function cast(workers: number, venues: number): Cast {
  const c: Cast = { workers: [], venues: [], codes: new Map(), venueOf: new Map() };
  for (let v = 0; v < venues; v++) c.venues.push(randomUUID());
  for (let w = 0; w < workers; w++) {
    const id = randomUUID();
    c.workers.push(id);
    c.codes.set(id, randomUUID());
    c.venueOf.set(id, c.venues[w % venues]);
  }
  return c;
}

/** A small deterministic generator, so a failing run can be repeated. */
export function rng(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

const FAILURES: [string, string][] = [
  ["1032", "You cancelled the payment on your phone."],
  ["1", "Your M-Pesa balance was too low."],
  ["2001", "The M-Pesa PIN was wrong."],
  ["expired", "We did not hear back from M-Pesa in time."],
];

/**
 * One day of tips (scans, quotes, pushes, successes, failures with Daraja's
 * codes, refused pushes), payouts (held then paid or failed), sign-ups and
 * SMS deliveries, spread over the day starting at `dayStart` (or over its
 * first `spanMs`: the bench's live events, within an hour).
 */
export function generateDay(c: Cast, dayStart: Date, tips: number, seed: number, spanMs = 86_399_000): { events: BusMessage[]; expected: Expected } {
  const rand = rng(seed);
  const events: BusMessage[] = [];
  const e: Expected = {
    scans: 0, created: 0, pushRefused: 0, succeeded: 0, failed: 0, amount: 0n, fee: 0n, net: 0n, failuresByCode: new Map(),
    payoutsSucceeded: 0, payoutsFailed: 0, payoutMinor: 0n, payoutLatenciesMs: [], newWorkers: 0, smsSent: 0,
    perWorker: new Map(), perVenue: new Map(), activeVenues: new Set(), pooled: 0n,
  };
  const at = () => new Date(dayStart.getTime() + Math.floor(rand() * spanMs));
  const venueFig = (v: string) => {
    let f = e.perVenue.get(v);
    if (!f) e.perVenue.set(v, (f = { scans: 0, created: 0, pushRefused: 0, succeeded: 0, amount: 0n }));
    return f;
  };
  for (const w of c.workers) {
    e.perWorker.set(w, { tips: 0, amount: 0n, net: 0n, pool: 0n, ratingSum: 0, ratingCount: 0, byHour: Array(24).fill(0) });
    events.push(event("ttip.auth.user_registered", UserRegisteredSchema, dayStart, { userId: w, role: "worker", locale: rand() < 0.5 ? "sw" : "en" }));
    e.newWorkers++;
  }
  events.push(event("ttip.auth.user_registered", UserRegisteredSchema, dayStart, { userId: randomUUID(), role: "customer", locale: "en" }));
  for (let i = 0; i < tips; i++) {
    const worker = c.workers[Math.floor(rand() * c.workers.length)];
    const venue = c.venueOf.get(worker)!;
    const qr = c.codes.get(worker)!;
    const t = at();
    const tipId = randomUUID();
    const vf = venueFig(venue);
    events.push(event("ttip.qr.scanned", QrScannedSchema, t, { qrCodeId: qr, workerId: worker, venueId: venue, shortCode: "ABC" }));
    e.scans++;
    vf.scans++;
    if (rand() < 0.15) continue; // scanned, walked away
    const amount = BigInt(50 + Math.floor(rand() * 20) * 50) * 100n;
    events.push(event("ttip.payment.tip_created", TipCreatedSchema, t, { tipId, workerId: worker, venueId: venue, qrCodeId: qr, amount: kesMinor(amount), method: PaymentMethod.MPESA }));
    e.created++;
    vf.created++;
    const done = new Date(t.getTime() + 500);
    const roll = rand();
    if (roll < 0.7) {
      // Some are paid after payment declared them expired (a late callback): announced failed, then paid, one attempt.
      const late = rand() < 0.05 && done.getTime() + 11 * 60_000 < dayStart.getTime() + spanMs;
      const paidAt = late ? new Date(done.getTime() + 60_000 + Math.floor(rand() * 600_000)) : done;
      if (late) {
        events.push(event("ttip.payment.tip_failed", TipFailedSchema, done, {
          tipId, workerId: worker, venueId: venue, qrCodeId: qr, amount: kesMinor(amount), method: PaymentMethod.MPESA, resultCode: "expired", reason: "No answer in time",
        }));
      }
      const fee = (amount * 3n) / 100n;
      const rating = rand() < 0.6 ? 1 + Math.floor(rand() * 5) : 0;
      events.push(event("ttip.payment.tip_succeeded", TipSucceededSchema, paidAt, {
        tipId, workerId: worker, venueId: venue, qrCodeId: qr, amount: kesMinor(amount), fee: kesMinor(fee), net: kesMinor(amount - fee),
        method: PaymentMethod.MPESA, mpesaReceipt: `R${i}`, rating,
        ...(late ? { replacedFailureAt: timestampFromDate(done), replacedFailureCode: "expired" } : {}),
      }));
      e.succeeded++;
      e.amount += amount;
      e.fee += fee;
      e.net += amount - fee;
      vf.succeeded++;
      vf.amount += amount;
      e.activeVenues.add(venue);
      const wf = e.perWorker.get(worker)!;
      wf.tips++;
      wf.amount += amount;
      wf.net += amount - fee;
      if (rating) {
        wf.ratingSum += rating;
        wf.ratingCount++;
      }
      wf.byHour[new Date(paidAt.getTime() + 3 * 3_600_000).getUTCHours()]++;
      if (rand() < 0.8) {
        events.push(event("ttip.notification.delivery_updated", DeliveryUpdatedSchema, paidAt, { deliveryId: randomUUID(), userId: worker, channel: "sms", status: "sent", templateKey: "TIP_RECEIVED", attempt: 1 }));
        e.smsSent++;
      }
      if (rand() < 0.3) {
        const payoutId = randomUUID();
        const latency = 1_000 + Math.floor(rand() * 20_000);
        events.push(event("ttip.wallet.payout_held", PayoutHeldSchema, paidAt, { holdId: randomUUID(), payoutId, ownerId: worker, amount: kesMinor(amount - fee) }));
        const end = new Date(paidAt.getTime() + latency);
        if (rand() < 0.85) {
          events.push(event("ttip.payment.payout_succeeded", PayoutSucceededSchema, end, { payoutId, workerId: worker, amount: kesMinor(amount - fee), transferFee: kesMinor(0n), mpesaReceipt: `P${i}` }));
          e.payoutsSucceeded++;
          e.payoutMinor += amount - fee;
        } else {
          events.push(event("ttip.payment.payout_failed", PayoutFailedSchema, end, { payoutId, workerId: worker, amount: kesMinor(amount - fee), resultCode: "2001", reason: "The initiator is not allowed" }));
          e.payoutsFailed++;
        }
        e.payoutLatenciesMs.push(latency);
      }
    } else {
      const refused = roll > 0.95;
      const [code, reason] = refused ? ["500.001.1001", "M-Pesa is busy; try again in a minute."] : FAILURES[Math.floor(rand() * FAILURES.length)];
      events.push(event("ttip.payment.tip_failed", TipFailedSchema, done, { tipId, workerId: worker, venueId: venue, qrCodeId: qr, amount: kesMinor(amount), method: PaymentMethod.MPESA, resultCode: code, reason, pushRefused: refused }));
      e.failed++;
      e.failuresByCode.set(code, (e.failuresByCode.get(code) ?? 0) + 1);
      if (refused) {
        e.pushRefused++;
        vf.pushRefused++;
      }
    }
  }
  // Each venue's pool is distributed to its staff at the end of the day; the last venue's is then reversed.
  const close = new Date(dayStart.getTime() + Math.min(86_000_000, spanMs));
  for (const [v, venue] of c.venues.entries()) {
    const distributionId = randomUUID();
    let total = 0n;
    const shares: { memberId: string; workerId: string; amount: ReturnType<typeof kesMinor> }[] = [];
    for (const w of c.workers.filter((x) => c.venueOf.get(x) === venue)) {
      const share = BigInt(100 + Math.floor(rand() * 900)) * 100n;
      const memberId = randomUUID();
      events.push(event("ttip.venue.share_allocated", VenueShareAllocatedSchema, close, { venueId: venue, distributionId, memberId, workerId: w, amount: kesMinor(share) }));
      shares.push({ memberId, workerId: w, amount: kesMinor(share) });
      e.perWorker.get(w)!.pool += share;
      total += share;
    }
    e.pooled += total;
    if (v === c.venues.length - 1) {
      // Each share is taken back from its worker: the period may be split again, and a worker kept both shares.
      events.push(event("ttip.venue.distribution_reversed", VenueDistributionReversedSchema, new Date(close.getTime() + 60_000), { venueId: venue, distributionId, amount: kesMinor(total), reason: "wrong split", shares }));
      for (const x of shares) e.perWorker.get(x.workerId)!.pool -= x.amount.amountMinor;
      e.pooled -= total;
    }
  }
  return { events, expected: e };
}

/** Nearest-rank style percentile matching PostgreSQL's percentile_cont (linear interpolation). */
export function percentileCont(values: number[], p: number): number {
  if (!values.length) return 0;
  const s = [...values].sort((a, b) => a - b);
  const x = p * (s.length - 1);
  const lo = Math.floor(x);
  const hi = Math.ceil(x);
  return s[lo] + (s[hi] - s[lo]) * (x - lo);
}
