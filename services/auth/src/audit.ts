import { randomUUID } from "node:crypto";
import type { Queryable } from "@ttip/runtime";
import { AuditAction } from "@ttip/proto/ttip/auth/v1/auth_pb.js";

export { AuditAction };

/** Appends one audit record (the table refuses updates and deletes). Never put a phone, PIN, OTP or token in `detail`. */
export async function audit(
  db: Queryable,
  action: AuditAction,
  e: { userId?: string | null; actorUserId?: string | null; ip?: string; detail?: string },
): Promise<void> {
  await db.query(
    "INSERT INTO auth.audit_events (audit_event_id, action, user_id, actor_user_id, ip_address, detail) VALUES ($1, $2, $3, $4, $5, $6)",
    [randomUUID(), action, e.userId ?? null, e.actorUserId ?? null, e.ip ?? "", e.detail ?? ""],
  );
}
