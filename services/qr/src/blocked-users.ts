import { UserBlockChangedSchema } from "@ttip/proto/ttip/events/v1/events_pb.js";
import { decodeEvent, isUuid, microsTimestamptz, subjectOf, timestampMicros, type ServiceContext } from "@ttip/runtime";
import { WORKER } from "./access.js";
import { cacheKeys, type Resolver } from "./resolver.js";

/**
 * Follows auth's blocks: a blocked worker's codes take no tips (OWNER_INACTIVE) until auth unblocks them. One
 * statement per event, kept only when newer than what is stored: a redelivery, or an older change arriving late,
 * changes nothing, so no inbox is needed.
 */
export async function startBlockedUsers(ctx: ServiceContext, resolver: Resolver): Promise<() => Promise<void>> {
  const consuming = await ctx.bus.subscribe({
    durable: "qr-blocked-users",
    subject: subjectOf(UserBlockChangedSchema),
    metrics: ctx.metrics,
    handler: async (message) => {
      const e = decodeEvent(UserBlockChangedSchema, message);
      if (!isUuid(e.userId) || !e.changedAt) return;
      // To the microsecond: through a JavaScript Date, a block and an unblock in one millisecond compared equal,
      // and the later was dropped.
      await ctx.pool.query(
        `INSERT INTO qr.blocked_users (user_id, blocked, changed_at) VALUES ($1, $2, ${microsTimestamptz("$3")})
         ON CONFLICT (user_id) DO UPDATE SET blocked = EXCLUDED.blocked, changed_at = EXCLUDED.changed_at
          WHERE blocked_users.changed_at < EXCLUDED.changed_at`,
        [e.userId, e.blocked, timestampMicros(e.changedAt)],
      );
      await resolver.forget(cacheKeys.profile(WORKER, e.userId));
    },
  });
  return () => consuming.stop();
}
