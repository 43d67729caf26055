// One audit log for the console: auth keeps it. Another service records an
// admin's action as an event in its own outbox, in the transaction that
// made the change, and auth appends it (idempotently, by event id). So the
// record exists exactly when the change committed, no service waits on auth,
// and the console searches and exports one table.
import type { HandlerContext } from "@connectrpc/connect";
import type { AuditAction } from "@ttip/proto/ttip/auth/v1/auth_pb.js";
import {
  NotificationAdminActionTakenSchema,
  PaymentAdminActionTakenSchema,
  VenueAdminActionTakenSchema,
  WalletAdminActionTakenSchema,
} from "@ttip/proto/ttip/events/v1/events_pb.js";
import { callerOf } from "./caller.js";
import type { Queryable } from "./db.js";
import { emitEvent } from "./events.js";
import { CLIENT_ADDRESS_HEADER } from "./headers.js";

/** The services whose admin actions are audited through their outbox, and the event each writes. */
export const ADMIN_ACTION_EVENTS = {
  payment: PaymentAdminActionTakenSchema,
  wallet: WalletAdminActionTakenSchema,
  notification: NotificationAdminActionTakenSchema,
  venue: VenueAdminActionTakenSchema,
} as const;

/** Every producer's admin-action subject (ttip.<service>.admin_action). */
export const ADMIN_ACTION_SUBJECT = "ttip.*.admin_action";

/** Longest detail kept: a reason, a note, what changed. */
const MAX_DETAIL = 1000;

export interface AdminActionRecord {
  action: AuditAction;
  /** "<kind>:<id>", e.g. "worker:<uuid>"; never a whole phone number. */
  target: string;
  /** The user concerned (a worker), when there is one. */
  userId?: string;
  /** The reason given and what changed; never a phone, PIN, OTP or token. */
  detail?: string;
}

/**
 * Writes the audit record of the calling admin's action to `producer`'s
 * outbox inside `tx`, the transaction that makes the change.
 */
export async function auditAdminAction(
  tx: Queryable,
  producer: keyof typeof ADMIN_ACTION_EVENTS,
  ctx: Pick<HandlerContext, "requestHeader">,
  record: AdminActionRecord,
): Promise<void> {
  const actor = { userId: callerOf(ctx)?.subject ?? "", ip: ctx.requestHeader.get(CLIENT_ADDRESS_HEADER) ?? "" };
  await auditAdminActionOf(tx, producer, actor, record);
}

/**
 * auditAdminAction for an admin's request that a background pass finishes (the admin's request lost its answer
 * half-way, and no admin retried it): recorded under the admin who asked, in the pass's transaction.
 */
export async function auditAdminActionOf(
  tx: Queryable,
  producer: keyof typeof ADMIN_ACTION_EVENTS,
  actor: { userId: string; ip: string },
  record: AdminActionRecord,
): Promise<void> {
  const detail = record.detail ?? "";
  await emitEvent(tx, producer, ADMIN_ACTION_EVENTS[producer] as typeof PaymentAdminActionTakenSchema, {
    action: {
      action: record.action,
      actorUserId: actor.userId,
      ipAddress: actor.ip,
      target: record.target,
      userId: record.userId ?? "",
      detail: detail.length > MAX_DETAIL ? `${detail.slice(0, MAX_DETAIL - 1)}…` : detail,
    },
  });
}
