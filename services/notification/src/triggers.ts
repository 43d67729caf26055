// What other services' events make us send. Each consumer is idempotent twice
// over: the runtime's inbox skips an event it applied, and the deliveries'
// unique (source, recipient, channel) key stops a copy that slips past it.
import type { DescMessage, MessageShape } from "@bufbuild/protobuf";
import {
  DeliveryUpdatedSchema,
  DeviceRegisteredSchema,
  FraudAlertSchema,
  PaymentMethod,
  PayoutFailedSchema,
  PayoutNumberChangedSchema,
  PayoutSucceededSchema,
  SessionsEndedSchema,
  TipReversedSchema,
  TipSucceededSchema,
  UserRegisteredSchema,
  VenueManagerChangedSchema,
  VenueMemberChangedSchema,
  VenueDistributionReversedSchema,
  VenueShareAllocatedSchema,
  type VenueMemberChanged,
} from "@ttip/proto/ttip/events/v1/events_pb.js";
import type { Money } from "@ttip/proto/ttip/common/v1/money_pb.js";
import { TemplateKey } from "@ttip/proto/ttip/notification/v1/notification_pb.js";
import { consumeEventBatches, decodeEvent, type DeliveredMessage, formatMoney, inConsumerSpan, isUuid, nairobiDay, subjectOf, type Clock, type Queryable, type ServiceContext } from "@ttip/runtime";
import type { StaffDirectory, VenueDirectory, VenueManagers } from "./contacts.js";
import { forgetSessionsPushTokens } from "./stores/push-tokens.js";
import { type ClaimedAtEnqueue, deliveryRace, DISPATCH_BATCH_MAX, DISPATCH_SHARDS, dispatchSubject, ENQUEUE_BATCH_MAX, enqueueMany, type Dispatcher, type SendRequest } from "./delivery.js";

const money = (m: Money | undefined) => (m ? formatMoney(m.amountMinor, m.currency) : "");
/**
 * A short reference people can read out on the phone: the id's last 10 hex digits, random in
 * every id we make. Its first ones are a time-ordered id's clock (a tip's, UUID version 7): the
 * same for every tip of a quarter second.
 */
export const shortRef = (id: string) => id.replace(/-/g, "").slice(-10).toUpperCase();

/** ttip.venue.v1.SplitMethod in words, for the share message. */
const SPLIT_WORDS: Record<number, string> = { 1: "equal among those on shift", 2: "by hours worked", 3: "by role points", 4: "fixed percentages" };

type Trigger<D extends DescMessage, A = undefined> = {
  durable: string;
  /** The event; its declared subject is the one consumed. */
  schema: D;
  /**
   * What a batch needs from other services, asked before its transaction begins (no
   * transaction waits on a call). Throwing has the batch delivered again later.
   */
  ask?: (events: MessageShape<D>[], deps: TriggerDeps) => Promise<A>;
  /** The messages the event asks for: the batch's are written together. */
  sends?: (event: MessageShape<D>, eventId: string, deps: TriggerDeps, asked: A) => SendRequest[];
  /** Or what it writes itself, in the batch's transaction. */
  apply?: (event: MessageShape<D>, eventId: string, tx: Queryable, deps: TriggerDeps) => Promise<void>;
  /**
   * Added after events it reads were stored: its durable starts with the events stored once it is made,
   * so its first start does not send a week's old events' messages at once.
   */
  fromNow?: true;
};

export interface TriggerDeps {
  staff: StaffDirectory;
  venues: VenueDirectory;
  /** The service's clock: quiet hours are measured from it (a test moves it past them). */
  clock: Clock;
  /** The admin console's address, for staff alerts. */
  consoleUrl: string;
}

const reasonWords = (code: string) => code.toLowerCase().replace(/_/g, " ");

function trigger<D extends DescMessage, A = undefined>(t: Trigger<D, A>): Trigger<DescMessage, unknown> {
  return t as unknown as Trigger<DescMessage, unknown>;
}

/** The worker's message about event `id`, keyed by the event: a redelivered event adds nothing. */
function toWorker(id: string, e: { workerId: string; meta?: { correlationId: string } }, templateKey: TemplateKey, variables: Record<string, string>): SendRequest[] {
  return [{ sourceKey: `event:${id}`, to: { userId: e.workerId }, templateKey, variables, correlationId: e.meta?.correlationId }];
}

/** A staff change someone is told of: an invitation accepted (its managers), an accepted member's place ended (them). */
const concernsSomeone = (e: VenueMemberChanged) => e.change === "joined" || (e.change === "left" && !!e.workerId);

/** Each venue's name and managers (qr's), asked once per venue of a batch. */
async function venueManagersOf(venueIds: string[], deps: TriggerDeps): Promise<Map<string, VenueManagers | null>> {
  return new Map(await Promise.all([...new Set(venueIds)].map(async (v) => [v, await deps.venues.managers(v)] as const)));
}

const TRIGGERS = [
  trigger({
    durable: "notification-tip-succeeded",
    schema: TipSucceededSchema,
    sends: (e, id) =>
      e.workerId
        ? toWorker(id, e, TemplateKey.TIP_RECEIVED, {
            amount: money(e.amount),
            net: money(e.net),
            from: e.customerPhoneMasked || "TTIP",
            message: e.message ? `"${e.message}"` : "",
          })
        : [],
  }),
  trigger({
    durable: "notification-tip-reversed",
    schema: TipReversedSchema,
    // What the worker's balance gave (a refund, a chargeback) or got back (a refund refused).
    sends: (e, id) => {
      const r = reversalWords(e);
      if (!e.workerId || !r) return [];
      return toWorker(id, e, r.templateKey, r.variables);
    },
  }),
  trigger({
    durable: "notification-tip-reversed-venue",
    schema: TipReversedSchema,
    fromNow: true,
    // A pool's tip: what the venue's pool gave or got back, told to its managers (qr's, asked before the batch's transaction).
    ask: (events, deps) => venueManagersOf(events.filter((e) => isPoolReversal(e)).map((e) => e.venueId), deps),
    sends: (e, id, _deps, asked: Map<string, VenueManagers | null>) => {
      const r = reversalWords(e);
      const venue = isPoolReversal(e) ? asked.get(e.venueId) : undefined;
      if (!r || !venue) return [];
      return venue.managerIds.map((userId) => ({
        sourceKey: `event:${id}`,
        to: { userId },
        templateKey: r.poolTemplateKey,
        variables: { ...r.variables, venue: venue.name || "your venue" },
        correlationId: e.meta?.correlationId,
      }));
    },
  }),
  trigger({
    durable: "notification-venue-manager-changed",
    schema: VenueManagerChangedSchema,
    fromNow: true,
    // A venue's managers are told who joined or left them (not whoever did it: they know), and a manager removed
    // by another is told too: a venue's money is theirs to split. Its managers as qr lists them when sent.
    ask: (events, deps) => venueManagersOf(events.map((e) => e.venueId), deps),
    sends: (e, id, _deps, asked: Map<string, VenueManagers | null>) => {
      const venue = asked.get(e.venueId);
      if (!venue || (e.change !== "joined" && e.change !== "removed")) return [];
      const to = (userId: string, templateKey: TemplateKey): SendRequest => ({
        sourceKey: `event:${id}`,
        to: { userId },
        templateKey,
        variables: { name: e.displayName || "-", venue: venue.name || "-" },
        correlationId: e.meta?.correlationId,
      });
      const told = venue.managerIds.filter((m) => m !== e.actorId && m !== e.userId);
      const sends = told.map((m) => to(m, e.change === "joined" ? TemplateKey.MANAGER_JOINED : TemplateKey.MANAGER_REMOVED));
      if (e.change === "removed" && e.userId !== e.actorId) sends.push(to(e.userId, TemplateKey.REMOVED_AS_MANAGER));
      return sends;
    },
  }),
  trigger({
    durable: "notification-venue-member-changed",
    schema: VenueMemberChangedSchema,
    fromNow: true,
    // A venue's managers are told who accepted their invitation; a worker whose place on the staff a manager ended
    // is told (the venue's codes stop tipping them). Invitations withdrawn before acceptance concern no one.
    ask: (events, deps) => venueManagersOf(events.filter(concernsSomeone).map((e) => e.venueId), deps),
    sends: (e, id, _deps, asked: Map<string, VenueManagers | null>) => {
      const venue = concernsSomeone(e) ? asked.get(e.venueId) : undefined;
      if (!venue) return [];
      if (e.change === "left") return toWorker(id, e, TemplateKey.REMOVED_FROM_STAFF, { venue: venue.name || "-" });
      return venue.managerIds.map((userId) => ({
        sourceKey: `event:${id}`,
        to: { userId },
        templateKey: TemplateKey.STAFF_JOINED,
        variables: { name: e.displayName || "-", venue: venue.name || "-" },
        correlationId: e.meta?.correlationId,
      }));
    },
  }),
  trigger({
    durable: "notification-payout-succeeded",
    schema: PayoutSucceededSchema,
    sends: (e, id) => toWorker(id, e, TemplateKey.PAYOUT_SENT, { amount: money(e.amount), phone: e.recipientPhoneMasked, reference: e.mpesaReceipt || shortRef(e.payoutId) }),
  }),
  trigger({
    durable: "notification-payout-failed",
    schema: PayoutFailedSchema,
    sends: (e, id) => toWorker(id, e, TemplateKey.PAYOUT_FAILED, { amount: money(e.amount), reason: e.reason || e.resultCode }),
  }),
  trigger({
    durable: "notification-payout-number-changed",
    schema: PayoutNumberChangedSchema,
    sends: (e, id) => toWorker(id, e, TemplateKey.PAYOUT_NUMBER_CHANGED, { phone: e.phoneMasked }),
  }),
  trigger({
    durable: "notification-device-registered",
    schema: DeviceRegisteredSchema,
    sends: (e, id) => toWorker(id, { workerId: e.userId, meta: e.meta }, TemplateKey.DEVICE_ADDED, {}),
  }),
  trigger({
    durable: "notification-fraud-alert",
    schema: FraudAlertSchema,
    // Only a hold concerns the worker; refusals and flags are for admins. Keyed by what is held, not the
    // event: a tip held by two rules (or again when its callback disagrees) is told once, as to the staff.
    sends: (e, id) => {
      if (e.action !== "held" || !e.workerId) return [];
      const [send] = toWorker(id, e, TemplateKey.FRAUD_HOLD, { reference: shortRef(e.payoutId || e.tipId || e.alertId), reason: reasonWords(e.reasonCode) });
      const held = e.payoutId ? `hold-notice:payout:${e.payoutId}` : e.tipId ? `hold-notice:tip:${e.tipId}` : send.sourceKey;
      return [{ ...send, sourceKey: held }];
    },
  }),
  trigger({
    durable: "notification-fraud-alert-staff",
    schema: FraudAlertSchema,
    // Auth is asked once per batch, before its transaction: an answer it cannot
    // give now throws, and the batch comes back later (nothing was written).
    ask: async (events, deps) => {
      const held = events.filter(isStaffHold);
      if (!held.length) return undefined;
      const workers = [...new Set(held.map((e) => e.workerId).filter(Boolean))];
      const [reviewers, names] = await Promise.all([
        deps.staff.reviewers(),
        Promise.all(workers.map(async (w) => [w, await deps.staff.displayName(w)] as const)).then((pairs) => new Map(pairs)),
      ]);
      return { reviewers, names };
    },
    sends: (e, _id, deps, asked) => {
      if (!isStaffHold(e) || !asked) return [];
      const worker = (e.workerId && asked.names.get(e.workerId)) || (e.workerId ? `worker ${shortRef(e.workerId)}` : "a venue");
      return asked.reviewers.map((userId) => ({
        // Keyed by the tip, not the event: a tip held by two rules (or held
        // again when its callback disagrees) alerts each reviewer once.
        sourceKey: `tip-held:${e.tipId}`,
        to: { userId },
        templateKey: TemplateKey.ADMIN_TIP_HELD,
        variables: { amount: money(e.tipAmount) || "an unknown amount", worker, reason: reasonWords(e.reasonCode), link: deps.consoleUrl },
        correlationId: e.meta?.correlationId,
      }));
    },
  }),
  trigger({
    durable: "notification-venue-share",
    schema: VenueShareAllocatedSchema,
    sends: (e, id) => {
      const day = (t: typeof e.periodStart) => (t ? nairobiDay(Number(t.seconds) * 1000) : "");
      const start = day(e.periodStart);
      const end = day(e.periodEnd ? { ...e.periodEnd, seconds: e.periodEnd.seconds - 1n } : undefined);
      return toWorker(id, e, TemplateKey.POOL_SHARE, {
        amount: money(e.amount),
        venue: e.venueName || "your venue",
        period: start === end ? start : `${start} to ${end}`,
        rule: `${SPLIT_WORDS[e.method] ?? "venue rule"}, rule v${e.ruleVersion}`,
      });
    },
  }),
  trigger({
    durable: "notification-venue-share-reversed",
    schema: VenueDistributionReversedSchema,
    fromNow: true,
    // Each worker whose share a reversed split took back from their balance (it may be spent, or months old): told
    // as a refund's take-back is, with the manager's reason. The venue's name is qr's, asked before the transaction.
    ask: (events, deps) => venueManagersOf(events.map((e) => e.venueId), deps),
    sends: (e, id, _deps, asked: Map<string, VenueManagers | null>) =>
      e.shares.filter((s) => s.workerId).map((s) => ({
        // One per share: a worker who left and came back within the split has two, each taken back.
        sourceKey: `event:${id}:${s.memberId}`,
        to: { userId: s.workerId },
        templateKey: TemplateKey.POOL_SHARE_REVERSED,
        variables: { amount: money(s.amount), venue: asked.get(e.venueId)?.name || "your venue", reason: e.reason },
        correlationId: e.meta?.correlationId,
      })),
  }),
  trigger({
    durable: "notification-sessions-ended",
    schema: SessionsEndedSchema,
    fromNow: true,
    apply: async (e, _id, tx) => {
      // Signed out elsewhere, removed, blocked: that phone no longer shows the worker's tips and payouts.
      const ids = e.sessionIds.filter(isUuid);
      if (isUuid(e.userId) && ids.length) await forgetSessionsPushTokens(tx, e.userId, ids);
    },
  }),
  trigger({
    durable: "notification-user-registered",
    schema: UserRegisteredSchema,
    apply: async (e, _id, tx) => {
      // The language chosen at sign-up, unless the user already set one here.
      await tx.query(
        `INSERT INTO notification.recipients (user_id, locale) VALUES ($1, $2)
         ON CONFLICT (user_id) DO UPDATE SET locale = EXCLUDED.locale, updated_at = now() WHERE recipients.locale = ''`,
        [e.userId, e.locale === "sw" ? "sw" : e.locale === "en" ? "en" : ""],
      );
    },
  }),
];

/** Which words tell a reversal, by the tip's method and whether money was taken or given back. */
const REVERSAL_TEMPLATES = {
  card: { taken: [TemplateKey.TIP_REVERSED, TemplateKey.POOL_TIP_REVERSED], back: [TemplateKey.TIP_REVERSAL_UNDONE, TemplateKey.POOL_TIP_REVERSAL_UNDONE] },
  mpesa: { taken: [TemplateKey.MPESA_TIP_REVERSED, TemplateKey.POOL_MPESA_TIP_REVERSED], back: [TemplateKey.MPESA_TIP_REVERSAL_UNDONE, TemplateKey.POOL_MPESA_TIP_REVERSAL_UNDONE] },
} as const;

/**
 * A reversal's words: taken (a refund, a chargeback, an M-Pesa reversal) or given back (a refund or reversal refused),
 * for the worker and for a pool's managers, with its amount and the tip's reference; none when nothing moved.
 */
function reversalWords(e: MessageShape<typeof TipReversedSchema>): { templateKey: TemplateKey; poolTemplateKey: TemplateKey; variables: Record<string, string> } | undefined {
  const net = e.net?.amountMinor ?? 0n;
  if (net === 0n) return undefined;
  const taken = net > 0n;
  const [templateKey, poolTemplateKey] = REVERSAL_TEMPLATES[e.method === PaymentMethod.MPESA ? "mpesa" : "card"][taken ? "taken" : "back"];
  return { templateKey, poolTemplateKey, variables: { amount: formatMoney(taken ? net : -net, e.net!.currency), reference: shortRef(e.tipId) } };
}

/** A reversal of a tip to a venue's pool (no worker's): the venue's managers hear of it. */
const isPoolReversal = (e: MessageShape<typeof TipReversedSchema>) => !e.workerId && !!e.venueId;

/** A hold of a tip, which its reviewers hear of. */
const isStaffHold = (e: MessageShape<typeof FraudAlertSchema>) => e.action === "held" && !!e.tipId;

/** Events applied in one transaction at most: each adds a few deliveries, and one bad event sends the batch back. */
const TRIGGER_BATCH = 50;

/** The message's event, or none when it cannot be read. */
function readable<E>(decode: (m: DeliveredMessage) => E, message: DeliveredMessage): E[] {
  try {
    return [decode(message)];
  } catch {
    return [];
  }
}

/** Starts every consumer; returns how to stop them. */
export async function startTriggers(ctx: ServiceContext, dispatcher: Dispatcher, deps: TriggerDeps): Promise<() => Promise<void>> {
  const subs: { stop(): Promise<void> }[] = [];
  for (const t of TRIGGERS) {
    // What has arrived is recorded and applied in one transaction (a commit per
    // batch, not per tip), in the order it was published; its messages are
    // written together (a statement for their recipients, one for the rows).
    const decode = (message: DeliveredMessage) => decodeEvent(t.schema, message) as MessageShape<DescMessage> & { meta?: { id: string } };
    const ask = t.ask;
    // The sends a batch's statement claimed (an SMS or e-mail due now), by the batch's first
    // message: sent once the batch has committed (afterCommit), by this replica's dispatcher,
    // without a dispatch message. A batch rolled back leaves its entry, dropped when its
    // events are applied again (each batch first drops those of its messages).
    const claimedBy = new Map<string, ClaimedAtEnqueue[]>();
    subs.push(
      await consumeEventBatches<unknown>({
        bus: ctx.bus,
        pool: ctx.pool,
        schema: "notification",
        consumer: t.durable,
        subject: subjectOf(t.schema),
        logger: ctx.logger,
        metrics: ctx.metrics,
        maxBatch: TRIGGER_BATCH,
        fromNow: t.fromNow,
        // A re-published copy of an event applied at the same time by another replica: run again, the batch finds its deliveries.
        raced: deliveryRace,
        // One that cannot be read is left to fail in handleBatch, where the batch is split around it.
        beforeTransaction: ask ? (messages) => ask(messages.flatMap((m) => readable(decode, m)), deps) : undefined,
        handleBatch: async (messages, tx, asked) => {
          for (const m of messages) claimedBy.delete(m.id);
          const requests: SendRequest[] = [];
          for (const message of messages) {
            const event = decode(message);
            // The event's own id, not the bus message's: a re-published copy under a new bus id still dedupes.
            const id = event.meta?.id || message.id;
            if (t.apply) await t.apply(event, id, tx, deps);
            else requests.push(...t.sends!(event, id, deps, asked));
          }
          const now = new Date(deps.clock.now());
          const direct = { firstProviders: dispatcher.firstProviders(), claimed: [] as ClaimedAtEnqueue[] };
          // The last statement takes the batch's COMMIT with it (nothing follows it here): one round trip fewer per batch.
          for (let i = 0; i < requests.length; i += ENQUEUE_BATCH_MAX) {
            await enqueueMany(tx, requests.slice(i, i + ENQUEUE_BATCH_MAX), now, direct, i + ENQUEUE_BATCH_MAX >= requests.length);
          }
          if (direct.claimed.length) claimedBy.set(messages[0].id, direct.claimed);
        },
        afterCommit: (messages) => {
          const claimed = messages.flatMap((m) => {
            const mine = claimedBy.get(m.id) ?? [];
            claimedBy.delete(m.id);
            return mine;
          });
          if (claimed.length) dispatcher.sendClaimed(claimed);
        },
      }),
    );
  }
  // Our own queued deliveries drive the sends: each (its waiting is no public fact) is
  // written to its shard's subject (dispatchSubject, by delivery id), which one durable reads.
  // Not through the inbox: a send is not one transaction, and the delivery row's state
  // machine is the dedupe. A consumer handles one batch at a time, so the work is split
  // over a few durables, and each sees only its own share (not every delivery_updated fact,
  // three quarters of them to skip). Replicas share the durables; the claim (a
  // compare-and-set on the attempt count, or a row lock) keeps two from ever sending the
  // same delivery. Where the bus hands over what has arrived in batches, a batch is read
  // and claimed in one statement each (not two per delivery) and sent concurrently.
  for (let shard = 0; shard < DISPATCH_SHARDS; shard++) {
    // Not the former notification-dispatch-N: those read ttip.notification.delivery_updated,
    // and a durable's subject cannot be changed in place.
    const durable = `notification-send-${shard}`;
    const dispatch = async (messages: DeliveredMessage[]) => {
      // Every message on a dispatch subject names a delivery to send (delivery.ts's dispatchMessage); one
      // delivery's twice (say, handed out again by the sweep) is sent once, under the first's trace.
      const traces = new Map<string, string | undefined>();
      for (const message of messages) {
        const { deliveryId } = decodeEvent(DeliveryUpdatedSchema, message);
        if (!traces.has(deliveryId)) traces.set(deliveryId, message.traceparent);
      }
      if (!traces.size) return;
      // Each send continues the trace that queued it, so its "sent" fact (written in the span) does too.
      await dispatcher.runMany([...traces.keys()], (id, send) => inConsumerSpan(`dispatch ${durable}`, [traces.get(id)], send));
    };
    const subject = dispatchSubject(shard);
    subs.push(
      ctx.bus.subscribeBatches
        ? await ctx.bus.subscribeBatches({ durable, subject, maxBatch: DISPATCH_BATCH_MAX, handler: dispatch, metrics: ctx.metrics })
        : await ctx.bus.subscribe({ durable, subject, handler: (message) => dispatch([message]), metrics: ctx.metrics }),
    );
  }
  return async () => {
    for (const s of subs) await s.stop();
  };
}
