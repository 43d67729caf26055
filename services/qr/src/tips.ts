import { timestampDate } from "@bufbuild/protobuf/wkt";
import { TipSucceededSchema } from "@ttip/proto/ttip/events/v1/events_pb.js";
import { consumeEventBatches, decodeEvent, subjectOf, type ServiceContext } from "@ttip/runtime";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * Counts tips per code from payment's TipSucceeded events, for scan-to-tip
 * conversion. What has arrived is recorded in one statement per batch (with
 * the inbox's one), not a transaction per tip.
 */
export async function startTipConsumer(ctx: ServiceContext): Promise<() => Promise<void>> {
  const sub = await consumeEventBatches({
    bus: ctx.bus,
    pool: ctx.pool,
    schema: "qr",
    consumer: "qr-tip-conversion",
    subject: subjectOf(TipSucceededSchema),
    logger: ctx.logger,
    metrics: ctx.metrics,
    handleBatch: async (messages, tx) => {
      const tips = messages
        .map((m) => decodeEvent(TipSucceededSchema, m))
        .filter((tip) => tip.tipId && UUID.test(tip.qrCodeId))
        .map((tip) => ({ tipId: tip.tipId, qrCodeId: tip.qrCodeId, at: tip.meta?.occurredAt ? timestampDate(tip.meta.occurredAt) : new Date() }));
      if (!tips.length) return;
      await tx.query(
        `INSERT INTO qr.tips (tip_id, qr_code_id, occurred_at)
         SELECT * FROM unnest($1::text[], $2::uuid[], $3::timestamptz[]) ON CONFLICT DO NOTHING`,
        [tips.map((t) => t.tipId), tips.map((t) => t.qrCodeId), tips.map((t) => t.at)],
      );
    },
  });
  return () => sub.stop();
}
