import { randomUUID } from "node:crypto";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { ADMIN_ACTION_EVENTS, ADMIN_ACTION_SUBJECT, consumeEvents, decodeEvent, type DeliveredMessage, isUuid, type Logger, type Queryable, type ServiceContext } from "@ttip/runtime";
import { AuditAction } from "@ttip/proto/ttip/auth/v1/auth_pb.js";

export { AuditAction };

/** Appends one audit record (the table refuses updates and deletes). Never put a phone, PIN, OTP or token in `detail`. */
export async function audit(
  db: Queryable,
  action: AuditAction,
  e: { userId?: string | null; actorUserId?: string | null; ip?: string; detail?: string; target?: string },
): Promise<void> {
  await db.query(
    "INSERT INTO auth.audit_events (audit_event_id, action, user_id, actor_user_id, ip_address, detail, target) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    [randomUUID(), action, e.userId ?? null, e.actorUserId ?? null, e.ip ?? "", e.detail ?? "", e.target ?? ""],
  );
}

/** The inbox's (and the durable consumer's) name. */
export const ADMIN_AUDIT_CONSUMER = "auth-admin-audit";

const uuidOrNull = (v: string) => (isUuid(v) ? v : null);

/**
 * Appends another service's admin action to the audit log, under the event's
 * own id (a redelivery that got past the inbox still writes one row). An
 * event this version does not know is logged and skipped, never retried forever.
 */
export async function appendAdminAction(tx: Queryable, message: DeliveredMessage, logger: Logger): Promise<void> {
  const producer = message.subject.split(".")[1] as keyof typeof ADMIN_ACTION_EVENTS;
  const schema = ADMIN_ACTION_EVENTS[producer];
  if (!schema) return void logger.warn({ subject: message.subject }, "admin action from an unknown producer skipped");
  const event = decodeEvent(schema, message);
  const a = event.action;
  if (!a || !event.meta || !AuditAction[a.action] || a.action === AuditAction.UNSPECIFIED) {
    return void logger.warn({ subject: message.subject, eventId: message.id }, "admin action without a known action skipped");
  }
  await tx.query(
    `INSERT INTO auth.audit_events (audit_event_id, action, user_id, actor_user_id, ip_address, detail, occurred_at, target, service)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (audit_event_id) DO NOTHING`,
    [
      event.meta.id, a.action, uuidOrNull(a.userId), uuidOrNull(a.actorUserId), a.ipAddress.slice(0, 100), a.detail.slice(0, 1000),
      event.meta.occurredAt ? timestampDate(event.meta.occurredAt) : new Date(), a.target.slice(0, 200), producer,
    ],
  );
}

/** Follows every service's admin actions into the audit log; returns how to stop. */
export async function startAdminAudit(ctx: ServiceContext): Promise<() => Promise<void>> {
  const consumer = await consumeEvents({
    bus: ctx.bus,
    pool: ctx.pool,
    schema: "auth",
    consumer: ADMIN_AUDIT_CONSUMER,
    subject: ADMIN_ACTION_SUBJECT,
    logger: ctx.logger,
    metrics: ctx.metrics,
    handle: (message, tx) => appendAdminAction(tx, message, ctx.logger),
  });
  return () => consumer.stop();
}
