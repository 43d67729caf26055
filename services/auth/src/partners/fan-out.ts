import { randomUUID } from "node:crypto";
import { create, fromBinary, toJsonString, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import type { Money } from "@ttip/proto/ttip/common/v1/money_pb.js";
import { ConsentScope, WebhookEventSchema, WebhookEventType, WebhookPayoutSchema, WebhookTipSchema, type WebhookEvent } from "@ttip/proto/ttip/auth/v1/partner_pb.js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";
import {
  PayoutFailedSchema,
  PayoutSucceededSchema,
  TipCreatedSchema,
  TipFailedSchema,
  TipReversedSchema,
  TipSucceededSchema,
  type EventMeta,
} from "@ttip/proto/ttip/events/v1/events_pb.js";
import { isUuid, reversalCode, subjectOf, type DeliveredMessage, type Queryable } from "@ttip/runtime";
import { PAYOUT_EVENTS_SCOPE } from "./rows.js";

/** The events partners may subscribe to, all published by payment. */
export const WEBHOOK_SOURCE_SUBJECT = "ttip.payment.>";

/** Who an event concerns: a tip goes to the key that created it, a payout to keys the worker consented to. */
type Audience = { kind: "tip"; createdBy: string } | { kind: "payout"; workerId: string };

interface Mapped {
  type: WebhookEventType;
  meta?: EventMeta;
  audience: Audience;
  data: WebhookEvent["data"];
}

const money = (m: Money | undefined) => (m ? { amountMinor: m.amountMinor, currency: m.currency } : undefined);

const tip = (v: MessageInitShape<typeof WebhookTipSchema>): WebhookEvent["data"] => ({ case: "tip", value: create(WebhookTipSchema, v) });
const payout = (v: MessageInitShape<typeof WebhookPayoutSchema>): WebhookEvent["data"] => ({ case: "payout", value: create(WebhookPayoutSchema, v) });

function decoded<D extends DescMessage>(schema: D, m: DeliveredMessage): MessageShape<D> {
  return fromBinary(schema, m.data);
}

/** What a bus message means to partners; undefined for every event they are not sent. */
export function mapEvent(m: DeliveredMessage): Mapped | undefined {
  switch (m.subject) {
    case subjectOf(TipCreatedSchema): {
      const e = decoded(TipCreatedSchema, m);
      return {
        type: WebhookEventType.TIP_CREATED, meta: e.meta, audience: { kind: "tip", createdBy: e.createdBy },
        data: tip({ tipId: e.tipId, workerId: e.workerId, venueId: e.venueId, qrCodeId: e.qrCodeId, amount: money(e.amount) }),
      };
    }
    case subjectOf(TipSucceededSchema): {
      const e = decoded(TipSucceededSchema, m);
      return {
        type: WebhookEventType.TIP_SUCCEEDED, meta: e.meta, audience: { kind: "tip", createdBy: e.createdBy },
        data: tip({ tipId: e.tipId, workerId: e.workerId, venueId: e.venueId, qrCodeId: e.qrCodeId, amount: money(e.amount), fee: money(e.fee), net: money(e.net), mpesaReceipt: e.mpesaReceipt }),
      };
    }
    case subjectOf(TipFailedSchema): {
      const e = decoded(TipFailedSchema, m);
      return {
        type: WebhookEventType.TIP_FAILED, meta: e.meta, audience: { kind: "tip", createdBy: e.createdBy },
        data: tip({ tipId: e.tipId, workerId: e.workerId, venueId: e.venueId, qrCodeId: e.qrCodeId, amount: money(e.amount), resultCode: e.resultCode, reason: e.reason }),
      };
    }
    case subjectOf(TipReversedSchema): {
      const e = decoded(TipReversedSchema, m);
      return {
        type: WebhookEventType.TIP_REVERSED, meta: e.meta, audience: { kind: "tip", createdBy: e.createdBy },
        data: tip({ tipId: e.tipId, workerId: e.workerId, venueId: e.venueId, qrCodeId: e.qrCodeId, amount: money(e.amount), fee: money(e.fee), net: money(e.net), resultCode: reversalCode(e.kind) }),
      };
    }
    case subjectOf(PayoutSucceededSchema): {
      const e = decoded(PayoutSucceededSchema, m);
      return {
        type: WebhookEventType.PAYOUT_SUCCEEDED, meta: e.meta, audience: { kind: "payout", workerId: e.workerId },
        data: payout({ payoutId: e.payoutId, workerId: e.workerId, amount: money(e.amount), transferFee: money(e.transferFee), mpesaReceipt: e.mpesaReceipt }),
      };
    }
    case subjectOf(PayoutFailedSchema): {
      const e = decoded(PayoutFailedSchema, m);
      return {
        type: WebhookEventType.PAYOUT_FAILED, meta: e.meta, audience: { kind: "payout", workerId: e.workerId },
        data: payout({ payoutId: e.payoutId, workerId: e.workerId, amount: money(e.amount), resultCode: e.resultCode, reason: e.reason }),
      };
    }
    default:
      return undefined;
  }
}

/** Where each event partners are sent names who it concerns (mapEvent's audience): a tip's creator, a payout's worker. */
const AUDIENCE_FIELDS = new Map<string, number>([
  [subjectOf(TipCreatedSchema), TipCreatedSchema.field.createdBy.number],
  [subjectOf(TipSucceededSchema), TipSucceededSchema.field.createdBy.number],
  [subjectOf(TipFailedSchema), TipFailedSchema.field.createdBy.number],
  [subjectOf(TipReversedSchema), TipReversedSchema.field.createdBy.number],
  [subjectOf(PayoutSucceededSchema), PayoutSucceededSchema.field.workerId.number],
  [subjectOf(PayoutFailedSchema), PayoutFailedSchema.field.workerId.number],
]);

/**
 * Whether an event may have a partner to tell: one partners are sent, naming a key (a tip's
 * creator) or a worker (who may have consented to keys). A customer's tip names no key, so it
 * has none: its consumer skips it without a transaction or an inbox row (changesState), and a
 * redelivery of it is skipped the same way. Read from the event alone, so it is the same each time.
 * Every payment event passes here: only the one field is read (mapEvent decoded the whole event
 * and built the webhook's data, to read it).
 */
export function mayReachPartner(m: DeliveredMessage): boolean {
  const fieldNo = AUDIENCE_FIELDS.get(m.subject);
  return fieldNo !== undefined && isUuid(stringField(m.data, fieldNo));
}

/**
 * A singular string field of an encoded message as fromBinary reads it (the last one wins; "" when
 * absent), the other fields skipped, not decoded. Throws where fromBinary would for a message cut
 * short, and for the field under another wire type (what fromBinary makes of that is no string).
 */
export function stringField(data: Uint8Array, fieldNo: number): string {
  const reader = new BinaryReader(data);
  let value = "";
  while (reader.pos < reader.len) {
    const [no, wireType] = reader.tag();
    if (no !== fieldNo) reader.skip(wireType, no);
    else if (wireType === WireType.LengthDelimited) value = reader.string();
    else throw new Error(`field ${fieldNo} is not a string (wire type ${wireType})`);
  }
  return value;
}

/** Live subscriptions of live keys that want this event. */
async function subscribers(tx: Queryable, type: WebhookEventType, audience: Audience): Promise<Array<{ subscription_id: string; key_id: string }>> {
  if (audience.kind === "tip") {
    // Anonymous and signed-in customers' tips carry no key id.
    if (!isUuid(audience.createdBy)) return [];
    const { rows } = await tx.query(
      `SELECT s.subscription_id, s.key_id FROM auth.partner_webhook_subscriptions s JOIN auth.partner_api_keys k USING (key_id)
        WHERE s.key_id = $1::uuid AND s.deleted_at IS NULL AND k.revoked_at IS NULL AND $2::smallint = ANY (s.event_types)`,
      [audience.createdBy, type],
    );
    return rows;
  }
  if (!isUuid(audience.workerId)) return [];
  const { rows } = await tx.query(
    `SELECT s.subscription_id, s.key_id FROM auth.partner_consents c
       JOIN auth.partner_webhook_subscriptions s ON s.key_id = c.key_id
       JOIN auth.partner_api_keys k ON k.key_id = c.key_id
      WHERE c.worker_id = $1::uuid AND c.revoked_at IS NULL AND $3::smallint = ANY (c.scopes)
        AND s.deleted_at IS NULL AND k.revoked_at IS NULL AND $2::smallint = ANY (s.event_types) AND $4 = ANY (k.scopes)`,
    [audience.workerId, type, ConsentScope.PAYOUTS, PAYOUT_EVENTS_SCOPE],
  );
  return rows;
}

/**
 * Records one delivery per subscription that wants the event, in the
 * transaction that records the event in the inbox: a redelivered event finds
 * its inbox row (and each delivery its unique (subscription, event)) and adds
 * nothing. Returns how many deliveries were added.
 */
export async function fanOut(tx: Queryable, message: DeliveredMessage): Promise<number> {
  const mapped = mapEvent(message);
  if (!mapped) return 0;
  const subs = await subscribers(tx, mapped.type, mapped.audience);
  let added = 0;
  for (const s of subs) {
    const deliveryId = randomUUID();
    const body = toJsonString(
      WebhookEventSchema,
      create(WebhookEventSchema, { deliveryId, eventId: message.id, type: mapped.type, occurredAt: mapped.meta?.occurredAt, data: mapped.data }),
    );
    const r = await tx.query(
      `INSERT INTO auth.partner_webhook_deliveries (delivery_id, subscription_id, key_id, event_id, event_type, worker_id, body)
       VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (subscription_id, event_id) DO NOTHING`,
      [deliveryId, s.subscription_id, s.key_id, message.id, mapped.type, mapped.audience.kind === "payout" ? mapped.audience.workerId : null, body],
    );
    added += r.rowCount ?? 0;
  }
  return added;
}
