import { create } from "@bufbuild/protobuf";
import { optionalTimestamp } from "@ttip/runtime";
import {
  PartnerConsentSchema,
  WebhookDeliverySchema,
  WebhookDeliveryStatus,
  WebhookSubscriptionSchema,
  type ConsentScope,
  type PartnerConsent,
  type WebhookDelivery,
  type WebhookEventType,
  type WebhookSubscription,
} from "@ttip/proto/ttip/auth/v1/partner_pb.js";

/**
 * The key scope a payout webhook needs: ListWorkerPayouts's (partner_service.proto), so a key
 * is sent no more by webhook than it may read by call. A tip event goes only to the key that
 * created the tip: its own.
 */
export const PAYOUT_EVENTS_SCOPE = "payouts:read";

// The rows' columns are named in the statements, never `*`: the runtime sends a
// statement with a column wildcard unprepared (parsed and planned on every call).

/** A SubscriptionRow's columns. */
export const SUBSCRIPTION_COLUMNS = "subscription_id, key_id, url, event_types, secret_sealed, created_at, deleted_at, previous_secret_expires_at";

export interface SubscriptionRow {
  subscription_id: string;
  key_id: string;
  url: string;
  event_types: number[];
  secret_sealed: string;
  created_at: Date;
  deleted_at: Date | null;
  /** Until when the secret a rotation replaced signs deliveries too. */
  previous_secret_expires_at: Date | null;
}

const DELIVERY_COLUMN_NAMES = [
  "delivery_id", "subscription_id", "key_id", "event_id", "event_type", "worker_id", "body", "status", "attempts", "budget_used",
  "replay_requested", "next_attempt_at", "last_response_status", "last_error", "created_at", "delivered_at",
] as const;

/** A DeliveryRow's own columns (not the joined url), each qualified by `alias` when given. */
export const deliveryColumns = (alias?: string): string => DELIVERY_COLUMN_NAMES.map((c) => (alias ? `${alias}.${c}` : c)).join(", ");

export type DeliveryState = "pending" | "delivered" | "failed";

export interface DeliveryRow {
  delivery_id: string;
  subscription_id: string;
  key_id: string;
  event_id: string;
  event_type: number;
  worker_id: string | null;
  body: string;
  status: DeliveryState;
  attempts: number;
  budget_used: number;
  replay_requested: boolean;
  next_attempt_at: Date;
  last_response_status: number;
  last_error: string;
  created_at: Date;
  delivered_at: Date | null;
  /** Joined from the subscription. */
  url?: string;
}

export interface ConsentRow {
  worker_id: string;
  key_id: string;
  partner_name: string;
  scopes: number[];
  granted_at: Date;
  revoked_at: Date | null;
}

export function toSubscription(r: SubscriptionRow): WebhookSubscription {
  return create(WebhookSubscriptionSchema, {
    subscriptionId: r.subscription_id,
    keyId: r.key_id,
    url: r.url,
    eventTypes: r.event_types as WebhookEventType[],
    createdAt: optionalTimestamp(r.created_at),
    deletedAt: optionalTimestamp(r.deleted_at),
    previousSecretExpiresAt: optionalTimestamp(r.previous_secret_expires_at),
  });
}

export const DELIVERY_STATUS: Record<DeliveryState, WebhookDeliveryStatus> = {
  pending: WebhookDeliveryStatus.PENDING,
  delivered: WebhookDeliveryStatus.DELIVERED,
  failed: WebhookDeliveryStatus.FAILED,
};

/** The status filter of a list request as the table spells it; undefined for "any". */
export function deliveryState(status: WebhookDeliveryStatus): DeliveryState | undefined {
  return (Object.keys(DELIVERY_STATUS) as DeliveryState[]).find((k) => DELIVERY_STATUS[k] === status);
}

export function toDelivery(r: DeliveryRow): WebhookDelivery {
  return create(WebhookDeliverySchema, {
    deliveryId: r.delivery_id,
    subscriptionId: r.subscription_id,
    keyId: r.key_id,
    eventId: r.event_id,
    eventType: r.event_type as WebhookEventType,
    status: DELIVERY_STATUS[r.status],
    attempts: r.attempts,
    lastResponseStatus: r.last_response_status,
    lastError: r.last_error,
    createdAt: optionalTimestamp(r.created_at),
    nextAttemptAt: r.status === "pending" ? optionalTimestamp(r.next_attempt_at) : undefined,
    deliveredAt: optionalTimestamp(r.delivered_at),
    url: r.url ?? "",
  });
}

export function toConsent(r: ConsentRow): PartnerConsent {
  return create(PartnerConsentSchema, {
    workerId: r.worker_id,
    keyId: r.key_id,
    partnerName: r.partner_name,
    scopes: r.scopes as ConsentScope[],
    grantedAt: optionalTimestamp(r.granted_at),
    revokedAt: optionalTimestamp(r.revoked_at),
  });
}
