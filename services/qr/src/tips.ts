import { timestampDate } from "@bufbuild/protobuf/wkt";
import { TipSucceededSchema } from "@ttip/proto/ttip/events/v1/events_pb.js";
import { consumeEvents, decodeEvent, subjectOf, type ServiceContext } from "@ttip/runtime";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Counts tips per code from payment's TipSucceeded events, for scan-to-tip conversion. */
export async function startTipConsumer(ctx: ServiceContext): Promise<() => Promise<void>> {
  const sub = await consumeEvents({
    bus: ctx.bus,
    pool: ctx.pool,
    schema: "qr",
    consumer: "qr-tip-conversion",
    subject: subjectOf(TipSucceededSchema),
    logger: ctx.logger,
    metrics: ctx.metrics,
    handle: async (message, tx) => {
      const tip = decodeEvent(TipSucceededSchema, message);
      if (!tip.tipId || !UUID.test(tip.qrCodeId)) return;
      const at = tip.meta?.occurredAt ? timestampDate(tip.meta.occurredAt) : new Date();
      await tx.query(`INSERT INTO qr.tips (tip_id, qr_code_id, occurred_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`, [tip.tipId, tip.qrCodeId, at]);
    },
  });
  return () => sub.stop();
}
