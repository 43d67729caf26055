import { create, fromBinary, getOption, hasOption, toBinary, type DescMessage, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";
import { timestampFromDate, timestampNow } from "@bufbuild/protobuf/wkt";
import { event_subject } from "@ttip/proto/ttip/common/v1/options_pb.js";
import { EventMetaSchema, TipReversalKind } from "@ttip/proto/ttip/events/v1/events_pb.js";
import type { BusMessage, DeliveredMessage } from "./bus.js";
import type { Queryable } from "./db.js";
import { metaIsFirst, withMetaFirst } from "./event-meta.js";
import { writeOutbox } from "./outbox.js";
import { timeOrderedUuid } from "./uuid.js";

/** An event message of ttip.events.v1: every one carries EventMeta as `meta`. */
export type EventInit<Desc extends DescMessage> = Omit<MessageInitShape<Desc>, "meta" | "$typeName">;

const SUBJECT = /^ttip\.[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$/;

/**
 * The NATS subject an event message declares (its ttip.common.v1.event_subject
 * option), ttip.<producer>.<event>. Throws for a message that declares none:
 * an event without a subject is a contract bug, found at the first emit or subscribe.
 */
export function subjectOf(schema: DescMessage): string {
  // Read once per message type: reading the option decodes it from the descriptor each time
  // (measured: ~1% of the platform's CPU in the end-to-end tip bench, from every event built).
  let subject = subjects.get(schema);
  if (subject !== undefined) return subject;
  subject = hasOption(schema, event_subject) ? getOption(schema, event_subject) : "";
  if (!SUBJECT.test(subject)) {
    throw new Error(`${schema.typeName} declares no event subject of the form ttip.<service>.<event> (option ttip.common.v1.event_subject)`);
  }
  subjects.set(schema, subject);
  return subject;
}

/** subjectOf's answers by message type (a fixed set: the contract's event messages). */
const subjects = new WeakMap<DescMessage, string>();

/**
 * Writes a ttip.events.v1 event to `producer`'s outbox inside `tx`, the
 * transaction that changes the state it reports. The subject is the one the
 * message declares, which must be `producer`'s (ttip.<producer>.<event>); the
 * new event id is returned (and is the bus's deduplication id).
 */
export async function emitEvent<Desc extends DescMessage>(
  tx: Queryable,
  producer: string,
  schema: Desc,
  init: EventInit<Desc>,
  correlationId = "",
): Promise<string> {
  const message = buildEvent(producer, schema, init, correlationId);
  await writeOutbox(tx, producer, message);
  return message.id;
}

/**
 * The event as the outbox stores it, without writing it: for a producer that
 * writes the outbox row in the same statement as its state (one round trip).
 */
export function buildEvent<Desc extends DescMessage>(
  producer: string,
  schema: Desc,
  init: EventInit<Desc>,
  correlationId = "",
  /** When it happened; now unless a replay or a test says otherwise. */
  occurredAt?: Date,
): BusMessage {
  const subject = subjectOf(schema);
  // One service writes only its own facts, into its own outbox.
  if (!isProducerOf(subject, producer)) throw new Error(`${producer} cannot emit ${schema.typeName}: its subject ${subject} is another service's`);
  // In time order: every consumer's inbox (and notification's deliveries) keys rows by it, and a
  // random id writes a whole index page per row on a grown inbox after a checkpoint
  // (bench/inbox-event-ids.ts). The event carries its time anyway.
  const id = timeOrderedUuid();
  // An init that is a message already is create()'s answer itself: never changed here, so the caller's keeps no meta of ours.
  const made = create(schema, init as unknown as MessageInitShape<Desc>) as MessageShape<Desc> & { meta?: unknown };
  if (metaIsFirst(schema)) {
    // The meta written by hand in front of the rest (event-meta.ts): the same bytes.
    const rest = made.meta === undefined ? made : { ...made, meta: undefined };
    const data = withMetaFirst({ id, ms: occurredAt ? occurredAt.getTime() : Date.now(), producer, correlationId }, toBinary(schema, rest));
    if (data) return { id, subject, data };
  }
  const meta = create(EventMetaSchema, { id, occurredAt: occurredAt ? timestampFromDate(occurredAt) : timestampNow(), producer, correlationId });
  return { id, subject, data: toBinary(schema, { ...made, meta }) };
}

/** Whether `subject` (ttip.<producer>.<event>, as subjectOf checked it) is `producer`'s, read in place. */
function isProducerOf(subject: string, producer: string): boolean {
  const at = "ttip.".length;
  return subject.length > at + producer.length + 1 && subject.startsWith(producer, at) && subject.charCodeAt(at + producer.length) === DOT;
}

const DOT = 46;

/** Decodes a delivered event's payload. */
export function decodeEvent<Desc extends DescMessage>(schema: Desc, message: DeliveredMessage): MessageShape<Desc> {
  return fromBinary(schema, message.data);
}

/**
 * A tip reversal's kind as analytics' rows and partners' webhooks name it (a result code): its
 * enum name in lower case, "refund", "refund_refused", "chargeback"; "reversed" for a kind newer
 * than this code.
 */
export function reversalCode(kind: TipReversalKind): string {
  return TipReversalKind[kind]?.toLowerCase() ?? "reversed";
}
