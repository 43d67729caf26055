import { randomUUID } from "node:crypto";
import { create, fromBinary, toBinary, type DescMessage, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { EventMetaSchema } from "@ttip/proto/ttip/events/v1/events_pb.js";
import type { BusMessage, DeliveredMessage } from "./bus.js";
import type { Queryable } from "./db.js";
import { writeOutbox } from "./outbox.js";

/** An event message of ttip.events.v1: every one carries EventMeta as `meta`. */
type EventInit<Desc extends DescMessage> = Omit<MessageInitShape<Desc>, "meta" | "$typeName">;

/**
 * Writes a ttip.events.v1 event to `producer`'s outbox inside `tx`, the
 * transaction that changes the state it reports. Subject is
 * ttip.<producer>.<event>; the new event id is returned (and is the bus's
 * deduplication id).
 */
export async function emitEvent<Desc extends DescMessage>(
  tx: Queryable,
  producer: string,
  subject: string,
  schema: Desc,
  init: EventInit<Desc>,
  correlationId = "",
): Promise<string> {
  const message = buildEvent(producer, subject, schema, init, correlationId);
  await writeOutbox(tx, producer, message);
  return message.id;
}

/**
 * The event as the outbox stores it, without writing it: for a producer that
 * writes the outbox row in the same statement as its state (one round trip).
 */
export function buildEvent<Desc extends DescMessage>(
  producer: string,
  subject: string,
  schema: Desc,
  init: EventInit<Desc>,
  correlationId = "",
): BusMessage {
  const id = randomUUID();
  const meta = create(EventMetaSchema, { id, occurredAt: timestampNow(), producer, correlationId });
  const message = create(schema, { ...init, meta } as unknown as MessageInitShape<Desc>);
  return { id, subject, data: toBinary(schema, message) };
}

/** Decodes a delivered event's payload. */
export function decodeEvent<Desc extends DescMessage>(schema: Desc, message: DeliveredMessage): MessageShape<Desc> {
  return fromBinary(schema, message.data);
}
