import { UserBlockChangedSchema } from "@ttip/proto/ttip/events/v1/events_pb.js";
import { consumeEvents, decodeEvent, isUuid, subjectOf, timestampMicros, type ServiceContext } from "@ttip/runtime";
import { holdPayoutsForBlock, noteAccountUnblocked } from "./stores/payout-settings.js";

/**
 * Payouts of a user auth blocked are held, automatic ones and those not yet sent too, as an admin's HoldPayouts holds
 * them: a block is often for fraud, and money leaving meanwhile is not brought back. Unblocking releases nothing: an
 * admin does, with ReleasePayouts, which a blocked account's payouts refuse. A hold there already is taken over by the
 * block (holdPayoutsForBlock).
 */
export async function startBlockedUserHolds(ctx: ServiceContext): Promise<() => Promise<void>> {
  const consuming = await consumeEvents({
    bus: ctx.bus,
    pool: ctx.pool,
    schema: "payment",
    consumer: "payment-blocked-users",
    subject: subjectOf(UserBlockChangedSchema),
    logger: ctx.logger,
    metrics: ctx.metrics,
    handle: async (message, tx) => {
      const e = decodeEvent(UserBlockChangedSchema, message);
      if (!isUuid(e.userId) || !isUuid(e.changedBy)) return;
      // Ordered by auth's time of the change, to the microsecond: one delivered after a later one changes nothing.
      const changedUs = e.changedAt ? timestampMicros(e.changedAt) : 0n;
      if (e.blocked) await holdPayoutsForBlock(tx, e.userId, `account blocked: ${e.reason}`, e.changedBy, changedUs);
      else await noteAccountUnblocked(tx, e.userId, changedUs);
    },
  });
  return () => consuming.stop();
}
