// Deliveries: created once per (source, recipient, channel), then handed to
// providers by the dispatcher with retries, backoff and failover.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { EventEmitter, setMaxListeners } from "node:events";
import { setTimeout as sleep } from "node:timers/promises";
import { DeliveryUpdatedSchema, EventMetaSchema } from "@ttip/proto/ttip/events/v1/events_pb.js";
import { Channel, TemplateKey } from "@ttip/proto/ttip/notification/v1/notification_pb.js";
import { type BatchLimits, buildEvent, type BusMessage, claimingManyCte, RedeliverSoon, type Clock, commitWith, currentTraceparent, GroupCommit, HTTP_MAX_SOCKETS, type IdempotentRequest, inBatches, type Logger, type Metrics, maskPhone, normalisePhone, opaqueArray, opaqueUnnest, outboxCte, type Pool, type Queryable, repeatingRefusalOf, scrubText, storableJson, storableText, systemClock, timeOrderedUuid, uuidV4, withTransaction, writeOutbox } from "@ttip/runtime";
import type { RetryConfig } from "./config.js";
import type { ContactLookup } from "./contacts.js";
import type { OutgoingMessage, Provider, Providers, SendOutcome } from "./providers.js";
import { CHANNEL_NAMES, maskEmail, templateKeyName } from "./names.js";
import { findRecipient, findRecipients, type KnownRecipient, type RecipientRecord } from "./stores/recipients.js";
import { pushTokens } from "./stores/push-tokens.js";
import { findTemplate } from "./stores/templates.js";
import { render, resolveLocale, withDefaults } from "./templates.js";

export type DeliveryState = "queued" | "sent" | "delivered" | "failed" | "retrying";
/**
 * The states a public delivery_updated fact reports: a delivery's outcomes. Waiting ("queued",
 * "retrying") stays notification's own (its tables, GetDelivery and ListDeliveries): no other
 * service reads it, and it was most of the facts a tip cost (events.proto's DeliveryUpdated).
 */
export type DeliveryOutcome = Extract<DeliveryState, "sent" | "delivered" | "failed">;
export const isOutcome = (s: DeliveryState): s is DeliveryOutcome => s === "sent" || s === "delivered" || s === "failed";

/** The channels a kind goes out on when the user chose nothing. */
export const DEFAULT_CHANNELS: Record<TemplateKey, Channel[]> = {
  [TemplateKey.UNSPECIFIED]: [],
  [TemplateKey.OTP]: [Channel.SMS],
  [TemplateKey.TIP_RECEIVED]: [Channel.SMS, Channel.PUSH, Channel.IN_APP],
  [TemplateKey.RECEIPT]: [Channel.SMS, Channel.EMAIL],
  [TemplateKey.PAYOUT_SENT]: [Channel.SMS, Channel.PUSH, Channel.IN_APP],
  [TemplateKey.PAYOUT_FAILED]: [Channel.SMS, Channel.PUSH, Channel.IN_APP],
  [TemplateKey.FRAUD_HOLD]: [Channel.SMS, Channel.IN_APP],
  [TemplateKey.WEEKLY_SUMMARY]: [Channel.EMAIL, Channel.IN_APP],
  [TemplateKey.STAFF_INVITE]: [Channel.SMS],
  [TemplateKey.MANAGER_INVITE]: [Channel.SMS],
  [TemplateKey.MANAGER_JOINED]: [Channel.SMS, Channel.PUSH, Channel.IN_APP],
  [TemplateKey.MANAGER_REMOVED]: [Channel.SMS, Channel.PUSH, Channel.IN_APP],
  [TemplateKey.REMOVED_AS_MANAGER]: [Channel.SMS, Channel.PUSH, Channel.IN_APP],
  // Told in the app: the manager who invited them expects it, and an SMS per hire would cost more than it tells.
  [TemplateKey.STAFF_JOINED]: [Channel.PUSH, Channel.IN_APP],
  [TemplateKey.REMOVED_FROM_STAFF]: [Channel.SMS, Channel.PUSH, Channel.IN_APP],
  [TemplateKey.POOL_SHARE]: [Channel.SMS, Channel.PUSH, Channel.IN_APP],
  [TemplateKey.POOL_SHARE_REVERSED]: [Channel.SMS, Channel.PUSH, Channel.IN_APP],
  // E-mail only when the admin has given an address.
  [TemplateKey.ADMIN_TIP_HELD]: [Channel.SMS, Channel.EMAIL],
  [TemplateKey.PAYOUT_NUMBER_CHANGED]: [Channel.SMS, Channel.IN_APP],
  [TemplateKey.DEVICE_ADDED]: [Channel.SMS, Channel.IN_APP],
  [TemplateKey.TIP_REVERSED]: [Channel.SMS, Channel.PUSH, Channel.IN_APP],
  [TemplateKey.TIP_REVERSAL_UNDONE]: [Channel.SMS, Channel.PUSH, Channel.IN_APP],
  [TemplateKey.POOL_TIP_REVERSED]: [Channel.SMS, Channel.PUSH, Channel.IN_APP],
  [TemplateKey.POOL_TIP_REVERSAL_UNDONE]: [Channel.SMS, Channel.PUSH, Channel.IN_APP],
  [TemplateKey.MPESA_TIP_REVERSED]: [Channel.SMS, Channel.PUSH, Channel.IN_APP],
  [TemplateKey.MPESA_TIP_REVERSAL_UNDONE]: [Channel.SMS, Channel.PUSH, Channel.IN_APP],
  [TemplateKey.POOL_MPESA_TIP_REVERSED]: [Channel.SMS, Channel.PUSH, Channel.IN_APP],
  [TemplateKey.POOL_MPESA_TIP_REVERSAL_UNDONE]: [Channel.SMS, Channel.PUSH, Channel.IN_APP],
};

/**
 * Kinds that always go by SMS, whatever the user chose, and outside quiet hours too: a sign-in code, and the
 * security notices (the payout number changed, a device added), which someone using the session must not silence.
 */
const ALWAYS_SMS: ReadonlySet<TemplateKey> = new Set([TemplateKey.OTP, TemplateKey.PAYOUT_NUMBER_CHANGED, TemplateKey.DEVICE_ADDED]);

export type Recipient = { userId: string } | { phone: string } | { email: string };

export interface SendRequest {
  /** What caused it: an event id, or "rpc:" + the caller's idempotency key. */
  sourceKey: string;
  to: Recipient;
  templateKey: TemplateKey;
  variables: Record<string, string>;
  /** Empty: the user's locale, else English. */
  locale?: string;
  /** Empty: the user's preferences, else the kind's defaults. */
  channels?: Channel[];
  correlationId?: string;
  /**
   * The caller's idempotency key, claimed for `sourceKey` by the delivery's own
   * statement (one channel only): no delivery is made when the key was used before.
   */
  claim?: IdempotentRequest;
}

/** Wakes in-app watchers of a user (a hint only: watchers read the table). */
export const inAppSignals = new EventEmitter();
inAppSignals.setMaxListeners(0);

const EAT_OFFSET_MS = 3 * 3_600_000;

/** When quiet hours (East Africa Time, "HH:MM") end if `now` is inside them. */
export function quietUntil(now: Date, start: string, end: string): Date | undefined {
  const parse = (v: string) => {
    const m = /^([01]\d|2[0-3]):([0-5]\d)$/.exec(v);
    return m ? Number(m[1]) * 60 + Number(m[2]) : undefined;
  };
  const s = parse(start);
  const e = parse(end);
  if (s === undefined || e === undefined || s === e) return undefined;
  const local = new Date(now.getTime() + EAT_OFFSET_MS);
  const minute = local.getUTCHours() * 60 + local.getUTCMinutes();
  const inside = s < e ? minute >= s && minute < e : minute >= s || minute < e;
  if (!inside) return undefined;
  const endLocal = new Date(Date.UTC(local.getUTCFullYear(), local.getUTCMonth(), local.getUTCDate(), Math.floor(e / 60), e % 60));
  if (endLocal.getTime() <= local.getTime()) endLocal.setUTCDate(endLocal.getUTCDate() + 1);
  return new Date(endLocal.getTime() - EAT_OFFSET_MS);
}

type DeliveryRef = { id: string; user_id: string | null; channel: Channel; template_key: TemplateKey; attempts: number };

async function emitUpdate(tx: Queryable, d: DeliveryRef, status: DeliveryOutcome, correlationId = "") {
  await writeOutbox(tx, "notification", updateEvent(d, status, correlationId));
}

/**
 * The delivery_updated payload, for a statement that writes it with the state it reports: a
 * public fact for an outcome, else only a dispatch message's body (dispatchMessage).
 */
function updateEvent(d: DeliveryRef, status: DeliveryState, correlationId = "") {
  return buildEvent(
    "notification",
    DeliveryUpdatedSchema,
    {
      deliveryId: d.id,
      userId: d.user_id ?? "",
      channel: CHANNEL_NAMES[d.channel],
      status,
      templateKey: templateKeyName(d.template_key),
      attempt: d.attempts,
    },
    correlationId,
  );
}

/**
 * A planned SMS's event for when the planning statement finds its number opted out: the queued
 * event's bytes with a meta id of its own and status "failed" appended. A parser keeps a field's
 * last value and merges a message field met twice, so it reads the queued event with that id and
 * status (time, producer, correlation and the rest unchanged). Made for every SMS planned and
 * used for few: bytes appended, not a second event built (bench/opted-out-event.ts).
 */
export function optedOutEventOf(queued: BusMessage): BusMessage {
  const id = timeOrderedUuid();
  const data = new Uint8Array(queued.data.length + OPTED_OUT_TAIL_BYTES);
  data.set(queued.data);
  let at = queued.data.length;
  data[at++] = tag(DeliveryUpdatedSchema.field.meta.number);
  data[at++] = 2 + id.length;
  data[at++] = tag(EventMetaSchema.field.id.number);
  data[at++] = id.length;
  at += utf8.encodeInto(id, data.subarray(at)).written;
  data[at++] = tag(DeliveryUpdatedSchema.field.status.number);
  data[at++] = FAILED.length;
  data.set(FAILED, at);
  return { id, subject: queued.subject, data };
}

/** A length-delimited field's tag (wire type 2); the fields here are numbered below 16, one byte. */
const tag = (field: number) => (field << 3) | 2;
const utf8 = new TextEncoder();
const FAILED = utf8.encode("failed");
/** meta { id } (a UUID's 36 characters) and status "failed", each with its tag and length. */
const OPTED_OUT_TAIL_BYTES = 2 + 2 + 36 + 2 + FAILED.length;

/** Dispatch consumers: each queued delivery is handed to one of them, chosen by its id. */
export const DISPATCH_SHARDS = 4;

/**
 * The subject shard `shard`'s consumer reads. Notification's own (no other service reads it):
 * a queued delivery's work goes there (its waiting is not a public fact), so each reaches one
 * dispatch consumer.
 */
export const dispatchSubject = (shard: number) => `ttip.notification.dispatch.${shard}`;

export function dispatchShardOf(deliveryId: string): number {
  return createHash("sha1").update(deliveryId).digest()[0] % DISPATCH_SHARDS;
}

/** The message that has the delivery's shard send it: a delivery_updated payload saying it waits, under an id of its own (the bus deduplicates by id). */
function dispatchMessage(queued: BusMessage, deliveryId: string): BusMessage {
  return { id: uuidV4(), subject: dispatchSubject(dispatchShardOf(deliveryId)), data: queued.data };
}

/** A delivery queued again (unparked): its work for the dispatcher (waiting is no public fact). */
async function emitQueued(tx: Queryable, d: DeliveryRef): Promise<void> {
  await writeOutbox(tx, "notification", dispatchMessage(updateEvent(d, "queued"), d.id));
}

/** Requests one enqueueMany takes at most (a trigger's batch of events); each makes a few deliveries. */
export const ENQUEUE_BATCH_MAX = 200;

/**
 * Creates the deliveries for one request inside `tx` (no other connection is
 * used: embedded mode has one). Returns their ids, existing ones included, so
 * a redelivered event or a retried call finds what the first one made.
 * Throws MissingVariablesError when the template needs a variable not given.
 */
export async function enqueue(tx: Queryable, req: SendRequest, now = new Date()): Promise<string[]> {
  return (await enqueueMany(tx, [req], now))[0];
}

/**
 * enqueue for several requests (a trigger's batch of events): the recipients
 * and whether they have a push device are read in one statement, and every
 * delivery is written in another, not a few statements per request. Returns
 * the ids per request, in the requests' order. A request that cannot be planned
 * (a variable missing) fails them all, before anything is written. `commits`: the deliveries'
 * statement is the last of withTransaction's transaction `tx` and takes its COMMIT with it
 * (commitWith, one round trip fewer); nothing may follow it. A delivery that a concurrent
 * transaction makes too (a re-published copy of an event) fails the statement (deliveryRace):
 * run again, it finds that delivery.
 */
export async function enqueueMany(tx: Queryable, reqs: SendRequest[], now = new Date(), direct?: DirectSends, commits = false): Promise<string[][]> {
  const made = await planAndWrite(tx, reqs, now, { failAlone: false, firstProviders: direct?.firstProviders, onClaimed: direct && ((c) => direct.claimed.push(c)), commits });
  return made.map((m) => ("ids" in m ? m.ids : assert.fail("a request failed alone")));
}

/**
 * What enqueueMany and enqueueClaiming share: the requests planned (their users read in one
 * statement) and written with their claims in one more. `failAlone`: a request that cannot be
 * planned fails alone (its error in its place), else it fails them all before anything is written.
 * With `firstProviders`, a new SMS or e-mail due now is claimed for its first attempt and handed to
 * `onClaimed` (see enqueueClaiming); `carried`, sent records its statement writes too; `commits`, see enqueueMany.
 */
async function planAndWrite(
  tx: Queryable,
  reqs: SendRequest[],
  now: Date,
  o: { failAlone: boolean; firstProviders?: FirstProviders; onClaimed?: (c: ClaimedAtEnqueue) => void; carried?: CarriedRecords; commits?: boolean },
): Promise<({ ids: string[] } | { error: unknown })[]> {
  assert(reqs.length <= ENQUEUE_BATCH_MAX, "too many requests for one statement");
  const users = await usersOf(tx, reqs);
  const planned: (PlannedDelivery[] | { error: unknown })[] = [];
  for (const req of reqs) {
    const plan = planRequest(tx, req, now, users);
    planned.push(o.failAlone ? await plan.catch((error: unknown) => ({ error })) : await plan);
  }
  const plannable = reqs.filter((_, i) => Array.isArray(planned[i]));
  const rows = planned.flatMap((r) => (Array.isArray(r) ? r : []));
  if (o.firstProviders) for (const p of rows) p.firstProvider = firstAttemptOf(p, now, o.firstProviders);
  // Its work for a dispatcher only when its statement does not claim it for sending: a tip's messages are claimed so.
  for (const p of rows) p.dispatch = p.status === "queued" && !p.firstProvider ? dispatchMessage(p.event, p.id) : null;
  const onClaimed = o.onClaimed && ((p: PlannedDelivery, leasedFrom: number) => o.onClaimed!(claimedAtEnqueue(p, leasedFrom)));
  const ids = await insertDeliveries(tx, rows, now, claimsOf(plannable), onClaimed, o.carried, o.commits);
  return planned.map((r) => (Array.isArray(r) ? { ids: r.flatMap((p) => ids.get(p) ?? []) } : r));
}

/**
 * Deliveries enqueueMany is to claim for their first attempt (see enqueueClaiming), and where
 * it puts those it claimed: sent once `tx` has committed (Dispatcher.sendClaimed), never before.
 */
export interface DirectSends {
  firstProviders: FirstProviders;
  claimed: ClaimedAtEnqueue[];
}

/**
 * enqueueMany for requests that each claim their key (a batch call's): a request that
 * cannot be planned (a variable missing) fails alone, the others are written with their
 * claims in one statement. Per request: its delivery ids (none when its key was used
 * before), or why it failed.
 *
 * With `firstProviders` (the dispatcher's, by channel), a new SMS or e-mail due now is also
 * claimed for its first attempt by that statement (as the dispatcher's claim would: its
 * attempt 'sending', committed before any HTTP call) and returned in `claimed`, for the
 * dispatcher to send at once (Dispatcher.sendClaimed): no message on the bus and no claim
 * statement of its own. A retry is handed to the bus as before.
 */
export async function enqueueClaiming(
  tx: Queryable,
  reqs: SendRequest[],
  now = new Date(),
  firstProviders?: FirstProviders,
  carried?: CarriedRecords,
): Promise<{ made: ({ ids: string[] } | { error: unknown })[]; claimed: ClaimedAtEnqueue[] }> {
  assert(reqs.every((r) => r.claim), "every request claims its key");
  const claimed: ClaimedAtEnqueue[] = [];
  const made = await planAndWrite(tx, reqs, now, { failAlone: true, firstProviders, onClaimed: (c) => claimed.push(c), carried });
  return { made, claimed };
}

/**
 * Sends the providers accepted whose record a statement written anyway carries (enqueueClaiming's,
 * not in a transaction: committed with it). `early` is set once that statement has written them:
 * those a status report came before, for the dispatcher to record one by one; unset, nothing was written.
 */
export interface CarriedRecords {
  sends: AcceptedSend[];
  early?: Set<string>;
}

/** Each channel's first provider, by name: where a delivery's first attempt goes. */
export type FirstProviders = ReadonlyMap<Channel, string>;

/** A delivery its own statement wrote and claimed for its first attempt (enqueueClaiming). */
export interface ClaimedAtEnqueue {
  delivery: DeliveryRow;
  /** The provider its attempt was recorded for. */
  provider: string;
  /** When its lease began, on this process's clock: at or before its transaction's start (its attempt's started_at). */
  leasedFrom: number;
}

/**
 * The provider a planned delivery's first attempt is claimed for by its own statement, or null
 * when the dispatcher is to decide: only an SMS or e-mail with its address, queued and due now
 * (what the dispatcher would send at once; the statement leaves out a number that texted STOP).
 */
function firstAttemptOf(p: PlannedDelivery, now: Date, firstProviders: FirstProviders): string | null {
  if (p.status !== "queued" || p.body === null || !p.address || p.nextAttempt.getTime() > now.getTime()) return null;
  if (p.channel !== Channel.SMS && p.channel !== Channel.EMAIL) return null;
  return firstProviders.get(p.channel) ?? null;
}

function claimedAtEnqueue(p: PlannedDelivery, leasedFrom: number): ClaimedAtEnqueue {
  assert(p.firstProvider, "claimed for a provider");
  const delivery: DeliveryRow = {
    id: p.id,
    user_id: p.userId,
    channel: p.channel,
    template_key: p.templateKey,
    address: p.address,
    subject: p.subject,
    body: p.body,
    status: "queued",
    attempts: 1,
    provider_index: 0,
    provider_attempts: 0,
    next_attempt_at: p.nextAttempt,
    parked: false,
  };
  return { delivery, provider: p.firstProvider, leasedFrom };
}

/** The requests' users known here (their numbers, preferences, push devices), in one statement when there are any. */
async function usersOf(tx: Queryable, reqs: SendRequest[]): Promise<Map<string, KnownRecipient>> {
  const userIds = [...new Set(reqs.flatMap((r) => ("userId" in r.to ? [r.to.userId.toLowerCase()] : [])))];
  return userIds.length ? findRecipients(tx, userIds) : new Map<string, KnownRecipient>();
}

/** A key claimed for what a request makes: its deliveries, found again by their source key. */
type KeyClaim = { request: IdempotentRequest; resultId: string };

/** The keys the requests claim: all of them or none, each key and each source once. */
function claimsOf(reqs: SendRequest[]): KeyClaim[] {
  const claims = reqs.flatMap((r) => (r.claim ? [{ request: r.claim, resultId: r.sourceKey }] : []));
  assert(claims.length === 0 || claims.length === reqs.length, "every request of a batch claims its key, or none does");
  assert(new Set(claims.map((c) => c.request.key)).size === claims.length, "a key is claimed once per statement");
  assert(new Set(claims.map((c) => c.resultId)).size === claims.length, "claiming requests have sources of their own");
  return claims;
}

type KnownUser = RecipientRecord | undefined;

/** One request's deliveries, one per channel it goes out on. */
async function planRequest(tx: Queryable, req: SendRequest, now: Date, users: Map<string, KnownRecipient>): Promise<PlannedDelivery[]> {
  const known = "userId" in req.to ? users.get(req.to.userId.toLowerCase()) : undefined;
  const user = known?.record;
  const isOtp = req.templateKey === TemplateKey.OTP;
  const { channels, explicit } = channelsFor(req, user, isOtp);
  const urgent = ALWAYS_SMS.has(req.templateKey);
  const locale = resolveLocale(req.locale || user?.locale);
  const userId = "userId" in req.to ? req.to.userId : null;
  const rows: PlannedDelivery[] = [];
  for (const channel of channels) {
    // No device registered: nothing to push to, and nothing worth a failed record.
    if (channel === Channel.PUSH && userId && !explicit && !known?.hasPushToken) continue;
    const row = await planOn(tx, req, now, { user, userId, isOtp, urgent, explicit, locale, channel, ...addressOn(req, user, userId, channel) });
    if (row) rows.push(row);
  }
  return rows;
}

/** The channels a request goes out on, and whether the caller named them. */
function channelsFor(req: SendRequest, user: KnownUser, isOtp: boolean): { channels: Channel[]; explicit: boolean } {
  let channels: Channel[];
  let explicit = !!req.channels?.length;
  if ("phone" in req.to) channels = [Channel.SMS];
  else if ("email" in req.to) channels = [Channel.EMAIL];
  else {
    const chosen = user?.kinds[String(req.templateKey)];
    channels = explicit ? req.channels! : (chosen ?? DEFAULT_CHANNELS[req.templateKey]);
    // A caller may narrow what the user wants but never add what they turned off (OTPs excepted).
    if (explicit && chosen && !isOtp) channels = channels.filter((c) => chosen.includes(c));
  }
  if (isOtp) {
    channels = [Channel.SMS];
    explicit = true;
  } else if (ALWAYS_SMS.has(req.templateKey) && !channels.includes(Channel.SMS)) {
    channels = [Channel.SMS, ...channels];
  }
  return { channels, explicit };
}

/** Where one channel's message goes, and how logs show it. */
function addressOn(req: SendRequest, user: KnownUser, userId: string | null, channel: Channel): { address: string; masked: string } {
  if (channel === Channel.SMS) {
    const phone = "phone" in req.to ? req.to.phone : (user?.phone ?? "");
    const address = phone ? normalisePhone(phone) : "";
    return { address, masked: address ? maskPhone(address) : "" };
  }
  if (channel === Channel.EMAIL) {
    const address = "email" in req.to ? req.to.email : (user?.email ?? "");
    return { address, masked: address ? maskEmail(address) : "" };
  }
  return { address: userId ?? "", masked: userId ?? "" };
}

interface ChannelScope {
  user: KnownUser;
  userId: string | null;
  isOtp: boolean;
  /** Always by SMS and outside quiet hours (ALWAYS_SMS). */
  urgent: boolean;
  explicit: boolean;
  locale: string;
  channel: Channel;
  address: string;
  masked: string;
}

/** A delivery as it is to be written, with its "queued" fact and the one it gets when its number texted STOP. */
interface PlannedDelivery {
  id: string;
  sourceKey: string;
  recipientKey: string;
  channel: Channel;
  userId: string | null;
  address: string;
  masked: string;
  templateKey: TemplateKey;
  templateVersion: number;
  locale: string;
  subject: string;
  /** The rendered text (null: a failed OTP's, not kept). */
  body: string | null;
  status: DeliveryState;
  error: string | null;
  nextAttempt: Date;
  /** Its delivery_updated payload: the public fact when its state is an outcome, else its dispatch message's body. */
  event: ReturnType<typeof updateEvent>;
  /** An SMS checked against STOP by the insert itself (OTPs excepted), and its fact then. */
  mayBeOptedOut: boolean;
  optedOutEvent: ReturnType<typeof updateEvent>;
  /** The in-app notification's id, for an in-app delivery to a user. */
  inAppId: string | null;
  /** Its work for the dispatcher, while queued and not claimed by its statement (planAndWrite sets it); not written when its number texted STOP. */
  dispatch: BusMessage | null;
  /** The provider its own statement claims its first attempt for (enqueueClaiming), else null. */
  firstProvider: string | null;
}

/** One channel's delivery as it is to be written, or undefined when the channel is skipped. */
async function planOn(tx: Queryable, req: SendRequest, now: Date, { user, userId, isOtp, urgent, explicit, locale, channel, address, masked }: ChannelScope): Promise<PlannedDelivery | undefined> {
  if (!address && !explicit && !(channel === Channel.SMS && userId)) return undefined;

  const template = await findTemplate(tx, req.templateKey, locale, channel);
  if (!template) throw new Error(`no active template for ${templateKeyName(req.templateKey)}/${locale}/${CHANNEL_NAMES[channel]}`);
  const variables = withDefaults(req.templateKey, req.variables);
  const subject = render(template.subject, variables);
  const body = render(template.body, variables);

  let status: DeliveryState = "queued";
  let error: string | null = null;
  let nextAttempt = now;
  // A user whose number we do not have yet: the dispatcher asks auth for it.
  const lookup = channel === Channel.SMS && !address && !!userId;
  if (!address && !lookup) {
    status = "failed";
    error = channel === Channel.SMS ? "no phone number on file" : channel === Channel.EMAIL ? "no e-mail address on file" : "no recipient";
  } else if (channel === Channel.IN_APP) {
    status = "delivered";
  } else if (!urgent && user && (channel === Channel.SMS || channel === Channel.PUSH)) {
    nextAttempt = quietUntil(now, user.quiet_start, user.quiet_end) ?? now;
  }
  const recipientKey = userId ?? ("phone" in req.to ? `phone:${address}` : `email:${address.toLowerCase()}`);
  // In time order (on this process's clock, not the request's `now`): each delivery adds its keys
  // at the right end of deliveries_pkey and its attempts' delivery_attempts_pkey, where a random id
  // lands on any page (on a grown table, a full-page image after every checkpoint for nearly each).
  const id = timeOrderedUuid();
  const ref = { id, user_id: userId, channel, template_key: req.templateKey, attempts: 0 };
  const event = updateEvent(ref, status, req.correlationId);
  // An SMS with a number is always queued here (only a missing address fails at planning).
  const mayBeOptedOut = channel === Channel.SMS && !isOtp && !!address;
  return {
    id,
    sourceKey: req.sourceKey,
    recipientKey,
    channel,
    userId,
    address,
    masked,
    templateKey: req.templateKey,
    templateVersion: template.version,
    locale: template.locale,
    subject,
    body: status === "failed" && isOtp ? null : body,
    status,
    error,
    nextAttempt,
    event,
    mayBeOptedOut,
    optedOutEvent: mayBeOptedOut ? optedOutEventOf(event) : event,
    // In time order too, for inapp_notifications_pkey (see id).
    inAppId: channel === Channel.IN_APP && userId !== null ? timeOrderedUuid() : null,
    dispatch: null,
    firstProvider: null,
  };
}

/**
 * The planned deliveries' columns (insertDeliveries' unnest): each one's name, type and value, in
 * one list so the names, the unnest's array types and the parameters cannot drift apart. Named
 * rather than `p.*`: a statement with `*` is not prepared (services/runtime's statementName), so
 * re-planned on each call.
 */
const PLANNED: readonly (readonly [column: string, type: string, value: (p: PlannedDelivery) => unknown])[] = [
  ["id", "uuid", (p) => p.id],
  ["source_key", "text", (p) => p.sourceKey],
  ["recipient_key", "text", (p) => p.recipientKey],
  ["channel", "smallint", (p) => p.channel],
  ["user_id", "uuid", (p) => p.userId],
  ["address", "text", (p) => p.address],
  ["address_masked", "text", (p) => p.masked],
  ["template_key", "smallint", (p) => p.templateKey],
  ["template_version", "int", (p) => p.templateVersion],
  ["locale", "text", (p) => p.locale],
  ["subject", "text", (p) => p.subject],
  ["body", "text", (p) => p.body],
  ["status", "text", (p) => p.status],
  ["last_error", "text", (p) => p.error],
  ["next_attempt_at", "timestamptz", (p) => p.nextAttempt],
  // Each event's bytes only where the statement may write them (null is sent as 4 bytes): a fact (an outcome) or the
  // dispatch message carries the event; the opted-out fact only an SMS that may be opted out. A tip's two
  // texts, claimed for sending, carry only their opted-out facts; its in-app notice, its fact once, not twice.
  ["event_id", "uuid", (p) => p.event.id],
  ["payload", "bytea", (p) => (isOutcome(p.status) || p.dispatch ? p.event.data : null)],
  ["may_opt_out", "boolean", (p) => p.mayBeOptedOut],
  ["opted_event_id", "uuid", (p) => p.optedOutEvent.id],
  ["opted_payload", "bytea", (p) => (p.mayBeOptedOut ? p.optedOutEvent.data : null)],
  ["announced", "boolean", (p) => isOutcome(p.status)],
  ["inapp_id", "uuid", (p) => p.inAppId],
  ["dispatch_event_id", "uuid", (p) => p.dispatch?.id ?? null],
  ["dispatch_subject", "text", (p) => p.dispatch?.subject ?? null],
  ["first_provider", "text", (p) => p.firstProvider],
];
const PLANNED_COLUMNS = PLANNED.map(([column]) => column).join(", ");
const PLANNED_UNNEST = opaqueUnnest(PLANNED.map(([, type]) => type));
/** The statement's parameters after the planned columns. */
const [FACT_SUBJECT, TRACEPARENT, NOW] = [1, 2, 3].map((i) => `$${PLANNED.length + i}`);

/**
 * A repeat's insert lost to a concurrent transaction's on the deliveries' unique key (see
 * insertDeliveries): nothing was written; run again, the statement finds the delivery made.
 */
export function deliveryRace(err: unknown): boolean {
  const e = err as { code?: unknown; schema?: unknown; table?: unknown; constraint?: unknown } | null;
  return e?.code === "23505" && e.schema === "notification" && e.table === "deliveries" && e.constraint === "deliveries_source_key_recipient_key_channel_key";
}

/** What insertDeliveries' statement answers per planned row. */
type Written = { planned_id: string; inserted: boolean; existing_id: string | null; first_claimed: boolean; early: string[] | null; began_ms_ago: number };

/**
 * Writes planned deliveries in one statement: each delivery, its fact when it has an outcome
 * already (failed, or an in-app one delivered) else its dispatch message, and (in-app) the notification itself, all or nothing per delivery on a repeat; a number that texted
 * STOP gets no SMS (checked by the insert itself). Returns each row's id: its own, or
 * the existing delivery's on a repeat; none for a row not made under a `claim` already used.
 * The deliveries are inserted in their unique key's order, whatever the batch's: two batches
 * making overlapping deliveries (a redelivered event beside its first copy) then wait for each
 * other's first shared one only, never each for one the other holds (a deadlock).
 * A delivery made before is skipped by NOT EXISTS, not ON CONFLICT DO NOTHING, whose speculative
 * insert writes each new delivery twice in the WAL (the row, then its confirmation): 3 records
 * per tip of ~70. Made once still rests on the unique key: a repeat that a concurrent
 * transaction writes is not in the statement's snapshot, so its insert waits on that
 * transaction; if it commits, the statement fails on the key (deliveryRace) and writes nothing,
 * and run again it finds the delivery. Nothing is made twice either way.
 */
async function insertDeliveries(
  tx: Queryable,
  planned: PlannedDelivery[],
  now: Date,
  claims: KeyClaim[],
  onClaimed: (p: PlannedDelivery, leasedFrom: number) => void = () => assert.fail("no delivery is claimed here"),
  carried?: CarriedRecords,
  commits = false,
): Promise<Map<PlannedDelivery, string>> {
  const ids = new Map<PlannedDelivery, string>();
  if (!planned.length) return ids;
  // One row per (source, recipient, channel): a batch holding one event twice writes it once.
  const first = new Map<string, PlannedDelivery>();
  for (const p of planned) if (!first.has(keyOf(p))) first.set(keyOf(p), p);
  const rows = [...first.values()];
  const values: unknown[] = [...PLANNED.map(([, , value]) => rows.map(value)), rows[0].event.subject, currentTraceparent() ?? null, now];
  const claimed = claims.length ? claimingManyCte(claims, values.length + 1) : undefined;
  const recorded = carried?.sends.length ? sentRecordCtes(carried.sends, values.length + (claimed?.values.length ?? 0) + 1) : undefined;
  // Before the statement is sent: the start of a transaction it is the first of is no earlier (leaseFrom).
  const sentAt = Date.now();
  const send = (text: string, params: unknown[]) => (commits ? commitWith<Written>(tx, text, params) : tx.query<Written>(text, params));
  const { rows: written } = await send(
    `WITH ${claimed ? `${claimed.sql},` : ""} ${recorded ? `${recorded.sql},` : ""} planned AS (
       SELECT ${PLANNED_COLUMNS}, out, first_provider IS NOT NULL AND NOT out AS first_claimed
         FROM ${PLANNED_UNNEST} AS p(${PLANNED_COLUMNS}),
              LATERAL (SELECT p.may_opt_out AND EXISTS (SELECT 1 FROM notification.sms_opt_outs o WHERE o.phone = p.address) AS out) o),
     delivery AS (
       INSERT INTO notification.deliveries
         (id, source_key, recipient_key, channel, user_id, address, address_masked, template_key, template_version, locale,
          subject, body, status, last_error, next_attempt_at, attempts)
       SELECT id, source_key, recipient_key, channel, user_id, address, address_masked, template_key, template_version, locale, subject, body,
              CASE WHEN out THEN 'failed' ELSE status END,
              CASE WHEN out THEN 'recipient texted STOP' ELSE last_error END,
              CASE WHEN out THEN ${NOW}::timestamptz ELSE next_attempt_at END,
              CASE WHEN first_claimed THEN 1 ELSE 0 END
         FROM planned${claimed ? " WHERE source_key IN (SELECT result_id FROM claimed)" : ""}
         ${claimed ? "AND" : "WHERE"} NOT EXISTS (SELECT 1 FROM notification.deliveries e
                          WHERE e.source_key = planned.source_key AND e.recipient_key = planned.recipient_key AND e.channel = planned.channel)
        ORDER BY source_key, recipient_key, channel
        RETURNING id),
     attempted AS (
       INSERT INTO notification.delivery_attempts (delivery_id, attempt, provider, status)
       SELECT p.id, 1, p.first_provider, 'sending' FROM delivery d JOIN planned p ON p.id = d.id WHERE p.first_claimed),
     announced AS (
       INSERT INTO notification.outbox (event_id, subject, payload, traceparent)
       SELECT CASE WHEN p.out THEN p.opted_event_id ELSE p.event_id END, ${FACT_SUBJECT}, CASE WHEN p.out THEN p.opted_payload ELSE p.payload END, ${TRACEPARENT}::text
         FROM delivery d JOIN planned p ON p.id = d.id WHERE p.out OR p.announced
       UNION ALL
       SELECT p.dispatch_event_id, p.dispatch_subject, p.payload, ${TRACEPARENT}::text
         FROM delivery d JOIN planned p ON p.id = d.id WHERE p.dispatch_event_id IS NOT NULL AND NOT p.out AND NOT p.first_claimed),
     shown AS (
       INSERT INTO notification.inapp_notifications (id, user_id, delivery_id, template_key, title, body, created_at)
       SELECT p.inapp_id, p.user_id, p.id, p.template_key, p.subject, p.body, p.next_attempt_at
         FROM delivery d JOIN planned p ON p.id = d.id WHERE p.inapp_id IS NOT NULL)
     SELECT p.id AS planned_id, d.id IS NOT NULL AS inserted, e.id AS existing_id, d.id IS NOT NULL AND p.first_claimed AS first_claimed,
            ${recorded ? "ARRAY(SELECT delivery_id::text FROM sent_early)" : "NULL::text[]"} AS early,
            (extract(epoch FROM statement_timestamp() - transaction_timestamp()) * 1000)::float8 AS began_ms_ago
       FROM planned p LEFT JOIN delivery d ON d.id = p.id
       LEFT JOIN LATERAL (
         SELECT e.id FROM notification.deliveries e
          WHERE d.id IS NULL AND e.source_key = p.source_key AND e.recipient_key = p.recipient_key AND e.channel = p.channel OFFSET 0) e ON true`,
    [...values, ...(claimed?.values ?? []), ...(recorded?.values ?? [])],
  );
  if (carried && recorded) carried.early = new Set(written[0].early ?? []);
  const byId = new Map(written.map((w) => [w.planned_id, w]));
  for (const p of planned) {
    const row = first.get(keyOf(p))!;
    const w = byId.get(row.id);
    const id = w?.inserted ? row.id : claimed ? undefined : w?.existing_id;
    if (id) ids.set(p, id);
  }
  for (const p of rows) if (p.inAppId && p.userId && byId.get(p.id)?.inserted) inAppSignals.emit(p.userId);
  // A claimed attempt's started_at is its transaction's start (now()), which may be well before this statement (a trigger's batch).
  const leasedFrom = sentAt - (written[0]?.began_ms_ago ?? 0);
  for (const p of rows) if (byId.get(p.id)?.first_claimed) onClaimed(p, leasedFrom);
  return ids;
}

/** A delivery's unique key: (source, recipient, channel). */
const keyOf = (p: PlannedDelivery) => `${p.sourceKey}\u0000${p.recipientKey}\u0000${p.channel}`;

/** Thrown to have the bus deliver the dispatch event again after its first wait (a second): planned, not a failure. */
export class RetryLater extends RedeliverSoon {}

/** A send's record given up (recordRefused): its error thrown, as the statement's was. */
function givenUp(refused: Error | undefined): void {
  if (refused) throw refused;
}

interface DeliveryRow {
  id: string;
  user_id: string | null;
  channel: Channel;
  template_key: TemplateKey;
  address: string;
  subject: string;
  body: string | null;
  status: DeliveryState;
  attempts: number;
  provider_index: number;
  provider_attempts: number;
  next_attempt_at: Date;
  parked: boolean;
}

/** A delivery whose number is to be asked for: whose, and since when. */
type PendingLookup = { userId: string; createdAt: Date };

/** A claim to send: its lease began at `leasedFrom` (this process's clock), at or before its attempt's started_at. */
type SendClaim = { kind: "send"; delivery: DeliveryRow; provider: Provider; attempt: number; leasedFrom: number };

type Claim = { kind: "done" } | { kind: "later" } | { kind: "resolve"; pending: PendingLookup } | SendClaim;

/** What a claim read says to do with the delivery (claim() does it under the row's lock). */
type NextStep =
  | { kind: "done" | "later" | "resolve" | "park" }
  | { kind: "in_doubt"; attempt: number }
  | { kind: "fail"; error: string }
  | { kind: "send"; provider: Provider };

/** The delivery as the claim reads it, with its number's STOP and its last attempt in the same round trip. */
interface ClaimedRow extends DeliveryRow {
  opted_out: boolean;
  last_attempt: number | null;
  last_status: string | null;
  last_started_at: Date | null;
  created_at: Date;
}

/**
 * A step that writes nothing, so needs no lock (claimManyUnlocked decides it on its
 * unlocked read): nothing to do (a final state only moves on by a new event), not
 * due yet (asked again later anyway), or a number to ask for. Undefined for the steps that write.
 */
function decidedWithoutWrites(row: ClaimedRow, step: NextStep): Claim | undefined {
  if (step.kind === "done" || step.kind === "later") return { kind: step.kind };
  if (step.kind === "resolve") return { kind: "resolve", pending: { userId: row.user_id!, createdAt: row.created_at } };
  return undefined;
}

function withoutClaimColumns(row: ClaimedRow): DeliveryRow {
  const { opted_out: _o, last_attempt: _a, last_status: _s, last_started_at: _t, created_at: _c, ...d } = row;
  return d;
}

export interface DispatcherOptions {
  pool: Pool;
  providers: Providers;
  retry: RetryConfig;
  logger: Logger;
  publicUrl: () => string;
  /** Deferrals longer than this are parked for the sweeper instead of redelivered. */
  parkAfterMs?: number;
  /** Where to find the number of a user we have none for (auth). */
  contacts?: ContactLookup;
  /** Counts attempts by channel, provider and outcome, and failovers. */
  metrics?: Metrics;
  /** When a delivery is due (quiet hours, retry backoff); leases and lookup patience stay on the wall clock. */
  clock?: Clock;
  /** How long a claimed send's record waits for a call's statement to carry it (default SENT_RECORD_WAIT_MS). */
  sentRecordWaitMs?: number;
  /** How many claimed sends may call their provider at once (default CLAIMED_SENDS_MAX). */
  claimedSendsMax?: number;
  /** How many claimed sends may wait for a turn (default CLAIMED_SENDS_WAITING_MAX). */
  claimedSendsWaitingMax?: number;
  /** The pause before a failed sent record's second try (default SENT_RECORD_RETRY_MS). */
  sentRecordRetryMs?: number;
}

/** A send the provider accepted, not yet recorded; with the trace it ran in. */
export interface AcceptedSend {
  d: DeliveryRow;
  provider: Provider;
  attempt: number;
  outcome: SendOutcome & { ok: true };
  traceparent: string | null;
  /** When its attempt's lease began (SendClaim's). */
  leasedFrom: number;
}

/** Runs one delivery's work in its own context (a trace span per delivery). */
type AroundSend = <T>(deliveryId: string, send: () => Promise<T>) => Promise<T>;

/** Deliveries dispatched together at most (one bus batch). */
export const DISPATCH_BATCH_MAX = 32;

/** A delivery with its number's STOP and its last attempt (the caller adds WHERE); its columns are CLAIM_COLUMNS. */
const CLAIM_SELECT = `SELECT d.id, d.user_id, d.channel, d.template_key, d.address, d.subject, d.body, d.status, d.attempts, d.provider_index, d.provider_attempts,
              d.next_attempt_at, d.parked, EXISTS (SELECT 1 FROM notification.sms_opt_outs o WHERE o.phone = d.address) AS opted_out,
              a.attempt AS last_attempt, a.status AS last_status, a.started_at AS last_started_at, d.created_at
         FROM notification.deliveries d
         LEFT JOIN LATERAL (SELECT attempt, status, started_at FROM notification.delivery_attempts
                             WHERE delivery_id = d.id ORDER BY attempt DESC LIMIT 1) a ON true`;

/** CLAIM_SELECT's columns in its order (a ClaimedRow), for a statement reading them again without `*` (which is not prepared). */
const CLAIM_COLUMNS = `id, user_id, channel, template_key, address, subject, body, status, attempts, provider_index, provider_attempts,
              next_attempt_at, parked, opted_out, last_attempt, last_status, last_started_at, created_at`;

/** The accepted sends' columns' types (sentRecordCtes' unnest): delivery_id, attempt, message_id, provider, event_id, payload, traceparent. */
const ACCEPTED_TYPES = ["uuid", "int", "text", "text", "uuid", "bytea", "text"];

/**
 * The record of sends the providers accepted, as CTEs for a statement of its own (recordSent) or
 * for one a call writes anyway (insertDeliveries carries them): for each, the attempt, the
 * delivery and its "sent" fact, and the provider's message id (provider_messages: see
 * MESSAGE_DELIVERY), atomic without BEGIN/COMMIT. Left out: one with a status report
 * that arrived before (in `sent_early`, for record() to apply the reports in order), and one whose
 * attempt is no longer 'sending' (another dispatcher declared it in doubt after its lease: the
 * delivery stays as that one left it). Each delivery is locked before its attempt, as claim() locks
 * them (a record the other way round and a look declaring the attempt in doubt would each hold what the
 * other waits for): by its own update (sent_updated), which the attempt's update reads. No FOR UPDATE
 * before it: that lock was a WAL record per send, beside the update's. The update applies only while
 * the delivery is as its claim left it (updated_at no later than the attempt's start, which the claim
 * wrote with it): everyone but the sender who moves a 'sending' attempt on touches its delivery in the
 * same statement (declareInDoubt), so a look that declared it in doubt after this statement's snapshot
 * is seen when the update, having waited for its lock, reads the row again; one before it, by the join.
 * Parameters from `first` on.
 */
function sentRecordCtes(sends: AcceptedSend[], first: number): { sql: string; values: unknown[] } {
  assert(sends.length > 0 && sends.length <= SENT_RECORDS_MAX, "sent records out of range");
  const events = sends.map((s) => updateEvent(s.d, "sent"));
  const [subject, otp] = [`$${first + ACCEPTED_TYPES.length}`, `$${first + ACCEPTED_TYPES.length + 1}`];
  return {
    sql: `sent_in AS (
         SELECT * FROM ${opaqueUnnest(ACCEPTED_TYPES, first)}
           AS s(delivery_id, attempt, message_id, provider, event_id, payload, traceparent)),
       sent_early AS (
         SELECT s.delivery_id FROM sent_in s WHERE s.message_id <> '' AND EXISTS (
           SELECT 1 FROM notification.provider_callbacks c WHERE c.provider = s.provider AND c.message_id = s.message_id AND NOT c.applied AND c.status <> '')),
       sent_updated AS (
         UPDATE notification.deliveries d SET status = 'sent', last_error = NULL, body = CASE WHEN d.template_key = ${otp} THEN NULL ELSE d.body END, updated_at = now()
           FROM sent_in s JOIN notification.delivery_attempts a ON a.delivery_id = s.delivery_id AND a.attempt = s.attempt AND a.status = 'sending'
          WHERE d.id = s.delivery_id AND d.updated_at <= a.started_at AND s.delivery_id NOT IN (SELECT delivery_id FROM sent_early)
          RETURNING s.delivery_id, s.attempt, s.message_id, s.provider, s.event_id, s.payload, s.traceparent),
       sent_attempted AS (
         UPDATE notification.delivery_attempts a SET status = 'sent', provider_message_id = s.message_id, error = '', finished_at = now()
           FROM sent_updated s
          WHERE a.delivery_id = s.delivery_id AND a.attempt = s.attempt AND a.status = 'sending'
          RETURNING s.delivery_id, s.attempt, s.message_id, s.provider, s.event_id, s.payload, s.traceparent),
       sent_announced AS (INSERT INTO notification.outbox (event_id, subject, payload, traceparent) SELECT event_id, ${subject}, payload, traceparent FROM sent_attempted),
       sent_message AS (
         INSERT INTO notification.provider_messages (provider, message_id, delivery_id) SELECT provider, message_id, delivery_id FROM sent_attempted WHERE message_id <> '')`,
    values: [
      sends.map((s) => s.d.id), sends.map((s) => s.attempt), sends.map((s) => s.outcome.messageId), sends.map((s) => s.provider.name),
      events.map((e) => e.id), events.map((e) => e.data), sends.map((s) => s.traceparent), events[0].subject, TemplateKey.OTP,
    ],
  };
}

/** Sent records one statement writes at most (a dispatch batch's worth). */
const SENT_RECORDS_MAX = 32;
/**
 * Claimed sends calling their provider at once; the others wait their turn here. As many as the
 * HTTP client's sockets, so a send's timeout never counts time spent queued for a socket: a burst
 * of 100 receipts, or a slow provider, would otherwise time its tail out and spend its tries.
 */
const CLAIMED_SENDS_MAX = HTTP_MAX_SOCKETS;
/**
 * Claimed sends waiting for a turn at most (this process's memory): what the turns start within a
 * lease when the provider is at its slowest (each turn held a provider timeout: 64 x 60 s / 10 s at
 * the defaults), a few payment passes' receipts. Past it a send's claim is given back and the bus
 * holds its work (Dispatcher.releaseClaim), not this process.
 */
const CLAIMED_SENDS_WAITING_MAX = 6 * CLAIMED_SENDS_MAX;
/**
 * How long a claimed send's record waits for a call's statement to carry it before it is written
 * alone: under load calls come more often than this, so the records cost no commit of their own;
 * the wait only delays the 'sent' status (the message is with the provider already).
 */
const SENT_RECORD_WAIT_MS = 30;
/**
 * The pause before a failed sent record's second try, longer before each next up to
 * SENT_RECORD_RETRY_MAX_MS: a failover's few seconds to a minute are tried through, a try every
 * few seconds at most, while the sends' leases last (recordSent).
 */
const SENT_RECORD_RETRY_MS = 500;
const SENT_RECORD_RETRY_MAX_MS = 5_000;

/** The longest pause between two rounds of a channel's providers. */
const ROUND_PAUSE_MAX_MS = 30 * 60_000;

/** How long a delivery waits for an unreachable contact lookup before it fails. */
const LOOKUP_PATIENCE_MS = 15 * 60_000;
/**
 * After a failed contact lookup this dispatcher asks auth again only after a pause, doubled after each
 * failure up to the most: every delivery waiting on a number comes back each second (the bus's redelivery),
 * and asking for each would hammer auth while it recovers.
 */
const LOOKUP_PAUSE_MS = 1_000;
const LOOKUP_PAUSE_MAX_MS = 30_000;

/**
 * Sends one delivery through its channel's providers. Each attempt is
 * committed as 'sending' before the HTTP call and settled after it, so a
 * crash in between leaves an attempt that is declared in doubt once its lease
 * runs out (and sent again once, unless a sign-in code: see decide()). Transient errors back off exponentially
 * and are retried by redelivery; after the attempts allowed per provider, or
 * at once when a provider refuses outright, the next provider takes over.
 */
export class Dispatcher {
  /** Sends of deliveries claimed at enqueue (sendClaimed) still running, and calls' statements that may yet claim some (claiming): drain() waits for them. */
  private readonly claimedSends = new Set<Promise<void>>();
  /** Their acceptances, when no call's statement carried them: recorded as they come (a group commit, as runMany's). */
  private readonly claimedRecords = new GroupCommit<AcceptedSend, Error | undefined>(DISPATCH_BATCH_MAX, (sends) => this.recordAccepted(sends));
  /** Their acceptances waiting for a call's statement to carry them (takeSentRecords), for SENT_RECORD_WAIT_MS at most. */
  private readonly unrecorded: { send: AcceptedSend; done: (err?: unknown) => void }[] = [];
  private recordTimer: NodeJS.Timeout | undefined;
  /** Claimed sends calling their provider now, and those waiting for a turn (sendSlot). */
  private sending = 0;
  /** Aborted once stopping gives up on sends still out (stopBy's deadline). */
  private readonly stopped = new AbortController();
  private stopTimer: NodeJS.Timeout | undefined;
  /** drain() has returned: a send claimed from now on is not made (sendClaimed). */
  private drained = false;
  private readonly waitingForSlot: (() => void)[] = [];
  /** No contact lookup before `until` (the last failed); `ms`: the pause it set (LOOKUP_PAUSE_MS). */
  private lookupPause = { until: 0, ms: 0 };

  constructor(private readonly o: DispatcherOptions) {
    // Each record between tries waits on it (recordSent): as many as the groups of records out at once.
    setMaxListeners(0, this.stopped.signal);
  }

  /** Each channel's first provider, for enqueueClaiming to claim a delivery's first attempt for. */
  firstProviders(): FirstProviders {
    return new Map([Channel.SMS, Channel.EMAIL].flatMap((channel) => (this.providersFor(channel)[0] ? [[channel, this.providersFor(channel)[0].name] as const] : [])));
  }

  /**
   * Sends deliveries their own statement claimed (enqueueClaiming), in the background: each
   * as attempt() sends a claimed one, its acceptance recorded with others. What is not over
   * after the attempt (a retry, a failover) is handed to the bus in the attempt's record
   * (the work a dispatch consumer would have), and anything unexpected too, so it is never
   * left without a dispatcher. A crash before the provider is called leaves an attempt
   * 'sending', as one between a dispatcher's claim and its call does: found by
   * redispatchStranded, declared in doubt and sent again once (see decide()). A send whose
   * turn came late renews its lease first (renewLease), so it is never sent beside that resend.
   * One with no room to wait for a turn (a slow provider holds them all) gives its claim back
   * (releaseClaim): a dispatch consumer sends it.
   */
  sendClaimed(claimed: readonly ClaimedAtEnqueue[]): void {
    for (const c of claimed) {
      const provider = this.providersFor(c.delivery.channel).find((p) => p.name === c.provider);
      const send = (async () => {
        if (!provider) throw new Error(`no provider ${c.provider} for ${CHANNEL_NAMES[c.delivery.channel]}`);
        if (!(await this.sendSlot())) return this.releaseClaim(c.delivery);
        let accepted: AcceptedSend | undefined;
        try {
          // drain() has returned: the pool closes next, under this send's record, and the look would send it again (two
          // texts). A trigger's batch the stop stopped waiting for may commit this late. Left 'sending', as a crash before
          // the call leaves it: the look sends it once after its lease.
          if (this.drained) {
            this.o.logger.warn({ deliveryId: c.delivery.id }, "claimed after stopping gave up: not sent now, left 'sending' for the look");
            return;
          }
          // The lease covers a provider timeout or two from the claim's transaction (checkRetryConfig), not a long wait for a turn.
          const leasedFrom = Date.now() - c.leasedFrom < this.o.retry.httpTimeoutMs ? c.leasedFrom : await this.renewLease(c.delivery.id, c.delivery.attempts);
          if (leasedFrom === undefined) return;
          accepted = await this.attempt(c.delivery.id, { kind: "send", delivery: c.delivery, provider, attempt: c.delivery.attempts, leasedFrom }, true);
        } finally {
          this.releaseSendSlot();
        }
        if (accepted) await this.recordClaimed(accepted);
      })().catch((err: unknown) => this.handOver(c.delivery, err));
      this.claimedSends.add(send);
      void send.finally(() => this.claimedSends.delete(send));
    }
  }

  /**
   * A claimed send's lease taken again from now, its turn having come late (a slow provider held
   * every turn): its attempt's lease ran from the claim, and another dispatcher (the stranded look)
   * may have found it out of lease, declared it in doubt and sent it again; this one then must not
   * go too. False: it is no longer 'sending' (that one has it). The declaration is a compare-and-set
   * on the lease (decide()), so one of the two wins, never both. Answers when the renewed lease began.
   */
  private async renewLease(deliveryId: string, attempt: number): Promise<number | undefined> {
    const renewing = Date.now();
    const { rowCount } = await this.o.pool.query(
      "UPDATE notification.delivery_attempts SET started_at = now() WHERE delivery_id = $1 AND attempt = $2 AND status = 'sending'",
      [deliveryId, attempt],
    );
    return rowCount === 1 ? renewing : undefined;
  }

  /** Waits for one of the claimedSendsMax turns to call a provider; false at once when claimedSendsWaitingMax already wait. */
  private async sendSlot(): Promise<boolean> {
    if (this.sending < (this.o.claimedSendsMax ?? CLAIMED_SENDS_MAX)) {
      this.sending++;
      return true;
    }
    if (this.waitingForSlot.length >= (this.o.claimedSendsWaitingMax ?? CLAIMED_SENDS_WAITING_MAX)) return false;
    await new Promise<void>((resolve) => this.waitingForSlot.push(resolve));
    return true;
  }

  /**
   * A claimed send that never called its provider gives its claim back: its attempt is deleted and
   * the delivery queued again as it was written (its attempt count back, a dispatch message), so a
   * dispatch consumer claims and sends it once, at once, a sign-in code too (an attempt left
   * 'sending' would wait out its lease and be resent as in doubt, or failed). Under the delivery's
   * lock, taken first as claim() takes it; only while the attempt is still 'sending': a look that
   * declared it in doubt after its lease has it then.
   */
  private async releaseClaim(d: DeliveryRow): Promise<void> {
    await withTransaction(this.o.pool, async (tx) => {
      await tx.query("SELECT 1 FROM notification.deliveries WHERE id = $1 FOR UPDATE", [d.id]);
      const { rowCount } = await tx.query("DELETE FROM notification.delivery_attempts WHERE delivery_id = $1 AND attempt = $2 AND status = 'sending'", [d.id, d.attempts]);
      if (rowCount !== 1) return;
      const queued = { ...d, attempts: d.attempts - 1 };
      await tx.query("UPDATE notification.deliveries SET attempts = $2, updated_at = now() WHERE id = $1 AND attempts = $3", [d.id, queued.attempts, d.attempts]);
      await writeOutbox(tx, "notification", dispatchMessage(updateEvent(queued, "queued"), d.id));
    });
  }

  /** Hands the turn to the next send waiting, if any (the count stays taken), else gives it back. */
  private releaseSendSlot(): void {
    const next = this.waitingForSlot.shift();
    if (next) next();
    else this.sending--;
  }

  /**
   * A claimed send's acceptance, recorded by the next statement a call writes (takeSentRecords),
   * or by one of its own if none comes within SENT_RECORD_WAIT_MS: busy, the records cost no
   * statement and no commit of their own; quiet, one statement for those of the wait.
   */
  private recordClaimed(send: AcceptedSend): Promise<void> {
    const recorded = new Promise<void>((resolve, reject) => this.unrecorded.push({ send, done: (err) => (err === undefined ? resolve() : reject(err)) }));
    this.recordTimer ??= setTimeout(() => {
      this.recordTimer = undefined;
      this.recordAlone(this.unrecorded.splice(0));
    }, this.o.sentRecordWaitMs ?? SENT_RECORD_WAIT_MS);
    return recorded;
  }

  private recordAlone(items: { send: AcceptedSend; done: (err?: unknown) => void }[]): void {
    for (const i of items) this.claimedRecords.add(i.send).then(givenUp).then(() => i.done(), (err: unknown) => i.done(err));
  }

  /**
   * The acceptances waiting for their record, for the statement a call is about to write (enqueueClaiming's
   * `carried`), and what to call once it has run (or failed): those it wrote are done (each with a status
   * report that came first recorded by record(), one by one); those it did not write are recorded alone.
   */
  takeSentRecords(): { carried: CarriedRecords; settle: () => Promise<void> } | undefined {
    if (!this.unrecorded.length) return undefined;
    const items = this.unrecorded.splice(0, SENT_RECORDS_MAX);
    if (!this.unrecorded.length && this.recordTimer) {
      clearTimeout(this.recordTimer);
      this.recordTimer = undefined;
    }
    const carried: CarriedRecords = { sends: items.map((i) => i.send) };
    const settle = async () => {
      // Unwritten: the statement failed (or never ran). Written twice, a record changes nothing: it is only of 'sending' attempts.
      if (!carried.early) return this.recordAlone(items);
      try {
        await this.recordEarly(carried.sends, carried.early);
        for (const i of items) i.done();
      } catch (err) {
        for (const i of items) i.done(err);
      }
    };
    return { carried, settle };
  }

  /** A claimed send that did not end as planned: its delivery's work, to the bus. */
  private async handOver(d: DeliveryRow, err: unknown): Promise<void> {
    if (err instanceof RetryLater) return; // its record handed it over
    this.o.logger.error({ err, deliveryId: d.id }, "a send claimed at enqueue failed; left to a dispatcher");
    try {
      await writeOutbox(this.o.pool, "notification", dispatchMessage(updateEvent(d, "queued"), d.id));
    } catch (lost) {
      // The database is out of reach: redispatchStranded finds the delivery later.
      this.o.logger.error({ err: lost, deliveryId: d.id }, "handing a claimed send to a dispatcher failed");
    }
  }

  /**
   * Runs `write`, a call's statement that may claim sends for this dispatcher (enqueueClaiming), with
   * drain() waiting for it as for the sends it claims. A call still writing when the service stops
   * (an in-process call, which the server's drain does not hold, or one past its drain timeout)
   * then sends and records what it claimed before the pool closes, instead of leaving an attempt
   * 'sending' that a later look declares in doubt and sends only once its lease is over.
   */
  claiming<T>(write: () => Promise<T>): Promise<T> {
    const writing = write();
    const settled = writing.then(
      () => undefined,
      () => undefined,
    );
    this.claimedSends.add(settled);
    void settled.finally(() => this.claimedSends.delete(settled));
    return writing;
  }

  /**
   * Stopping: by `deadline` (this process's clock) the records still being tried give up (recordSent) and
   * drain() stops waiting, so a stop with the database down ends within the pod's grace, not the lease.
   */
  stopBy(deadline: number): void {
    if (this.stopTimer || this.stopped.signal.aborted) return;
    this.stopTimer = setTimeout(() => this.stopped.abort(), Math.max(0, deadline - Date.now()));
  }

  /**
   * Waits for the sends sendClaimed started, and for the calls that may yet claim some (shutdown), until
   * stopBy's deadline at most. Answers how many were still out: their attempts stay 'sending', and a look
   * sends them again once their lease is over, as after a crash. A send claimed after it returns is not made (sendClaimed).
   */
  async drain(): Promise<number> {
    const { signal } = this.stopped;
    const over = new Promise<true>((resolve) => (signal.aborted ? resolve(true) : signal.addEventListener("abort", () => resolve(true), { once: true })));
    while (this.claimedSends.size) {
      if ((await Promise.race([Promise.allSettled([...this.claimedSends]), over])) === true) break;
    }
    clearTimeout(this.stopTimer);
    this.drained = true;
    const left = this.claimedSends.size;
    if (left) this.o.logger.warn({ sends: left }, "stopped with sends still out: left 'sending', sent again once their lease is over");
    return left;
  }

  private providersFor(channel: Channel): Provider[] {
    if (channel === Channel.SMS) return this.o.providers.sms;
    if (channel === Channel.EMAIL) return this.o.providers.email;
    if (channel === Channel.PUSH) return this.o.providers.push;
    return [];
  }

  private backoff(providerAttempts: number): number {
    return Math.min(this.o.retry.maxDelayMs, this.o.retry.baseDelayMs * 2 ** Math.max(0, providerAttempts - 1));
  }

  /** Resolves when the delivery needs nothing more now; throws RetryLater when it is due again soon. */
  async run(deliveryId: string): Promise<void> {
    const accepted = await this.attempt(deliveryId);
    if (accepted) givenUp((await this.recordAccepted([accepted]))[0]);
  }

  /**
   * Claims the delivery and sends it; records any outcome but an acceptance,
   * which is returned for the caller to record (with others, in runMany).
   * `claimed`: what claimManyUnlocked decided, null when it left the delivery to claim().
   */
  private async attempt(deliveryId: string, claimed?: Claim | null, withoutBusMessage = false): Promise<AcceptedSend | undefined> {
    let claim = claimed ?? (claimed === null ? undefined : await this.claimUnlocked(deliveryId)) ?? (await this.claimLocked(deliveryId, true));
    if (claim.kind === "resolve") {
      // Rare (a user we have no number for): ask, then claim again.
      await this.resolveAddress(deliveryId, claim.pending);
      claim = (await this.claimUnlocked(deliveryId, false)) ?? (await this.claimLocked(deliveryId, false));
    }
    if (claim.kind === "done" || claim.kind === "resolve") return undefined;
    if (claim.kind === "later") throw new RetryLater(`delivery ${deliveryId} not due yet`);
    const { delivery: d, provider, attempt, leasedFrom } = claim;
    const outcome = await this.send(d, provider);
    this.o.metrics
      ?.counterFamily("ttip_notification_deliveries_total", "Delivery attempts by channel, provider and outcome (sent, or the failure's kind).", ["channel", "provider", "status"])
      .inc({ channel: CHANNEL_NAMES[d.channel], provider: provider.name, status: outcome.ok ? "sent" : outcome.kind });
    // The trace the send ran in, for its "sent" fact however late that is written.
    if (outcome.ok) return { d, provider, attempt, outcome, traceparent: currentTraceparent() ?? null, leasedFrom };
    const state = await withTransaction(this.o.pool, (tx) => this.record(tx, d, provider, attempt, outcome, withoutBusMessage));
    // Counted once committed: an attempt rolled back and run again moves the delivery once.
    if (state === "failed over") {
      this.o.metrics
        ?.counter("ttip_notification_provider_failovers_total", "Deliveries moved to the channel's next provider, by the provider given up on.", ["channel", "provider"])
        .inc({ channel: CHANNEL_NAMES[d.channel], provider: provider.name });
    }
    if (state === "retrying" || state === "failed over") throw new RetryLater(`delivery ${deliveryId} will be retried`);
    return undefined;
  }

  /**
   * Several deliveries at once: the usual case (each to be sent now) is read and
   * claimed in one statement each for all of them, not two per delivery; the
   * sends go on concurrently, and each the provider accepted is recorded as soon as
   * it is answered, with those answered while the previous record was being written
   * (a group commit): a slow answer holds no other send's record (anything else is recorded
   * as in run(), one by one). Any other case, or a lost claim, is decided
   * under the row's lock (claim()). Throws the first failure (a RetryLater, say) once all are
   * recorded, so the caller has them delivered again: those done meanwhile then
   * read as done.
   */
  async runMany(deliveryIds: string[], around: AroundSend = (_id, send) => send()): Promise<void> {
    assert(deliveryIds.length <= DISPATCH_BATCH_MAX, "dispatch batch too large");
    const ids = [...new Set(deliveryIds)];
    const claims = await this.claimManyUnlocked(ids);
    // Accepted sends, recorded as they come (a group commit): a send's record waits for at most
    // the statement before it, never for a slower send of its batch, and sends answered
    // together still share one statement.
    const records = new GroupCommit<AcceptedSend, Error | undefined>(DISPATCH_BATCH_MAX, (sends) => this.recordAccepted(sends, around));
    const results = await Promise.allSettled(
      ids.map((id) =>
        around(id, async () => {
          const accepted = await this.attempt(id, claims.get(id) ?? null);
          if (accepted) givenUp(await records.add(accepted));
        }),
      ),
    );
    const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
    if (failed) throw failed.reason;
  }

  /**
   * Sends the providers accepted (a group of the records' group commit): recorded in one statement; one whose
   * status report arrived first is recorded alone, by record(), which applies the report. Answers, per send,
   * why its record was given up (recordSent), else undefined.
   */
  private async recordAccepted(sends: AcceptedSend[], around: AroundSend = (_id, send) => send()): Promise<(Error | undefined)[]> {
    const { early, refused } = await this.recordSent(sends);
    await this.recordEarly(sends, early, around);
    return sends.map((s) => refused.get(s.d.id));
  }

  /** The sends a record left out (`early`: a status report came first), each recorded by record(), which applies the reports. */
  private async recordEarly(sends: AcceptedSend[], early: Set<string>, around: AroundSend = (_id, send) => send()): Promise<void> {
    for (const s of sends) {
      if (early.has(s.d.id)) await around(s.d.id, () => withTransaction(this.o.pool, (tx) => this.record(tx, s.d, s.provider, s.attempt, s.outcome)));
    }
  }

  /**
   * The usual case without a transaction, for many deliveries in one statement: each is read
   * and, when it is to be sent now, claimed by its attempt count (compare and set: a delivery
   * another dispatcher claimed or changed since the statement's snapshot is not claimed), its
   * attempt recorded as sending. The statement sends what nextStep() sends, by the same rules;
   * a step that writes nothing is said at once (decidedWithoutWrites). By delivery id; a missing one
   * (a lost race, or a step that writes) is left to claim(), under the row's lock.
   */
  private async claimManyUnlocked(ids: string[], mayResolve = true): Promise<Map<string, Claim>> {
    const claims = new Map<string, Claim>();
    const now = (this.o.clock ?? systemClock).now();
    const slots = [Channel.SMS, Channel.EMAIL, Channel.PUSH].flatMap((channel) => this.providersFor(channel).map((p, index) => ({ channel, index, name: p.name })));
    const leasedFrom = Date.now();
    const { rows } = await this.o.pool.query<ClaimedRow & { claimed: boolean }>(
      `WITH read AS (${CLAIM_SELECT} WHERE d.id = ANY(${opaqueArray(1, "uuid")})),
       slots AS (SELECT * FROM ${opaqueUnnest(["smallint", "smallint", "text"], 2)} AS p(channel, index, name)),
       wanted AS (
         SELECT r.id, r.attempts, r.status, p.name AS provider FROM read r JOIN slots p ON p.channel = r.channel AND p.index = r.provider_index
          WHERE r.status IN ('queued', 'retrying') AND NOT r.parked AND r.next_attempt_at <= $5 AND r.body IS NOT NULL
            AND r.last_status IS DISTINCT FROM 'sending'
            AND NOT (r.channel = $6 AND r.address = '' AND r.user_id IS NOT NULL)
            AND NOT (r.channel = $6 AND r.template_key <> $7 AND r.opted_out)),
       claimed AS (
         UPDATE notification.deliveries d SET attempts = w.attempts + 1, updated_at = now() FROM wanted w
          WHERE d.id = w.id AND d.attempts = w.attempts AND d.status = w.status AND NOT d.parked RETURNING d.id, w.attempts + 1 AS attempt, w.provider),
       attempted AS (
         INSERT INTO notification.delivery_attempts (delivery_id, attempt, provider, status) SELECT id, attempt, provider, 'sending' FROM claimed RETURNING delivery_id)
       SELECT ${CLAIM_COLUMNS}, id IN (SELECT delivery_id FROM attempted) AS claimed FROM read`,
      [ids, slots.map((s) => s.channel), slots.map((s) => s.index), slots.map((s) => s.name), new Date(now), Channel.SMS, TemplateKey.OTP],
    );
    for (const id of ids) if (!rows.some((r) => r.id === id)) claims.set(id, { kind: "done" });
    for (const { claimed, ...row } of rows) {
      const step = this.nextStep(row, mayResolve, now);
      if (claimed) {
        assert(step.kind === "send" && step.provider.name === slots.find((s) => s.channel === row.channel && s.index === row.provider_index)?.name, "claimed a delivery nextStep does not send");
        const d = withoutClaimColumns(row);
        claims.set(d.id, { kind: "send", delivery: { ...d, attempts: d.attempts + 1 }, provider: step.provider, attempt: d.attempts + 1, leasedFrom });
        continue;
      }
      const decided = decidedWithoutWrites(row, step);
      if (decided) claims.set(row.id, decided);
    }
    return claims;
  }

  /**
   * An SMS to a user whose number we lacked: ask auth (outside any
   * transaction: embedded mode has one connection, which auth needs too) and
   * keep the answer in recipients for next time. `pending`: the delivery as the
   * claim read it.
   */
  private async resolveAddress(id: string, pending: PendingLookup): Promise<void> {
    let contact: Awaited<ReturnType<ContactLookup>> = null;
    let error = "no phone number on file";
    const paused = Date.now() < this.lookupPause.until;
    try {
      if (paused) throw new Error(`a lookup failed moments ago; the next after ${new Date(this.lookupPause.until).toISOString()}`);
      contact = this.o.contacts ? await this.o.contacts(pending.userId) : null;
      this.lookupPause = { until: 0, ms: 0 };
    } catch (err) {
      if (!paused) {
        const ms = Math.min(LOOKUP_PAUSE_MAX_MS, Math.max(LOOKUP_PAUSE_MS, this.lookupPause.ms * 2));
        this.lookupPause = { until: Date.now() + ms, ms };
      }
      if (Date.now() - pending.createdAt.getTime() < LOOKUP_PATIENCE_MS) throw new RetryLater(`phone lookup failed: ${(err as Error).message}`);
      error = "phone lookup kept failing";
    }
    if (!contact?.phone) {
      await withTransaction(this.o.pool, async (tx) => {
        // Still open and still without a number: another dispatcher may have failed it, or given it one, meanwhile.
        const locked = await tx.query<DeliveryRow>(
          "SELECT id, user_id, channel, template_key, attempts FROM notification.deliveries WHERE id = $1 AND address = '' AND status IN ('queued', 'retrying') FOR UPDATE",
          [id],
        );
        if (locked.rows[0]) await this.finish(tx, locked.rows[0], "failed", error);
      });
      return;
    }
    const phone = normalisePhone(contact.phone);
    // Kept for next time, and given to the delivery while it still has none: one statement, no transaction.
    await this.o.pool.query(
      `WITH kept AS (
         INSERT INTO notification.recipients (user_id, phone, locale) VALUES ($4, $2, $5)
         ON CONFLICT (user_id) DO UPDATE SET phone = COALESCE(recipients.phone, EXCLUDED.phone),
           locale = CASE WHEN recipients.locale = '' THEN EXCLUDED.locale ELSE recipients.locale END, updated_at = now())
       UPDATE notification.deliveries SET address = $2, address_masked = $3, updated_at = now() WHERE id = $1 AND address = ''`,
      [id, phone, maskPhone(phone), pending.userId, contact.locale],
    );
  }

  /** The delivery with its number's STOP and its last attempt, in one round trip. */
  private async readClaim(db: Queryable, id: string): Promise<ClaimedRow | undefined> {
    const { rows } = await db.query<ClaimedRow>(`${CLAIM_SELECT} WHERE d.id = $1`, [id]);
    return rows[0];
  }

  /** claimManyUnlocked for one. */
  private async claimUnlocked(id: string, mayResolve = true): Promise<Claim | undefined> {
    return (await this.claimManyUnlocked([id], mayResolve)).get(id);
  }

  /** claim() in a transaction of its own, a send's lease counted from before its BEGIN. */
  private claimLocked(id: string, mayResolve: boolean): Promise<Claim> {
    const leasedFrom = Date.now();
    return withTransaction(this.o.pool, (tx) => this.claim(tx, id, mayResolve, leasedFrom));
  }

  private async claim(tx: Queryable, id: string, mayResolve: boolean, leasedFrom: number): Promise<Claim> {
    // Locked first, read after, in a statement of its own: a read that waits for the lock
    // (FOR UPDATE) sees the delivery as the holder left it but its attempts as they were
    // before, so it would miss the attempt the holder just marked sending and send again.
    const { rowCount } = await tx.query("SELECT 1 FROM notification.deliveries WHERE id = $1 FOR UPDATE", [id]);
    if (rowCount === 0) return { kind: "done" };
    const row = await this.readClaim(tx, id);
    if (!row) return { kind: "done" };
    return this.decide(tx, row, this.nextStep(row, mayResolve), mayResolve, leasedFrom);
  }

  /** Does what `step` says with the delivery `row`, read under its lock (claim(), whose transaction began after `leasedFrom`). */
  private async decide(tx: Queryable, row: ClaimedRow, step: NextStep, mayResolve: boolean, leasedFrom: number): Promise<Claim> {
    const d = withoutClaimColumns(row);
    switch (step.kind) {
      case "done":
      case "later":
      case "resolve":
        return decidedWithoutWrites(row, step)!;
      case "park":
        await tx.query("UPDATE notification.deliveries SET parked = true, updated_at = now() WHERE id = $1", [d.id]);
        return { kind: "done" };
      case "in_doubt": {
        // The process died between claiming the send and recording the answer: the provider may
        // have it, or never have been called (a send claimed at enqueue waits for a slot first).
        const doubted = { ...row, last_status: "in_doubt" };
        // What comes after the resend's go-ahead (a number that texted STOP meanwhile fails instead), for the attempt's note.
        const next = (await this.resendsAfterCrash(tx, row)) ? this.nextStep(doubted, mayResolve) : undefined;
        // Only while still 'sending' and out of lease: a claimed send that renewed its lease since
        // it was read (renewLease) is going out, and must not be resent beside it.
        const note = next?.kind === "send" ? "no answer recorded (crash during send); sent again" : "no answer recorded (crash during send)";
        if (!(await declareInDoubt(tx, d.id, step.attempt, note, this.o.retry.sendLeaseMs))) return { kind: "later" };
        if (next) return this.decide(tx, doubted, next, mayResolve, leasedFrom);
        await this.finish(tx, d, "failed", "in doubt: a send was cut off; not resent to avoid a duplicate");
        return { kind: "done" };
      }
      case "fail":
        await this.finish(tx, d, "failed", step.error);
        return { kind: "done" };
      case "send":
        // Under the row's lock, read after it was taken: nobody can have claimed it since.
        assert(await this.markSending(tx, d, step.provider), "a delivery locked and read changed before its claim");
        return { kind: "send", delivery: { ...d, attempts: d.attempts + 1 }, provider: step.provider, attempt: d.attempts + 1, leasedFrom };
    }
  }

  /**
   * Whether a send cut off by a crash is sent again: once per delivery, and never a sign-in code.
   * A message late (or, when the provider had it after all, twice) is better than one lost: a
   * receipt or a tip's notice carries its reference, so a repeat reads as the same message, and an
   * SMS costs a few shillings, not a payment. A sign-in code is not: by then it may have expired,
   * and the user asks for a new one. Once only: a second crash on the resend fails it.
   */
  private async resendsAfterCrash(tx: Queryable, row: ClaimedRow): Promise<boolean> {
    if (row.template_key === TemplateKey.OTP) return false;
    const { rowCount } = await tx.query("SELECT 1 FROM notification.delivery_attempts WHERE delivery_id = $1 AND status = 'in_doubt' LIMIT 1", [row.id]);
    return rowCount === 0;
  }

  /** What to do with a delivery as read (pure: the caller writes what it says). */
  private nextStep(row: ClaimedRow, mayResolve: boolean, now = (this.o.clock ?? systemClock).now()): NextStep {
    const { opted_out: optedOut, last_attempt: lastAttempt, last_status: lastStatus, last_started_at: lastStartedAt } = row;
    // An SMS to a user whose number we lack: looked up outside any transaction (see resolveAddress).
    if (row.channel === Channel.SMS && row.address === "" && row.user_id && ["queued", "retrying"].includes(row.status)) return { kind: mayResolve ? "resolve" : "later" };
    if (row.parked || !["queued", "retrying"].includes(row.status)) return { kind: "done" };
    const wait = row.next_attempt_at.getTime() - now;
    if (wait > (this.o.parkAfterMs ?? 30_000)) return { kind: "park" };
    if (wait > 0) return { kind: "later" };
    if (lastAttempt !== null && lastStatus === "sending") {
      return Date.now() - lastStartedAt!.getTime() < this.o.retry.sendLeaseMs ? { kind: "later" } : { kind: "in_doubt", attempt: lastAttempt };
    }
    // A STOP that came in after the message was queued still counts.
    // SMS addresses are stored normalised (enqueue, resolveAddress), as opt-outs are.
    if (row.channel === Channel.SMS && row.template_key !== TemplateKey.OTP && optedOut) return { kind: "fail", error: "recipient texted STOP" };
    // A delivery waiting on a provider since switched off (its credentials removed) starts the round again from the first.
    const providers = this.providersFor(row.channel);
    const provider = providers[row.provider_index] ?? providers[0];
    if (!provider || row.body === null) return { kind: "fail", error: "no provider for this channel" };
    return { kind: "send", provider };
  }

  /**
   * The next attempt, recorded as sending before the provider is called; only while the
   * delivery is as `d` was read (same attempt count and status, not parked). False: it was not.
   */
  private async markSending(db: Queryable, d: DeliveryRow, provider: Provider): Promise<boolean> {
    const { rowCount } = await db.query(
      `WITH claimed AS (
         UPDATE notification.deliveries SET attempts = $2, updated_at = now() WHERE id = $1 AND attempts = $4 AND status = $5 AND NOT parked RETURNING id)
       INSERT INTO notification.delivery_attempts (delivery_id, attempt, provider, status) SELECT id, $2, $3, 'sending' FROM claimed`,
      [d.id, d.attempts + 1, provider.name, d.attempts, d.status],
    );
    return rowCount === 1;
  }

  private async send(d: DeliveryRow, provider: Provider): Promise<SendOutcome> {
    const base = this.o.publicUrl();
    const message: OutgoingMessage = {
      deliveryId: d.id,
      to: d.address,
      subject: d.subject,
      body: d.body ?? "",
      statusCallbackUrl: base && provider.name === "twilio" ? `${base}/webhooks/twilio/status` : "",
      data: { delivery_id: d.id, kind: templateKeyName(d.template_key) },
    };
    if (d.channel !== Channel.PUSH) return provider.send(message);
    // Push goes to every device of the user; one accepting is enough.
    const tokens = await pushTokens(this.o.pool, d.address);
    if (!tokens.length) return { ok: false, kind: "recipient", error: "no push token registered" };
    const outcomes = await Promise.all(tokens.map((to) => provider.send({ ...message, to }).then((o) => ({ to, o }))));
    const dead = outcomes.filter((x) => !x.o.ok && x.o.kind === "recipient").map((x) => x.to);
    if (dead.length) await this.o.pool.query("DELETE FROM notification.push_tokens WHERE token = ANY($1::text[])", [dead]);
    return outcomes.find((x) => x.o.ok)?.o ?? outcomes.find((x) => !x.o.ok && x.o.kind !== "recipient")?.o ?? outcomes[0].o;
  }

  /**
   * Sends the providers accepted, recorded in one statement (atomic without
   * BEGIN/COMMIT): for each, the attempt, the delivery and its "sent" fact.
   * Left out (and returned without): one with a status report that arrived
   * before (record() applies the reports in order), and one whose attempt is no
   * longer 'sending' (another dispatcher declared it in doubt after its lease:
   * the delivery stays as that one left it). Returns the ids left out for their reports.
   * Tried again on failure while a send's lease lasts (and the service is not past stopBy's deadline): a send whose record is lost stays 'sending'
   * and is sent again once its lease is over (decide()), so a passing fault (a dropped connection,
   * a failover) would text a whole group twice; past the lease a look may have sent it again, and
   * the record may then write nothing. Run twice, the statement changes nothing more: it writes
   * only attempts still 'sending'. A refusal that would come again (a bad value: repeatingRefusalOf)
   * is not tried again, which would only hold the records queued behind it for the lease: see recordRefused.
   */
  private async recordSent(sends: AcceptedSend[]): Promise<{ early: Set<string>; refused: Map<string, Error> }> {
    const recorded = sentRecordCtes(sends, 1);
    const leaseEnds = Math.max(...sends.map((s) => s.leasedFrom)) + this.o.retry.sendLeaseMs;
    const firstPause = this.o.sentRecordRetryMs ?? SENT_RECORD_RETRY_MS;
    for (let tried = 1; ; tried++) {
      try {
        const { rows } = await this.o.pool.query<{ delivery_id: string }>(`WITH ${recorded.sql} SELECT delivery_id FROM sent_early`, recorded.values);
        return { early: new Set(rows.map((r) => r.delivery_id)), refused: new Map() };
      } catch (err) {
        if (repeatingRefusalOf(err)) return this.recordRefused(sends, err as Error);
        const pause = Math.min(SENT_RECORD_RETRY_MAX_MS, firstPause * tried);
        if (Date.now() + pause >= leaseEnds || this.stopped.signal.aborted) throw err;
        this.o.logger.warn({ err, deliveries: sends.length, tried }, "recording accepted sends failed; trying again");
        // Cut short when stopping gives up (stopBy): then no more tries.
        await sleep(pause, undefined, { signal: this.stopped.signal }).catch(() => undefined);
        if (this.stopped.signal.aborted) throw err;
      }
    }
  }

  /**
   * Sends whose record PostgreSQL refused in a way that would come again. One send's bad value refuses its
   * whole group, so a group's are recorded each alone: the others are written. One refused alone is logged
   * and counted, and recorded again without the provider's message id, the one value that came from outside
   * (a NUL, a size past the index's, an id the provider gave before): the provider has the message, and left
   * 'sending' it would be sent again by the look after its lease, a certain duplicate; without its id its
   * delivery reports match nothing (they expire) and it stays 'sent'. Refused without it too, it is given
   * up: its attempt stays 'sending', and once its lease is over a look declares it in doubt and sends it
   * again once (a sign-in code never), as after a crash.
   */
  private async recordRefused(sends: AcceptedSend[], err: Error): Promise<{ early: Set<string>; refused: Map<string, Error> }> {
    if (sends.length > 1) {
      const early = new Set<string>();
      const refused = new Map<string, Error>();
      // One by one: a rare case, and each alone holds no other's record.
      for (const s of sends) {
        const alone = await this.recordSent([s]);
        for (const id of alone.early) early.add(id);
        for (const [id, e] of alone.refused) refused.set(id, e);
      }
      return { early, refused };
    }
    const [send] = sends;
    const { d, provider, attempt, outcome } = send;
    const { sqlstate, condition } = repeatingRefusalOf(err)!;
    this.o.metrics
      ?.counter("ttip_notification_sent_records_refused_total", "Records of sends a provider accepted that PostgreSQL refused in a way that would come again (a bad value), by SQLSTATE: written again without the provider's message id, else given up; not retried as they were.", ["sqlstate"])
      .inc({ sqlstate });
    const withoutId = outcome.messageId !== "";
    this.o.logger.error(
      { err, deliveryId: d.id, attempt, provider: provider.name, sqlstate, condition },
      withoutId
        ? "the record of an accepted send was refused and would be again; written again without the provider's message id (its delivery reports will match nothing)"
        : "the record of an accepted send was refused and would be again; given up: the look sends it again once its lease is over",
    );
    if (withoutId) return this.recordSent([{ ...send, outcome: { ...outcome, messageId: "" } }]);
    return { early: new Set(), refused: new Map([[d.id, err]]) };
  }

  /**
   * The attempt's outcome, in the delivery and its facts; "failed over" when it is retrying with
   * the channel's next provider. `withoutBusMessage`: the attempt came from no dispatch message
   * (sendClaimed), so a retry is given one here, for the bus to redeliver as it would that message.
   */
  private async record(tx: Queryable, d: DeliveryRow, provider: Provider, attempt: number, result: SendOutcome, withoutBusMessage = false): Promise<DeliveryState | "failed over"> {
    // Provider errors may quote the number ("The 'To' number +2547... is not valid"): stored masked.
    const outcome: SendOutcome = result.ok ? result : { ...result, error: storableText(scrubText(result.error)) };
    // The delivery locked first (the sub-select runs before the attempt is read), as claim() locks them.
    const { rowCount } = await tx.query(
      `UPDATE notification.delivery_attempts SET status = $3, provider_message_id = $4, error = $5, finished_at = now()
        WHERE delivery_id = (SELECT id FROM notification.deliveries WHERE id = $1 FOR UPDATE) AND attempt = $2 AND status = 'sending'`,
      [d.id, attempt, outcome.ok ? "sent" : "failed", outcome.ok ? outcome.messageId : "", outcome.ok ? "" : outcome.error],
    );
    // Another dispatcher declared the attempt in doubt after its lease ran out, and sent it again
    // or failed the delivery: what it decided stands (a late answer must not send it again or call it sent).
    if (rowCount === 0) return "failed";
    if (outcome.ok) {
      // An OTP's text is a secret: once handed over it is not kept. The message id is kept beside the delivery (MESSAGE_DELIVERY).
      await tx.query(
        `WITH sent AS (
           UPDATE notification.deliveries SET status = 'sent', last_error = NULL, body = CASE WHEN template_key = $4 THEN NULL ELSE body END, updated_at = now() WHERE id = $1)
         INSERT INTO notification.provider_messages (provider, message_id, delivery_id) SELECT $2::text, $3::text, $1::uuid WHERE $3 <> ''`,
        [d.id, provider.name, outcome.messageId, TemplateKey.OTP],
      );
      await emitUpdate(tx, d, "sent");
      if (outcome.messageId) await applyPendingCallbacks(tx, provider.name, outcome.messageId);
      return "sent";
    }
    this.o.logger.warn({ deliveryId: d.id, provider: provider.name, attempt, kind: outcome.kind, error: outcome.error }, "send failed");
    if (outcome.kind === "recipient") {
      await this.finish(tx, d, "failed", outcome.error);
      return "failed";
    }
    if (outcome.kind === "in_doubt") {
      await tx.query("UPDATE notification.delivery_attempts SET status = 'in_doubt' WHERE delivery_id = $1 AND attempt = $2", [d.id, attempt]);
      await this.finish(tx, d, "failed", `in doubt: the provider may have it (${outcome.error}); not resent to avoid a duplicate`);
      return "failed";
    }
    let index = d.provider_index;
    let tries = d.provider_attempts + 1;
    let delay = this.backoff(tries);
    if (outcome.kind === "provider" || tries >= this.o.retry.attemptsPerProvider) {
      index++;
      tries = 0;
      delay = 0;
    }
    if (index >= this.providersFor(d.channel).length) {
      const pause = await this.roundPause(tx, d);
      if (pause === undefined) {
        await this.finish(tx, d, "failed", `${outcome.error} (every provider tried until it was too late to send)`);
        return "failed";
      }
      [index, tries, delay] = [0, 0, pause];
    }
    delay = await this.pastQuietHours(tx, d, delay);
    await tx.query(
      `UPDATE notification.deliveries SET status = 'retrying', provider_index = $2, provider_attempts = $3,
              next_attempt_at = $6::timestamptz + make_interval(secs => $4::double precision / 1000), last_error = $5, updated_at = now() WHERE id = $1`,
      [d.id, index, tries, delay, outcome.error, new Date((this.o.clock ?? systemClock).now())],
    );
    if (withoutBusMessage) await writeOutbox(tx, "notification", dispatchMessage(updateEvent(d, "retrying"), d.id));
    return tries === 0 ? "failed over" : "retrying";
  }

  /**
   * `delay`, or longer when it would end inside the user's quiet hours: the retry then waits for their end, as the
   * first send did (before, a receipt whose providers were down at 21:55 was sent at 01:10 when they came back).
   */
  private async pastQuietHours(tx: Queryable, d: DeliveryRow, delay: number): Promise<number> {
    if (!d.user_id || ALWAYS_SMS.has(d.template_key) || (d.channel !== Channel.SMS && d.channel !== Channel.PUSH)) return delay;
    const user = await findRecipient(tx, d.user_id);
    const now = (this.o.clock ?? systemClock).now();
    const ends = user && quietUntil(new Date(now + delay), user.quiet_start, user.quiet_end);
    return ends ? ends.getTime() - now : delay;
  }

  /**
   * Every provider of the channel tried: the pause before the next round from the first, or undefined when it is too
   * late to send (NOTIFICATION_GIVE_UP_MS after its first attempt; a sign-in code at once). Before, a delivery failed
   * for good here: an outage of ten seconds (three tries on each provider) lost every receipt and notice sent in it.
   */
  private async roundPause(tx: Queryable, d: DeliveryRow): Promise<number | undefined> {
    // A sign-in code is not sent again: the user asks for another, and a late old one would be refused as wrong.
    if (d.template_key === TemplateKey.OTP) return undefined;
    const { retry, clock } = this.o;
    // Counted from its first attempt, not from when it was made: one held back for quiet hours gets its rounds too.
    const { rows: [row] } = await tx.query<{ age_ms: number }>(
      `SELECT extract(epoch FROM $2::timestamptz - coalesce((SELECT min(started_at) FROM notification.delivery_attempts WHERE delivery_id = $1), created_at)) * 1000 AS age_ms
         FROM notification.deliveries WHERE id = $1`,
      [d.id, new Date((clock ?? systemClock).now())],
    );
    const ageMs = Number(row?.age_ms ?? Infinity);
    if (ageMs >= retry.giveUpAfterMs) return undefined;
    // Half the time it has been tried: the rounds thin out as an outage lasts.
    return Math.min(ROUND_PAUSE_MAX_MS, Math.max(retry.roundPauseMs, ageMs / 2));
  }

  /**
   * Fails the delivery and writes its "failed" fact, only while it is still open (queued
   * or retrying): a delivery is failed once, with one fact, however many dispatchers reach
   * here (two looking its number up, a redelivery after a lost answer). Under READ
   * COMMITTED a second UPDATE waits for the first's lock and then finds the row failed.
   */
  private async finish(tx: Queryable, d: DeliveryRow, status: "failed", error: string): Promise<void> {
    // A failed OTP's text is erased too: nothing will send it any more.
    const { rowCount } = await tx.query(
      `UPDATE notification.deliveries SET status = $2, last_error = $3, updated_at = now(),
              body = CASE WHEN template_key = $4 THEN NULL ELSE body END WHERE id = $1 AND status IN ('queued', 'retrying')`,
      [d.id, status, error, TemplateKey.OTP],
    );
    if (rowCount === 1) await emitUpdate(tx, d, status);
  }
}

/**
 * The delivery a provider's message id names (`provider`, `messageId`: SQL expressions), for its reports. A send
 * recorded now keeps the id in provider_messages, not on the delivery row: the record then changes no column an
 * index of deliveries reads, so it is a HOT update (one WAL record, not an entry in each of its five indexes).
 * A send recorded by a version before that has the id on the row (provider, provider_message_id), still indexed:
 * its reports come for a day or so after an upgrade.
 */
const MESSAGE_DELIVERY = (provider: string, messageId: string) =>
  `SELECT delivery_id FROM notification.provider_messages WHERE provider = ${provider} AND message_id = ${messageId}
   UNION ALL SELECT id FROM notification.deliveries WHERE provider = ${provider} AND provider_message_id = ${messageId}`;

/**
 * Declares a delivery's attempt in doubt (its sender's lease over with no answer recorded), only while it is
 * still 'sending' and out of lease: a claimed send that renewed its lease (renewLease) is going out. The
 * delivery is touched (updated_at) in the same statement, whatever is decided next: a late record of that
 * attempt (sentRecordCtes) then finds it changed since its claim and writes nothing over the decision.
 * Run under the delivery's lock (claim()). Whether it was declared.
 */
export async function declareInDoubt(tx: Queryable, deliveryId: string, attempt: number, note: string, leaseMs: number): Promise<boolean> {
  const { rowCount } = await tx.query(
    `WITH doubted AS (
       UPDATE notification.delivery_attempts SET status = 'in_doubt', error = $3, finished_at = now()
        WHERE delivery_id = $1 AND attempt = $2 AND status = 'sending' AND started_at <= now() - make_interval(secs => $4::double precision / 1000)
        RETURNING delivery_id)
     UPDATE notification.deliveries SET updated_at = now() WHERE id IN (SELECT delivery_id FROM doubted)`,
    [deliveryId, attempt, note, leaseMs],
  );
  return rowCount === 1;
}

/** What a provider's report means for a delivery, or undefined to ignore it. */
export type ReportedStatus = "sent" | "delivered" | "failed";

/**
 * Applies a provider's status report. Only forward moves: queued/retrying ->
 * sent -> delivered or failed; a late "sent" after "delivered" changes
 * nothing. A report that arrives before the send was recorded is kept and
 * applied when it is (see Dispatcher.record). Only such a report is kept (provider_callbacks), and
 * only until it is applied: nothing reads a report once applied (its delivery's status and facts
 * carry what it said), so keeping one would grow the table by a row per SMS, forever. A report
 * with nothing to apply is not kept either. Two round trips: the look, the move and the keeping
 * of a report no delivery carries in one statement, then the fact with the COMMIT.
 */
export async function applyStatusReport(
  pool: Pool,
  report: { provider: string; kind: string; messageId: string; status: ReportedStatus | undefined; error?: string; payload: unknown },
): Promise<"applied" | "ignored" | "pending"> {
  // Nothing to apply (a status we do not act on, an event without a message id): nothing kept.
  if (!report.status || !report.messageId) return "ignored";
  const status = report.status;
  // The provider's words as storable text: a NUL in them failed the report's write, answered 500, and it came again.
  const kept = [report.provider, report.kind, storableText(report.messageId), status, storableJson(report.payload)];
  return withTransaction(pool, async (tx) => {
    const { rows: [r] } = await tx.query<{ found: boolean; id: string | null } & Omit<DeliveryRef, "id">>(
      `WITH target AS (${MESSAGE_DELIVERY("$1", "$3")} LIMIT 1),
       moved AS (${MOVE_STATUS("SELECT delivery_id FROM target", "$4", "$6", "$7")}),
       kept AS (
         INSERT INTO notification.provider_callbacks (provider, kind, message_id, status, payload)
         SELECT $1, $2, $3, $4, $5::jsonb WHERE NOT EXISTS (SELECT 1 FROM target))
       SELECT EXISTS (SELECT 1 FROM target) AS found, m.id, m.user_id, m.channel, m.template_key, m.attempts FROM (SELECT) AS one LEFT JOIN moved m ON true`,
      [...kept, report.error === undefined ? null : storableText(report.error), movesFrom(status)],
    );
    if (!r.found) return "pending";
    if (r.id === null) return "ignored";
    const fact = outboxCte("notification", [updateEvent({ ...r, id: r.id }, status)], 1);
    await commitWith(tx, `WITH ${fact.sql} SELECT 1`, fact.values);
    return "applied";
  });
}

/** The states a report of `status` moves a delivery from: only forward. */
const movesFrom = (status: ReportedStatus) => (status === "sent" ? ["queued", "retrying"] : ["queued", "retrying", "sent"]);

/** The update that moves the deliveries `ids` (a sub-select) to `status` from the states `from` (SQL expressions), answering their DeliveryRef. */
const MOVE_STATUS = (ids: string, status: string, error: string, from: string) =>
  `UPDATE notification.deliveries SET status = ${status}, last_error = COALESCE(${error}, last_error), updated_at = now()
    WHERE id IN (${ids}) AND status = ANY(${from}::text[])
    RETURNING id, user_id, channel, template_key, attempts`;

async function moveStatus(tx: Queryable, provider: string, messageId: string, status: ReportedStatus, error?: string): Promise<boolean> {
  const { rows } = await tx.query<DeliveryRow>(MOVE_STATUS(MESSAGE_DELIVERY("$1", "$2"), "$3", "$5", "$4"), [provider, messageId, status, movesFrom(status), error ?? null]);
  if (!rows[0]) return false;
  await emitUpdate(tx, rows[0], status);
  return true;
}

/**
 * Applies the reports kept for `messageId`, in arrival order, and deletes them in the same
 * transaction: nothing reads a report once applied (see applyStatusReport). A second applier
 * (the record and the sweeper) waits for the first's row locks and then finds them gone.
 */
async function applyPendingCallbacks(tx: Queryable, provider: string, messageId: string) {
  const { rows } = await tx.query<{ seq: string; status: ReportedStatus }>(
    `DELETE FROM notification.provider_callbacks
      WHERE provider = $1 AND message_id = $2 AND NOT applied AND status <> '' RETURNING seq, status`,
    [provider, messageId],
  );
  for (const r of rows.sort((a, b) => Number(a.seq) - Number(b.seq))) await moveStatus(tx, provider, messageId, r.status);
}

/**
 * Applies reports kept pending whose delivery now carries their message id: one that came
 * in while the send was being recorded (the record's statement began before the report was
 * stored, and the report looked before the record was committed) waits for this sweep.
 * Returns how many messages had reports applied.
 */
export async function applyStrandedReports(pool: Pool): Promise<number> {
  const { rows } = await pool.query<{ provider: string; message_id: string }>(
    `SELECT DISTINCT c.provider, c.message_id FROM notification.provider_callbacks c
      WHERE NOT c.applied AND c.status <> '' AND c.message_id <> '' AND EXISTS (${MESSAGE_DELIVERY("c.provider", "c.message_id")}) LIMIT 100`,
  );
  for (const r of rows) await withTransaction(pool, (tx) => applyPendingCallbacks(tx, r.provider, r.message_id));
  return rows.length;
}

/**
 * How long a report that no delivery carries the message id of is kept. Such a report waits
 * for a send that is being recorded, which takes at most the send lease (after it the send is
 * in doubt and its record never comes): a day is far past that, and what is still unmatched
 * then is for a message that is not ours (another account's, a replay).
 */
export const UNMATCHED_REPORT_RETENTION_MS = 24 * 3_600_000;
/** Unmatched reports deleted per sweep at most: one statement stays short whatever piled up. */
const UNMATCHED_REPORT_SWEEP_LIMIT = 1_000;

/**
 * Deletes the oldest unmatched reports past their retention (on the database's clock, as
 * received_at is), at most `limit` of them. Returns how many went.
 */
export async function expireUnmatchedReports(db: Queryable, retentionMs = UNMATCHED_REPORT_RETENTION_MS, limit = UNMATCHED_REPORT_SWEEP_LIMIT): Promise<number> {
  assert(limit > 0 && limit <= UNMATCHED_REPORT_SWEEP_LIMIT, "expiry batch out of range");
  // By the rows' places (ctid), as the sub-select locked them: no index finds a report by seq (migration 0009).
  const { rowCount } = await db.query(
    `DELETE FROM notification.provider_callbacks WHERE ctid = ANY(ARRAY(
       SELECT ctid FROM notification.provider_callbacks
        WHERE NOT applied AND received_at < now() - make_interval(secs => $1::double precision / 1000)
        ORDER BY received_at LIMIT $2 FOR UPDATE SKIP LOCKED))`,
    [retentionMs, limit],
  );
  return rowCount ?? 0;
}

/**
 * How long a delivery keeps its recipient's full address and its text: support's questions about a message come
 * within weeks. Past it, a receipt's phone number or e-mail address and what it said (an amount, a customer's
 * message) are no longer the platform's to keep; the masked address, the template and the outcome stay.
 */
export const DELIVERY_DETAIL_RETENTION_MS = 90 * 24 * 3_600_000;
/** Deliveries erased per statement, and statements per sweep at most: each transaction stays short. */
const ERASE: BatchLimits = { size: 1_000, maxBatches: 100 };

/** The smallest time-ordered id (UUID version 7) of millisecond `ms`: every id made from then on sorts at or after it. */
function firstIdAt(ms: number): string {
  const hex = Math.max(0, Math.floor(ms)).toString(16).padStart(12, "0");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-0000-0000-000000000000`;
}

/** An e-mail address as a provider's report quotes it ("<jane@example.com>: Recipient address rejected"), in SQL. */
const EMAIL_ADDRESS = `[^[:space:]<>"'@]+@[^[:space:]<>"'@]+`;

/**
 * Erases what deliveries made before `now` less the retention say of their recipient: the address (its masked form
 * stays), the recipient key (which carries the number: no event can come again that long after, so it keys nothing
 * more), the rendered text and subject, and any e-mail address a provider's report quoted in its errors. Every one
 * is final by then (a delivery gives up within hours). In id order, from the last erased (erasure_marks), a batch
 * per transaction; one replica at a time (the others skip the sweep). Answers how many were erased.
 */
export async function eraseOldDeliveries(pool: Pool, now: number, retentionMs = DELIVERY_DETAIL_RETENTION_MS): Promise<number> {
  let erased = 0;
  await inBatches(ERASE, async (size) => {
    const { scanned, n } = await withTransaction(pool, async (tx) => {
      const { rows: [lock] } = await tx.query<{ got: boolean }>("SELECT pg_try_advisory_xact_lock(hashtext('notification.erase_deliveries')) AS got");
      if (!lock.got) return { scanned: 0, n: 0 };
      const { rows } = await tx.query<{ scanned: number; n: number }>(
        `WITH due AS (
           SELECT d.id, d.created_at < $3::timestamptz AS old, substr(d.id::text, 15, 1) = '7' AS time_ordered FROM notification.deliveries d
            WHERE d.id > coalesce((SELECT through FROM notification.erasure_marks WHERE name = 'deliveries'), '00000000-0000-0000-0000-000000000000')
              AND d.id < $1::uuid
            ORDER BY d.id LIMIT $2),
         -- Not old enough by its creation time (the database's clock) though its id says so (the service's): the sweep
         -- stops before it, to erase it next time. One made before ids were time-ordered may sort here whatever its
         -- age: passed, not waited for.
         young AS (SELECT id FROM due WHERE NOT old AND time_ordered ORDER BY id LIMIT 1),
         passed AS (SELECT id, old FROM due WHERE id < coalesce((SELECT id FROM young), 'ffffffff-ffff-ffff-ffff-ffffffffffff')),
         erased AS (
           UPDATE notification.deliveries d SET address = d.address_masked, recipient_key = 'erased:' || d.id::text, body = NULL,
                  subject = '', last_error = regexp_replace(d.last_error, $4, '[address]', 'g')
             FROM passed p WHERE d.id = p.id AND p.old RETURNING d.id),
         attempts AS (
           UPDATE notification.delivery_attempts a SET error = regexp_replace(a.error, $4, '[address]', 'g')
             FROM passed p WHERE a.delivery_id = p.id AND p.old AND a.error ~ $4),
         marked AS (
           INSERT INTO notification.erasure_marks (name, through) SELECT 'deliveries', id FROM passed ORDER BY id DESC LIMIT 1
           ON CONFLICT (name) DO UPDATE SET through = EXCLUDED.through)
         SELECT (SELECT count(*) FROM passed)::int AS scanned, (SELECT count(*) FROM erased)::int AS n`,
        [firstIdAt(now - retentionMs), size, new Date(now - retentionMs), EMAIL_ADDRESS],
      );
      return rows[0];
    });
    erased += n;
    return scanned;
  });
  return erased;
}

/** How far back redispatchStranded looks, by creation: a rollout takes minutes. */
const STRANDED_WINDOW_MS = 3_600_000;
/**
 * How far back a running replica's periodic look goes (every few minutes): a stranded delivery is found
 * two minutes after it was last touched, so a quarter of an hour covers several looks while reading a
 * quarter of the rows the look at start does.
 */
export const RECENT_STRANDED_WINDOW_MS = 15 * 60_000;

/**
 * The window of a periodic look that last finished at `lastDoneAt`: the recent window, widened by the time since
 * then (up to the look at start's hour). Looks that failed meanwhile (PostgreSQL out of reach for longer than the
 * recent window) would otherwise never see what was stranded before they did: queued for good, never sent.
 */
export function strandedLookWindow(lastDoneAt: number, now: number): number {
  return Math.min(Math.max(RECENT_STRANDED_WINDOW_MS, now - lastDoneAt + RECENT_STRANDED_WINDOW_MS), STRANDED_WINDOW_MS);
}
/** An open delivery due and untouched this long has no dispatcher on it (a send's lease and backoff are shorter than this plus the lease). */
const STRANDED_AFTER_MS = 120_000;
/** Deliveries redispatchStranded gives work to per transaction: a page, then the next. */
const STRANDED_PAGE = 1_000;

/**
 * Gives the dispatchers work for open deliveries that have none: queued or retrying, not
 * parked, created in the last hour, due and untouched for two minutes. Those queued by a
 * version whose dispatchers read the public facts (durables notification-dispatch-N) and
 * not yet sent when its last replica stopped are such, and so is one claimed by the statement
 * that wrote it whose send a crash cut off (its claim then finds the attempt in doubt). Run at start and every few
 * minutes (over `windowMs`, RECENT_STRANDED_WINDOW_MS); a delivery that had
 * its message after all is still sent once (the claim is a compare-and-set). Pages through
 * them by (created_at, id), as a page's rows are left as they were and would be read again.
 * Returns how many were given work.
 */
export async function redispatchStranded(pool: Pool, clock: Clock = systemClock, pageSize = STRANDED_PAGE, windowMs = STRANDED_WINDOW_MS): Promise<number> {
  assert(pageSize > 0 && pageSize <= STRANDED_PAGE, "page size out of range");
  assert(windowMs > STRANDED_AFTER_MS && windowMs <= STRANDED_WINDOW_MS, "window out of range");
  let after: { created_at: Date; id: string } | undefined;
  let total = 0;
  for (;;) {
    const rows = await withTransaction(pool, async (tx) => {
      const { rows } = await tx.query<DeliveryRef & { created_at: Date }>(
        `SELECT id, user_id, channel, template_key, attempts, created_at FROM notification.deliveries
          WHERE created_at > now() - make_interval(secs => $1::double precision / 1000) AND status IN ('queued', 'retrying') AND NOT parked
            AND next_attempt_at <= $2 AND updated_at < now() - make_interval(secs => $3::double precision / 1000)
            AND ($5::timestamptz IS NULL OR (created_at, id) > ($5, $6::uuid))
          ORDER BY created_at, id LIMIT $4`,
        [windowMs, new Date(clock.now()), STRANDED_AFTER_MS, pageSize, after?.created_at ?? null, after?.id ?? null],
      );
      for (const d of rows) await writeOutbox(tx, "notification", dispatchMessage(updateEvent(d, "queued"), d.id));
      return rows;
    });
    total += rows.length;
    if (rows.length < pageSize) return total;
    after = rows[rows.length - 1];
  }
}

/** Why a held delivery is not sent when its quiet hours end. */
const TURNED_OFF = "the recipient turned this channel off for this kind while it waited for quiet hours to end";

/**
 * Re-queues parked deliveries (quiet hours over, on `clock`) by emitting a fresh dispatch event for each. One whose
 * channel the recipient has since turned off for its kind (their preferences as they are now) fails instead.
 */
export async function unparkDue(pool: Pool, clock: Clock = systemClock): Promise<number> {
  return withTransaction(pool, async (tx) => {
    const { rows } = await tx.query<DeliveryRow & { turned_off: boolean }>(
      `WITH due AS (
         SELECT d.id, EXISTS (SELECT 1 FROM notification.recipients r WHERE r.user_id = d.user_id AND r.kinds ? d.template_key::text
                               AND NOT (r.kinds -> d.template_key::text) @> to_jsonb(d.channel)) AS turned_off
           FROM notification.deliveries d WHERE d.parked AND d.next_attempt_at <= $1 LIMIT 100 FOR UPDATE SKIP LOCKED)
       UPDATE notification.deliveries d SET parked = false, updated_at = now(),
              status = CASE WHEN due.turned_off THEN 'failed' ELSE d.status END,
              last_error = CASE WHEN due.turned_off THEN $2 ELSE d.last_error END
         FROM due WHERE d.id = due.id
        RETURNING d.id, d.user_id, d.channel, d.template_key, d.attempts, due.turned_off`,
      [new Date(clock.now()), TURNED_OFF],
    );
    for (const d of rows) await (d.turned_off ? emitUpdate(tx, d, "failed") : emitQueued(tx, d));
    return rows.length;
  });
}
