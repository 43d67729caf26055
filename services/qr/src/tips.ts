import { fromBinary } from "@bufbuild/protobuf";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { TipSucceededCodeViewSchema, TipSucceededSchema, type TipSucceededCodeView } from "@ttip/proto/ttip/events/v1/events_pb.js";
import { consumeEventBatches, isUuid, subjectOf, type ServiceContext } from "@ttip/runtime";


/**
 * Counts tips per code from payment's TipSucceeded events, for scan-to-tip
 * conversion: one statement per batch, not a transaction per tip. A tip is
 * counted once by its id (qr.tips' key, ON CONFLICT DO NOTHING), whatever
 * event reports it how often, so the events get no inbox row (idempotentEffect:
 * its heap row and two index entries per tip were the key written again).
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
    idempotentEffect: true,
    effectCte: (messages, first) => {
      const tips = messages
        .map((m) => countedTip(m.data))
        .filter((tip) => tip.tipId && isUuid(tip.qrCodeId))
        .map((tip) => ({ tipId: tip.tipId, qrCodeId: tip.qrCodeId, at: tip.meta?.occurredAt ? timestampDate(tip.meta.occurredAt) : new Date() }));
      if (!tips.length) return undefined;
      const [tipIds, codes, times] = [0, 1, 2].map((i) => `$${first + i}`);
      return {
        // A tip counted before (a redelivery, the same tip under another event id) finds its row: nothing.
        sql: `counted AS (INSERT INTO qr.tips (tip_id, qr_code_id, occurred_at)
           SELECT t.tip_id, t.qr_code_id, t.occurred_at FROM unnest(${tipIds}::text[], ${codes}::uuid[], ${times}::timestamptz[]) AS t(tip_id, qr_code_id, occurred_at)
           ON CONFLICT DO NOTHING)`,
        values: [tips.map((t) => t.tipId), tips.map((t) => t.qrCodeId), tips.map((t) => t.at)],
      };
    },
  });
  return () => sub.stop();
}

/**
 * What the count reads of a tip_succeeded's payload: its meta, tip and code, decoded through the
 * contract's view of the event (the same field numbers); the money, receipt, message and the rest
 * are skipped, not built nor kept as unknown fields.
 */
export function countedTip(data: Uint8Array): TipSucceededCodeView {
  return fromBinary(TipSucceededCodeViewSchema, data, { readUnknownFields: false });
}
