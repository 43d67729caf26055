// What each event adds to the rollups. Pure: an event's bytes in, figures out,
// so the live consumer and the replay compute exactly the same thing.
import type { DescMessage, MessageShape } from "@bufbuild/protobuf";
import { fromBinary } from "@bufbuild/protobuf";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import {
  DeliveryUpdatedSchema,
  PaymentMethod,
  PayoutFailedSchema,
  PayoutHeldSchema,
  PayoutSucceededSchema,
  QrScannedSchema,
  TipCreatedSchema,
  TipFailedSchema,
  TipReversedSchema,
  TipSucceededSchema,
  UserRegisteredSchema,
  VenueDistributionReversedSchema,
  VenueShareAllocatedSchema,
  type EventMeta,
} from "@ttip/proto/ttip/events/v1/events_pb.js";
import { isUuid, reversalCode, subjectMatches, subjectOf } from "@ttip/runtime";

/** Additive figures of a rollup row, in column order. */
export const MEASURES = [
  "scans",
  "created",
  "push_refused",
  "succeeded",
  "failed",
  "amount_minor",
  "fee_minor",
  "net_minor",
  "rating_sum",
  "rating_count",
  "rated_1",
  "rated_2",
  "rated_3",
  "rated_4",
  "rated_5",
  "payouts_succeeded",
  "payouts_failed",
  "payout_minor",
  "payout_fee_minor",
  "pooled_minor",
  "registrations",
  "notifications",
] as const;
export type Measure = (typeof MEASURES)[number];
export type Measures = Partial<Record<Measure, bigint>>;

export enum Dim {
  Platform = 1,
  Worker = 2,
  Venue = 3,
  QrCode = 4,
  VenueStaff = 5,
  VenueCode = 6,
}

export const NIL = "00000000-0000-0000-0000-000000000000";
const isId = (v: string | undefined): v is string => !!v && isUuid(v) && v !== NIL;

/** One event's contribution: the same figures under every dimension it names. */
export interface Fact {
  at: Date;
  worker?: string;
  venue?: string;
  qr?: string;
  method: string;
  resultCode: string;
  currency: string;
  measures: Measures;
}

/** Side records besides the counters (payout ends, failure words, workers). */
export type SideRecord =
  | { kind: "payout_request"; payoutId: string; workerId?: string; at: Date }
  | { kind: "payout_result"; payoutId: string; workerId?: string; succeeded: boolean; resultCode: string; currency: string; amountMinor: bigint; at: Date }
  /** `reason` at most REASON_MAX characters (cut where the record is made). */
  | { kind: "reason"; resultCode: string; reason: string }
  | { kind: "worker"; workerId: string; registeredAt?: Date; at: Date };

export interface Applied {
  /** When the event happened (undefined for a subject analytics does not read). */
  at?: Date;
  facts: Fact[];
  records: SideRecord[];
}

/** The subject of each event analytics reads, as its message declares it. */
const S = {
  tipCreated: subjectOf(TipCreatedSchema),
  tipSucceeded: subjectOf(TipSucceededSchema),
  tipFailed: subjectOf(TipFailedSchema),
  tipReversed: subjectOf(TipReversedSchema),
  payoutSucceeded: subjectOf(PayoutSucceededSchema),
  payoutFailed: subjectOf(PayoutFailedSchema),
  payoutHeld: subjectOf(PayoutHeldSchema),
  qrScanned: subjectOf(QrScannedSchema),
  userRegistered: subjectOf(UserRegisteredSchema),
  deliveryUpdated: subjectOf(DeliveryUpdatedSchema),
  shareAllocated: subjectOf(VenueShareAllocatedSchema),
  distributionReversed: subjectOf(VenueDistributionReversedSchema),
} as const;

/** Subjects analytics reads; each has its own inbox key (consumerName). */
export const SUBJECTS: readonly string[] = Object.values(S);

/**
 * A subject's key in the inbox, and the name of the durable that read it alone (each subject had
 * one; those of SHARED_FILTERS' subjects are taken over by one durable, which keeps their keys).
 */
export function consumerName(subject: string): string {
  return `analytics-${subject.split(".").slice(1).join("-").replace(/_/g, "-")}`;
}

/**
 * Subjects read by one durable between them, by filter. Payment's: a tip's created and succeeded
 * come together, so they share batches (half the statements and commits a tip), pull requests and
 * heartbeats. The filter's other subjects (fraud alerts, admin actions: rare) add nothing and are
 * acknowledged without work. A wildcard, not a list of filters: the NATS servers we run (2.9) take
 * one filter a durable. Not ttip.> for all: a tip's wallet and other events would add deliveries.
 */
const SHARED_FILTERS = ["ttip.payment.>"] as const;

/** One durable consumer of analytics: what it reads, and the per-subject durables it took over. */
export interface Reader {
  durable: string;
  filter: string;
  subjects: readonly string[];
  replaces: readonly string[];
}

/** Analytics' durable consumers: one per shared filter, one for each subject outside them. */
export const READERS: readonly Reader[] = (() => {
  const readers: Reader[] = [];
  const alone = new Set(SUBJECTS);
  for (const filter of SHARED_FILTERS) {
    const subjects = SUBJECTS.filter((s) => subjectMatches(filter, s));
    for (const s of subjects) alone.delete(s);
    readers.push({ durable: `analytics-${filter.split(".").slice(1, -1).join("-")}`, filter, subjects, replaces: subjects.map(consumerName) });
  }
  for (const s of alone) readers.push({ durable: consumerName(s), filter: s, subjects: [s], replaces: [] });
  return readers;
})();

const methodName = (m: PaymentMethod) => (m === PaymentMethod.CARD ? "card" : "mpesa");

function when(meta: EventMeta | undefined): Date {
  // An event without a time is a producer bug; it still counts, at the epoch, where it shows up.
  return meta?.occurredAt ? timestampDate(meta.occurredAt) : new Date(0);
}

function decode<D extends DescMessage>(schema: D, data: Uint8Array): MessageShape<D> {
  return fromBinary(schema, data);
}

const ids = (e: { workerId?: string; venueId?: string; qrCodeId?: string }) => ({
  worker: isId(e.workerId) ? e.workerId : undefined,
  venue: isId(e.venueId) ? e.venueId : undefined,
  qr: isId(e.qrCodeId) ? e.qrCodeId : undefined,
});

/** The figures one event adds; an unknown subject adds nothing. */
export function factsOf(subject: string, data: Uint8Array): Applied {
  const applied = figuresOf(subject, data);
  const first = applied.facts[0]?.at ?? applied.records.find((r) => "at" in r)?.at;
  return { ...applied, at: first ?? (SUBJECTS.includes(subject) ? when(undefined) : undefined) };
}

/** The figures of each known subject, one function per event. */
const FIGURES = new Map<string, (data: Uint8Array) => Applied>([
  [S.tipCreated, tipCreatedFigures],
  [S.tipSucceeded, tipSucceededFigures],
  [S.tipFailed, tipFailedFigures],
  [S.tipReversed, tipReversedFigures],
  [S.payoutSucceeded, payoutSucceededFigures],
  [S.payoutFailed, payoutFailedFigures],
  [S.payoutHeld, payoutHeldFigures],
  [S.qrScanned, qrScannedFigures],
  [S.userRegistered, userRegisteredFigures],
  [S.deliveryUpdated, deliveryUpdatedFigures],
  [S.shareAllocated, shareAllocatedFigures],
  [S.distributionReversed, distributionReversedFigures],
]);

function figuresOf(subject: string, data: Uint8Array): Applied {
  return FIGURES.get(subject)?.(data) ?? { facts: [], records: [] };
}

/** Whether an event's figures (factsOf) add anything (figures or side records); one that adds nothing needs no inbox row. */
export function addsAnything(applied: Applied): boolean {
  return applied.facts.length > 0 || applied.records.length > 0;
}

/**
 * A card tip's amount chosen counts when it ends (every card tip ends: paid, failed, or expired by
 * payment's pass), from its tip_succeeded or tip_failed (cardCreated), not from its tip_created:
 * payment announced none for card tips at first, and the tips of then (their events replayed
 * too) must count the same. Its tip_created adds nothing, so each is counted once.
 */
const cardCreated = (method: PaymentMethod): Measures => (method === PaymentMethod.CARD ? { created: 1n } : {});

function tipCreatedFigures(data: Uint8Array): Applied {
  const e = decode(TipCreatedSchema, data);
  if (e.method === PaymentMethod.CARD) return { facts: [], records: [] };
  return {
    facts: [{ at: when(e.meta), ...ids(e), method: methodName(e.method), resultCode: "", currency: e.amount?.currency ?? "KES", measures: { created: 1n } }],
    records: [],
  };
}

function tipSucceededFigures(data: Uint8Array): Applied {
  const e = decode(TipSucceededSchema, data);
  const at = when(e.meta);
  const rating = e.rating >= 1 && e.rating <= 5 ? e.rating : 0;
  const currency = e.amount?.currency ?? "KES";
  const netCurrency = e.net?.currency || currency;
  const net = e.net?.amountMinor ?? 0n;
  const measures: Measures = { ...cardCreated(e.method), succeeded: 1n, amount_minor: e.amount?.amountMinor ?? 0n, fee_minor: e.fee?.amountMinor ?? 0n };
  if (rating) {
    measures.rating_sum = BigInt(rating);
    measures.rating_count = 1n;
    measures[`rated_${rating}` as Measure] = 1n;
  }
  const facts = withNet({ at, ...ids(e), method: methodName(e.method), resultCode: "0" }, currency, measures, netCurrency, net);
  if (e.replacedFailureAt) facts.push(failureTakenBack(e, currency));
  const records: SideRecord[] = isId(e.workerId) ? [{ kind: "worker", workerId: e.workerId, at }] : [];
  return { facts, records };
}

/**
 * A tip's figures with its net: in the same row when credited in the tip's currency; else (a card tip credited in
 * the wallet's, KES) in that currency's rows, a row holding one currency's money.
 */
function withNet(key: Omit<Fact, "currency" | "measures">, currency: string, measures: Measures, netCurrency: string, net: bigint): Fact[] {
  if (netCurrency === currency) return [{ ...key, currency, measures: { ...measures, net_minor: net } }];
  return [{ ...key, currency, measures }, { ...key, currency: netCurrency, measures: { net_minor: net } }];
}

/**
 * A tip announced failed whose money came after all: its tip_failed counted a failure (and, for a card, the
 * amount chosen), and this success counts the tip again. Taken back where it was counted (the failure's time and
 * code, as tipFailedFigures keys it), so the tip is one attempt, paid.
 */
function failureTakenBack(e: MessageShape<typeof TipSucceededSchema>, currency: string): Fact {
  const measures: Measures = { failed: -1n, ...(e.method === PaymentMethod.CARD ? { created: -1n } : {}) };
  return { at: timestampDate(e.replacedFailureAt!), ...ids(e), method: methodName(e.method), resultCode: e.replacedFailureCode || "unknown", currency, measures };
}

/**
 * Money of a paid tip going back to the card (or, a refund refused, coming back): taken off the tip's
 * money when it happens, as a distribution reversed is, and off nothing else (the tip was paid: it
 * still counts as a success and its rating stands). Its net in the wallet's currency, as the tip's.
 */
function tipReversedFigures(data: Uint8Array): Applied {
  const e = decode(TipReversedSchema, data);
  const currency = e.amount?.currency ?? "KES";
  const netCurrency = e.net?.currency || currency;
  const key = { at: when(e.meta), ...ids(e), method: methodName(e.method), resultCode: reversalCode(e.kind) };
  const measures: Measures = { amount_minor: -(e.amount?.amountMinor ?? 0n), fee_minor: -(e.fee?.amountMinor ?? 0n) };
  return { facts: withNet(key, currency, measures, netCurrency, -(e.net?.amountMinor ?? 0n)), records: [] };
}

/**
 * A failure reason is kept this long at most: the words of one result code for a dashboard's
 * tooltip, not a provider's whole answer (which could be any length).
 */
export const REASON_MAX = 300;

function tipFailedFigures(data: Uint8Array): Applied {
  const e = decode(TipFailedSchema, data);
  const code = e.resultCode || "unknown";
  return {
    facts: [{
      at: when(e.meta), ...ids(e), method: methodName(e.method), resultCode: code, currency: e.amount?.currency ?? "KES",
      measures: { ...cardCreated(e.method), failed: 1n, ...(e.pushRefused ? { push_refused: 1n } : {}) },
    }],
    records: e.reason ? [{ kind: "reason", resultCode: code, reason: e.reason.slice(0, REASON_MAX) }] : [],
  };
}

function payoutSucceededFigures(data: Uint8Array): Applied {
  const e = decode(PayoutSucceededSchema, data);
  const at = when(e.meta);
  const currency = e.amount?.currency ?? "KES";
  const amount = e.amount?.amountMinor ?? 0n;
  return {
    facts: [{ at, ...ids(e), method: "mpesa", resultCode: "0", currency,
      measures: { payouts_succeeded: 1n, payout_minor: amount, payout_fee_minor: e.transferFee?.amountMinor ?? 0n } }],
    records: isId(e.payoutId)
      ? [{ kind: "payout_result", payoutId: e.payoutId, workerId: ids(e).worker, succeeded: true, resultCode: "0", currency, amountMinor: amount, at }]
      : [],
  };
}

function payoutFailedFigures(data: Uint8Array): Applied {
  const e = decode(PayoutFailedSchema, data);
  const at = when(e.meta);
  const currency = e.amount?.currency ?? "KES";
  const code = e.resultCode || "unknown";
  return {
    facts: [{ at, ...ids(e), method: "mpesa", resultCode: code, currency, measures: { payouts_failed: 1n } }],
    records: isId(e.payoutId)
      ? [{ kind: "payout_result", payoutId: e.payoutId, workerId: ids(e).worker, succeeded: false, resultCode: code, currency, amountMinor: e.amount?.amountMinor ?? 0n, at }]
      : [],
  };
}

function payoutHeldFigures(data: Uint8Array): Applied {
  const e = decode(PayoutHeldSchema, data);
  return { facts: [], records: isId(e.payoutId) ? [{ kind: "payout_request", payoutId: e.payoutId, workerId: isId(e.ownerId) ? e.ownerId : undefined, at: when(e.meta) }] : [] };
}

function qrScannedFigures(data: Uint8Array): Applied {
  const e = decode(QrScannedSchema, data);
  return { facts: [{ at: when(e.meta), ...ids(e), method: "", resultCode: "", currency: "", measures: { scans: 1n } }], records: [] };
}

function userRegisteredFigures(data: Uint8Array): Applied {
  const e = decode(UserRegisteredSchema, data);
  const at = when(e.meta);
  return {
    facts: [{ at, method: e.role, resultCode: "", currency: "", measures: { registrations: 1n } }],
    records: e.role === "worker" && isId(e.userId) ? [{ kind: "worker", workerId: e.userId, registeredAt: at, at }] : [],
  };
}

/**
 * Of the notifications, the figures read SMS sent (the platform's SMS count and spend):
 * every other update (other channels, other states: most of the events a tip causes)
 * adds nothing, so it costs no rollup row and, through addsAnything, no inbox row.
 */
function deliveryUpdatedFigures(data: Uint8Array): Applied {
  const e = decode(DeliveryUpdatedSchema, data);
  if (e.channel !== "sms" || e.status !== "sent") return { facts: [], records: [] };
  return { facts: [{ at: when(e.meta), method: e.channel, resultCode: e.status, currency: "", measures: { notifications: 1n } }], records: [] };
}

function shareAllocatedFigures(data: Uint8Array): Applied {
  // A member's share of a distributed pool: the worker's earnings and the venue's payout to staff.
  const e = decode(VenueShareAllocatedSchema, data);
  return {
    facts: [{ at: when(e.meta), worker: isId(e.workerId) ? e.workerId : undefined, venue: isId(e.venueId) ? e.venueId : undefined,
      method: "pool", resultCode: "", currency: e.amount?.currency ?? "KES", measures: { pooled_minor: e.amount?.amountMinor ?? 0n } }],
    records: [],
  };
}

function distributionReversedFigures(data: Uint8Array): Applied {
  // Each member's share taken back from the worker as it was added (shareAllocatedFigures): a period split again
  // after a reversal counted the worker's first share too. An event from before shares were named: venue and platform.
  const e = decode(VenueDistributionReversedSchema, data);
  const venue = isId(e.venueId) ? e.venueId : undefined;
  const facts: Fact[] = e.shares.length
    ? e.shares.map((x) => ({ at: when(e.meta), worker: isId(x.workerId) ? x.workerId : undefined, venue, method: "pool", resultCode: "reversed",
      currency: x.amount?.currency ?? "KES", measures: { pooled_minor: -(x.amount?.amountMinor ?? 0n) } }))
    : [{ at: when(e.meta), venue, method: "pool", resultCode: "reversed", currency: e.amount?.currency ?? "KES", measures: { pooled_minor: -(e.amount?.amountMinor ?? 0n) } }];
  return { facts, records: [] };
}

export const HOUR_MS = 3_600_000;
export const DAY_MS = 24 * HOUR_MS;
/** East Africa Time: UTC+3 all year (no daylight saving). */
export const EAT_OFFSET_MS = 3 * HOUR_MS;

export const hourOf = (at: Date) => new Date(Math.floor(at.getTime() / HOUR_MS) * HOUR_MS);
/** Midnight EAT of the day `at` falls on. */
export const dayOf = (at: Date) => new Date(Math.floor((at.getTime() + EAT_OFFSET_MS) / DAY_MS) * DAY_MS - EAT_OFFSET_MS);

/** A rollup row's key. */
export interface RowKey {
  dim: Dim;
  id: string;
  sub: string;
  grain: "h" | "d";
  bucket: Date;
  method: string;
  resultCode: string;
  currency: string;
}

/** The dimensions a fact names (dim, id, sub), each once: the platform's always. */
export function dimsOf(fact: Fact): [Dim, string, string][] {
  const dims: [Dim, string, string][] = [[Dim.Platform, NIL, NIL]];
  if (fact.worker) dims.push([Dim.Worker, fact.worker, NIL]);
  if (fact.venue) dims.push([Dim.Venue, fact.venue, NIL]);
  if (fact.qr) dims.push([Dim.QrCode, fact.qr, NIL]);
  if (fact.venue && fact.worker) dims.push([Dim.VenueStaff, fact.venue, fact.worker]);
  if (fact.venue && fact.qr) dims.push([Dim.VenueCode, fact.venue, fact.qr]);
  return dims;
}

/**
 * Whether a dimension keeps day rows besides its hour rows. Only the platform's: its rows are
 * shared by every event of a batch (one update a batch), and a year of them by hour would be
 * ~9,000 rows per figure to sum. A worker's, venue's or code's day rows were each an update per
 * event (a batch's tips name different workers): about a third of the rows a tip wrote, for
 * reads that sum the few hour rows a worker's day has instead (queries.ts, grainFor).
 * Day rows of other dimensions written before are still in the table, and read by nothing.
 */
export const hasDayRows = (dim: Dim) => dim === Dim.Platform;

/** The rows a fact adds to: each dimension it names, at the hour, and the platform's also at the day. */
export function rowsOf(fact: Fact): RowKey[] {
  const rows: RowKey[] = [];
  const key = { method: fact.method, resultCode: fact.resultCode, currency: fact.currency };
  for (const [dim, id, sub] of dimsOf(fact)) {
    rows.push({ dim, id, sub, grain: "h", bucket: hourOf(fact.at), ...key });
    if (hasDayRows(dim)) rows.push({ dim, id, sub, grain: "d", bucket: dayOf(fact.at), ...key });
  }
  return rows;
}
