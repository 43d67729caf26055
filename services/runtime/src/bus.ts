import { AckPolicy, DeliverPolicy, RetentionPolicy, StorageType, connect, createInbox, headers, type Consumer, type ConsumerInfo, type JetStreamManager, type JsMsg, type Msg, type MsgHdrs, type NatsConnection, type NatsError, type Subscription } from "nats";

/** A stored message read back from the stream (a replay). */
export interface StoredMessage extends BusMessage {
  /** When the bus stored it. */
  storedAt: Date;
}

export interface ReadStoredOptions {
  /** A subject filter; NATS wildcards allowed. */
  subject: string;
  /** The first stored time to read. */
  since: Date;
  /** Called in stream order; resolve to go on. */
  handler: (message: StoredMessage) => Promise<void>;
}
import type { Logger } from "./log.js";
import type { Metrics } from "./metrics.js";
import { systemClock, type Clock } from "./clock.js";
import { isUuid } from "./uuid.js";

/** An event as it travels: the id is also the bus's deduplication id. */
export interface BusMessage {
  id: string;
  subject: string;
  data: Uint8Array;
  /** W3C trace context of the work that wrote the event, when tracing is on. */
  traceparent?: string;
}

export interface DeliveredMessage extends BusMessage {
  /** 1 on first delivery, more when the bus delivers it again. */
  deliveryCount: number;
}

export interface SubscribeOptions {
  /** Durable consumer name: the position survives restarts and is shared by replicas. */
  durable: string;
  /** A subject filter; NATS wildcards (* and >) allowed. */
  subject: string;
  /** Resolve to acknowledge; throw to have the message delivered again later. */
  handler: (message: DeliveredMessage) => Promise<void>;
  /** Counts the messages the bus terminated undelivered (see withoutEventId) and those the handler failed on. */
  metrics?: Metrics;
  /**
   * Made now (it did not exist), it starts with the messages stored from then on, not the stream's
   * start: for a consumer added after messages it reads were stored, that must not act on them late
   * (a new kind of message about old events). Not with replaces.
   */
  fromNow?: boolean;
}

export interface BatchSubscribeOptions {
  durable: string;
  subject: string;
  /**
   * Durables this one takes over (each reading subjects within `subject`): made, it starts where
   * the earliest of them had got to (every message one of them may not have applied, and some it
   * did: the consumer's inbox must find those), and they are deleted. Already made (a restart,
   * another replica): only what is left of them is deleted.
   */
  replaces?: readonly string[];
  /** As SubscribeOptions.fromNow. */
  fromNow?: boolean;
  /** At most this many messages per call (what is already waiting, never a wait for more). */
  maxBatch: number;
  /**
   * Resolve to acknowledge them all; throw to have them all delivered again
   * later, or throw BatchPartlyApplied to have only the others delivered again.
   */
  handler: (messages: DeliveredMessage[]) => Promise<void>;
  /** Counts the messages the bus terminated undelivered (see withoutEventId) and those the handler failed on. */
  metrics?: Metrics;
}

/**
 * What a batch handler throws when it applied some of its messages (each in a
 * transaction that committed) and not the others: the bus acknowledges those
 * it applied and delivers the others again (the in-process bus may bring them
 * all again; an idempotent consumer skips the applied ones). Any other error
 * sends the whole batch back, so a wrapper that replaces the error loses no
 * message, only the saving.
 */
export class BatchPartlyApplied extends Error {
  constructor(
    /** Ids (lower case) of the messages applied. */
    readonly applied: ReadonlySet<string>,
    /** Why the others were not. */
    readonly reason: unknown,
  ) {
    super(`batch partly applied: ${(reason as Error)?.message ?? String(reason)}`);
  }
}

/**
 * At-least-once delivery with publisher deduplication by message id: the
 * contract JetStream gives, and the in-process bus copies for single-process
 * runs. Consumers must be idempotent (see consumeEvents).
 */
export interface EventBus {
  /** Resolves once the bus has stored the message; a duplicate id is accepted and dropped. */
  publish(message: BusMessage): Promise<void>;
  subscribe(options: SubscribeOptions): Promise<{ stop(): Promise<void> }>;
  /**
   * Like subscribe, but hands over what has arrived in batches (a consumer that
   * applies many events in one transaction). Optional: without it, consumers
   * fall back to one message at a time.
   */
  subscribeBatches?(options: BatchSubscribeOptions): Promise<{ stop(): Promise<void> }>;
  /**
   * Reads what the bus still stores from `since` on, up to what it stored when
   * the call began, without touching any durable consumer (rebuilding read
   * models). Resolves to how many messages were handed over.
   */
  readStored?(options: ReadStoredOptions): Promise<number>;
  /**
   * Ephemeral fan-out (NATS core, nothing stored): every listener in every
   * process connected to the bus hears it at most once, none if it was not
   * listening. For wake-ups only (a replica's watchers), never for facts.
   */
  notify?(subject: string, data: Uint8Array): void;
  /** Hears what notify sends on `subject` from now on (any process). */
  listen?(subject: string, handler: (data: Uint8Array) => void): Promise<{ stop(): Promise<void> }>;
  /**
   * The longest the bus stores a message (its stream's max age, read now, so an operator's
   * change counts); undefined: no age limit. Without it a message may be delivered again at
   * any time, and consumers' inboxes are kept whole (InboxRetention).
   */
  storedMaxAgeMs?(): Promise<number | undefined>;
  /**
   * Once the bus has dropped stored messages (its age, size or count limits): the stored time of
   * the oldest it still holds, from which on it holds them all (now if it holds none); undefined
   * while it has dropped none. A rebuild reading from earlier would miss events.
   */
  storedWholeSince?(): Promise<Date | undefined>;
  close(): Promise<void>;
}

/** Notifications live outside the stream's subjects (`<prefix>.>`), so JetStream never stores them. */
const NOTIFY_TOKEN = "_notify";

const REDELIVERY_DELAY_MS = 1_000;
/**
 * A message that keeps failing waits twice as long before each delivery again, up to this many
 * times the first wait (30 s at the default): one that always fails (an event its consumer cannot
 * apply, a peer down for hours) costs a transaction and a log line twice a minute, not every second.
 */
const MAX_REDELIVERY_FACTOR = 30;

/** The wait before a message that failed on its `deliveries`th delivery is delivered again. */
export function redeliveryDelay(firstMs: number, deliveries: number): number {
  const doublings = Math.min(Math.max(deliveries - 1, 0), Math.ceil(Math.log2(MAX_REDELIVERY_FACTOR)));
  return Math.min(firstMs * 2 ** doublings, firstMs * MAX_REDELIVERY_FACTOR);
}

/**
 * What a handler throws to have its messages delivered again after the first wait, as it planned (a send due
 * again in a second, another provider's turn): no failure, so neither waited longer each time nor counted.
 */
export class RedeliverSoon extends Error {}

/** The wait before a message whose handler threw `err` on its `deliveries`th delivery is delivered again. */
function waitAfter(err: unknown, firstMs: number, deliveries: number): number {
  return err instanceof RedeliverSoon ? firstMs : redeliveryDelay(firstMs, deliveries);
}

/** The messages of a delivery its handler did not apply (those BatchPartlyApplied names, else all), and why. */
function failedOf(messages: DeliveredMessage[], err: unknown): { left: DeliveredMessage[]; why: unknown } {
  return err instanceof BatchPartlyApplied ? { left: notApplied(messages, err), why: err.reason } : { left: messages, why: err };
}

/** Counts the messages a consumer's handler failed on, to be delivered again (both buses); a RedeliverSoon is none. */
function countFailed(metrics: Metrics | undefined, consumer: string, messages: number, err: unknown): void {
  if (err instanceof RedeliverSoon) return;
  metrics
    ?.counter("ttip_bus_handler_failures_total", "Deliveries a consumer's handler failed on (each to be delivered again).", ["consumer"])
    .inc({ consumer }, messages);
}
/** How long a publish waits for the stream's acknowledgement by default (nats.js's JetStream default). */
const PUBLISH_TIMEOUT_MS = 5_000;

/**
 * A stored message without an event id in its Nats-Msg-Id (missing, or not a UUID) was not
 * published by an outbox, and no inbox can record it: handed to a consumer, it fails there and
 * comes back forever (it was: a nak each delivery); given an id made up here, it could not be
 * told apart from a real event's. The bus terminates it (JetStream never delivers it again to
 * this consumer), logs it as an error with what an operator needs to find it, and counts it.
 * Returns whether it did.
 */
function withoutEventId(m: JsMsg, id: string, consumer: string, logger: Logger, metrics: Metrics | undefined): boolean {
  if (isUuid(id)) return false;
  m.term();
  terminatedWithoutId({ consumer, subject: m.subject, streamSeq: m.seq, msgId: id }, logger, metrics);
  return true;
}

/** Logs and counts a message terminated for want of an event id (both buses: withoutEventId). */
function terminatedWithoutId(found: { consumer: string; subject: string; streamSeq: number; msgId: string }, logger: Logger, metrics: Metrics | undefined): void {
  const { consumer, msgId } = found;
  logger.error({ ...found, msgId: msgId.slice(0, 100) }, "bus message without an event id (Nats-Msg-Id, a UUID) terminated: it can be neither applied once nor delivered again");
  metrics
    ?.counter("ttip_bus_messages_terminated_total", "Stored messages the bus terminated undelivered: no event id (Nats-Msg-Id, a UUID).", ["consumer", "reason"])
    .inc({ consumer, reason: msgId ? "id_not_uuid" : "no_id" });
}

/** What a consumer reads from a delivered message's headers ("" for a header it lacks). */
export interface EventHeaders {
  /** Nats-Msg-Id. */
  id: string;
  traceparent: string;
}

/** The parts of nats.js's MsgImpl (nats-base-client/msg.js) that hold a message's header block as it came. */
interface RawMsg {
  _msg?: { hdr?: unknown };
  _rdata?: unknown;
}

const headerText = new TextDecoder();

/**
 * A delivered message's event id and trace context, as nats.js's `headers.get` reads them (keys
 * compared exactly, the first value of a key given twice, values trimmed), from its header block
 * as it came. nats.js decodes the whole block first (each key canonicalised, looked up among the
 * others and its value checked) and each get lists and filters the keys again: measured, 13-17 us
 * for a message's two headers against 2-3 us this way, for each message every consumer is
 * delivered (11 per tip). Another nats.js than this was written against: its headers are read.
 */
export function eventHeaders(m: JsMsg): EventHeaders {
  const raw = (m as unknown as { msg?: RawMsg }).msg;
  const hdr = raw?._msg?.hdr;
  if (typeof hdr !== "number" || !(raw?._rdata instanceof Uint8Array)) {
    return { id: m.headers?.get("Nats-Msg-Id") ?? "", traceparent: m.headers?.get("traceparent") ?? "" };
  }
  if (hdr < 0) return { id: "", traceparent: "" }; // no header block
  const text = headerText.decode(raw._rdata.subarray(0, hdr));
  let id: string | undefined;
  let traceparent: string | undefined;
  // The first line is the status line (NATS/1.0 ...); then "key: value" lines.
  for (let at = text.indexOf("\r\n") + 2; at > 1 && at < text.length; ) {
    const next = text.indexOf("\r\n", at);
    const end = next < 0 ? text.length : next;
    const colon = text.indexOf(":", at);
    if (colon > at && colon < end) {
      const key = text.slice(at, colon);
      if (key === "Nats-Msg-Id") id ??= text.slice(colon + 1, end).trim();
      else if (key === "traceparent") traceparent ??= text.slice(colon + 1, end).trim();
    }
    at = end + 2;
  }
  return { id: id ?? "", traceparent: traceparent ?? "" };
}

/** The reply subject of a JetStream delivery: "$JS.ACK." then the delivery's tokens. */
const ACK_PREFIX = "$JS.ACK.";
const DOT = 46;
const DIGIT_0 = 48;

/**
 * How often the bus has delivered `m` (nats.js's `m.info.deliveryCount`), read from its reply
 * subject where nats.js's parseInfo reads it: the 5th of 9 tokens (stream, consumer, then the
 * count), or the 7th of 11 or more (a domain and an account hash before the stream). parseInfo
 * splits the subject, splices the array and parses eight numbers into an object; only this
 * one is read, for each message every consumer is delivered. A subject of another shape (or a
 * count that is not plain digits) is left to nats.js, which reads or refuses it as before.
 */
export function deliveryCount(m: JsMsg): number {
  // nats.js's JsMsgImpl has it (decoded once, the ack reuses it); its JsMsg type does not declare it.
  const reply = (m as unknown as { reply?: unknown }).reply;
  if (typeof reply !== "string" || !reply.startsWith(ACK_PREFIX)) return m.info.deliveryCount;
  let dots = 0;
  for (let i = 0; i < reply.length; i++) if (reply.charCodeAt(i) === DOT) dots++;
  const tokens = dots + 1;
  const field = tokens === 9 ? 4 : tokens >= 11 ? 6 : -1;
  if (field < 0) return m.info.deliveryCount;
  let at = 0;
  for (let seen = 0; seen < field; at++) if (reply.charCodeAt(at) === DOT) seen++;
  let count = 0;
  let digits = 0;
  for (; at < reply.length && reply.charCodeAt(at) !== DOT; at++, digits++) {
    const digit = reply.charCodeAt(at) - DIGIT_0;
    if (digit < 0 || digit > 9) return m.info.deliveryCount;
    count = count * 10 + digit;
  }
  // Digits beyond a safe integer: nats.js's parseInt rounds them, as it always has.
  return digits > 0 && digits <= 15 ? count : m.info.deliveryCount;
}

const headerBytes = new TextEncoder();
const LINE_BREAK = /[\r\n]/;

/**
 * An event's headers for a publish, the bytes nats.js's headers() with these two set would encode
 * (MsgHdrsImpl.toString: status line, "key: value" lines, values trimmed), made at once: nats.js
 * canonicalises and checks each key, looks it up among the others twice per set and checks the
 * value, to send one string. nats.js's publish only asks a publish's headers to encode themselves.
 * A value with a line break goes through nats.js's headers, which refuse it, as before.
 */
export function publishHeaders(id: string, traceparent: string | undefined): MsgHdrs {
  if (LINE_BREAK.test(id) || (traceparent && LINE_BREAK.test(traceparent))) {
    const h = headers();
    h.set("Nats-Msg-Id", id);
    if (traceparent) h.set("traceparent", traceparent);
    return h;
  }
  const bytes = headerBytes.encode(`NATS/1.0\r\nNats-Msg-Id: ${id.trim()}${traceparent ? `\r\ntraceparent: ${traceparent.trim()}` : ""}\r\n\r\n`);
  return { encode: () => bytes } as unknown as MsgHdrs;
}

/** A JetStream API answer "consumer not found". */
const isNotFound = (err: unknown) => (err as NatsError)?.api_error?.err_code === 10014;

/** A durable's state, or undefined when there is none of that name. */
async function consumerInfo(jsm: JetStreamManager, stream: string, name: string): Promise<ConsumerInfo | undefined> {
  return jsm.consumers.info(stream, name).catch((err) => (isNotFound(err) ? undefined : Promise.reject(err)));
}

/** NATS subject matching: tokens split on ".", "*" matches one, ">" the rest. */
export function subjectMatches(filter: string, subject: string): boolean {
  const f = filter.split(".");
  const s = subject.split(".");
  for (let i = 0; i < f.length; i++) {
    if (f[i] === ">") return s.length > i;
    if (i >= s.length || (f[i] !== "*" && f[i] !== s[i])) return false;
  }
  return f.length === s.length;
}

export interface JetStreamOptions {
  servers: string;
  /** Stream name (default TTIP). */
  stream?: string;
  /**
   * First subject token on the wire (default "ttip"). Code always says
   * "ttip.<service>.<event>"; another prefix gives tests and tenants their own
   * stream on a shared server.
   */
  subjectPrefix?: string;
  logger: Logger;
  /** Wait before a failed message is delivered again (default 1 s). */
  redeliveryDelayMs?: number;
  /** How long a publish waits for the stream's acknowledgement before it fails (default 5 s). */
  publishTimeoutMs?: number;
  /**
   * Retention limits set on the stream; 0 or absent leaves the server's (or
   * the stream's current) value, so an operator's replica count or limits on
   * an existing stream are kept.
   */
  limits?: { maxAgeMs?: number; maxBytes?: number; replicas?: number };
  /**
   * What the connection sends goes in one write per turn of the event loop (default true; see
   * writeOncePerTurn). Off: one write per task, as nats.js does (to measure what it saves).
   */
  writeOncePerTurn?: boolean;
}

/** The parts of nats.js's ProtocolHandler (nats-base-client/protocol.js) writeOncePerTurn changes. */
interface NatsProtocol {
  flushPending(): void;
  outbound: { size(): number };
  pendingLimit: number;
}

/**
 * Everything the connection sends during one turn of the event loop (publishes, acknowledgements,
 * pull requests) in one socket write, at its end (setImmediate). nats.js writes at the end of each
 * task (a microtask): the acknowledgements of each consumer's batch, each relay's publishes and
 * each pull request went in a write of their own, though they were made while handling the same
 * batch of socket reads. Every write is a system call here and wakes nats-server. The delay is the
 * rest of the turn; a buffer past nats.js's limit goes at once, as before. Order is kept: all goes
 * through the one buffer.
 */
function writeOncePerTurn(nc: NatsConnection): void {
  const protocol = (nc as unknown as { protocol?: Partial<NatsProtocol> }).protocol;
  // Another nats.js than the one this was written against: its own flushing is kept.
  if (typeof protocol?.flushPending !== "function" || typeof protocol.outbound?.size !== "function" || typeof protocol.pendingLimit !== "number") return;
  const p = protocol as NatsProtocol;
  const flushNow = p.flushPending.bind(p);
  let due = false;
  p.flushPending = () => {
    if (p.outbound.size() >= p.pendingLimit) return flushNow();
    if (due) return;
    due = true;
    setImmediate(() => {
      due = false;
      flushNow();
    });
  };
}

/** The parts of nats.js's PullConsumerMessagesImpl (jetstream/consumer.js) QueuedDeliveries holds back. */
interface PullRequests {
  pull(options: unknown): void;
  pullOptions(): unknown;
}

/**
 * A durable's messages as nats.js's consume hands them to a callback, queued here for one worker
 * to take. Not consume's async iterator: there every message goes through an async generator's
 * steps (promises, result objects: bench/bus-consume.ts), for each of a tip's 11 deliveries.
 * The iterator also held the bound on messages in this process: nats.js queues its next pull
 * request behind the messages, so it went only once the loop had reached it. With a callback
 * nats.js sends it as messages arrive; so here a pull request waits while `bound` messages are
 * queued, and goes (asking for what the consumer then lacks) once the worker takes them. At most
 * `bound` queued plus what the requests already sent bring (max_messages).
 */
class QueuedDeliveries {
  private readonly queue: JsMsg[] = [];
  private arrived: (() => void) | undefined;
  private pullHeld = false;
  /** Set once nats.js has closed the messages: the error it closed them with, if any. */
  private closed: { err?: Error } | undefined;

  private constructor(
    private readonly messages: { close(): Promise<void | Error> },
    private readonly pull: (options: unknown) => void,
    private readonly pullOptions: () => unknown,
    private readonly bound: number,
  ) {}

  static async start(consumer: Consumer, maxMessages: number, bound: number): Promise<QueuedDeliveries> {
    let deliveries: QueuedDeliveries | undefined;
    // Closed, not looked for without end, when the durable or its stream is gone: the bus makes them again (keepConsuming).
    const messages = await consumer.consume({ max_messages: maxMessages, abort_on_missing_resource: true, callback: (m) => deliveries!.arrive(m) });
    const requests = messages as unknown as Partial<PullRequests>;
    if (typeof requests.pull !== "function" || typeof requests.pullOptions !== "function") {
      await messages.close();
      throw new Error("nats.js's consume has no pull(): the bus cannot bound the messages it holds with this version");
    }
    deliveries = new QueuedDeliveries(messages, requests.pull.bind(messages), requests.pullOptions.bind(messages), bound);
    // Its first request went when consume() began; each later one passes here.
    requests.pull = (options) => deliveries!.request(options);
    void messages.closed().then((err) => deliveries!.end(err ?? undefined));
    return deliveries;
  }

  private arrive(m: JsMsg): void {
    this.queue.push(m);
    this.arrived?.();
  }

  private request(options: unknown): void {
    if (this.queue.length >= this.bound) this.pullHeld = true;
    else this.pull(options);
  }

  private end(err: Error | undefined): void {
    this.closed = { err };
    this.arrived?.();
  }

  /** Up to `max` queued messages, oldest first ([] when none is queued). */
  take(max: number): JsMsg[] {
    const taken = this.queue.length <= max ? this.queue.splice(0) : this.queue.splice(0, max);
    if (this.pullHeld && this.queue.length < this.bound) {
      this.pullHeld = false;
      this.pull(this.pullOptions());
    }
    return taken;
  }

  /** Resolves true once a message is queued, false once the messages are closed and none is left; rejects with the error nats.js closed them with. */
  async waitForMore(): Promise<boolean> {
    while (!this.queue.length) {
      if (this.closed) {
        if (this.closed.err) throw this.closed.err;
        return false;
      }
      await new Promise<void>((resolve) => (this.arrived = resolve));
      this.arrived = undefined;
    }
    return true;
  }

  /** No more messages; those queued are still taken. */
  async close(): Promise<void> {
    await this.messages.close();
  }
}

export class JetStreamBus implements EventBus {
  private constructor(
    private readonly nc: NatsConnection,
    private readonly stream: string,
    private readonly logger: Logger,
    private readonly redeliveryDelayMs: number,
    private readonly prefix: string,
    publishTimeoutMs: number,
    private readonly ensureStream: () => Promise<void>,
  ) {
    this.acks = new PublishAcks(nc, publishTimeoutMs);
  }

  private toWire(subject: string): string {
    return this.prefix === "ttip" ? subject : subject.replace(/^ttip(?=\.|$)/, this.prefix);
  }

  private fromWire(subject: string): string {
    return this.prefix === "ttip" ? subject : subject.replace(new RegExp(`^${this.prefix}(?=\\.|$)`), "ttip");
  }

  static async connect(options: JetStreamOptions): Promise<JetStreamBus> {
    // noAsyncTraces: a request (every publish waits for its acknowledgement
    // that way) otherwise builds an Error for its stack and a NatsError for a
    // timeout that almost never comes, before it is sent. A timeout or a
    // refusal still rejects the publish, with a shorter stack.
    const nc = await connect({ servers: options.servers, name: "ttip", maxReconnectAttempts: -1, noAsyncTraces: true });
    if (options.writeOncePerTurn !== false) writeOncePerTurn(nc);
    const stream = options.stream ?? "TTIP";
    const prefix = options.subjectPrefix ?? "ttip";
    const jsm = await nc.jetstreamManager();
    const limits = options.limits ?? {};
    const set = {
      subjects: [`${prefix}.>`],
      // Publishes retried within this window with the same id are stored once.
      duplicate_window: 10 * 60 * 1_000_000_000,
      ...(limits.maxAgeMs ? { max_age: limits.maxAgeMs * 1_000_000 } : {}),
      ...(limits.maxBytes ? { max_bytes: limits.maxBytes } : {}),
      ...(limits.replicas ? { num_replicas: limits.replicas } : {}),
    };
    const ensureStream = async () => {
      const existing = await jsm.streams.info(stream).catch(() => undefined);
      if (existing) await jsm.streams.update(stream, { ...existing.config, ...set });
      else await jsm.streams.add({ name: stream, retention: RetentionPolicy.Limits, storage: StorageType.File, ...set });
    };
    // Another process starting beside this one (a replica, on a new server) may add the stream between this one's
    // look and its add, refused ("subjects overlap"): looked at again, it is there to update.
    const ensured = () => ensureStream().catch(ensureStream);
    await ensured();
    return new JetStreamBus(nc, stream, options.logger, options.redeliveryDelayMs ?? REDELIVERY_DELAY_MS, prefix, options.publishTimeoutMs ?? PUBLISH_TIMEOUT_MS, ensured);
  }

  /** The stream made again, once at a time, when NATS has lost it (a server without its store, an operator's delete). */
  private restoring: Promise<void> | undefined;
  private restoreStream(why: string): Promise<void> {
    this.restoring ??= this.ensureStream()
      .then(() => this.logger.warn({ stream: this.stream, why }, "the stream was gone; made again"))
      .finally(() => (this.restoring = undefined));
    return this.restoring;
  }

  private readonly acks: PublishAcks;

  /** The stream's max_age as the server has it (0 there: no limit); the app may not have set it. */
  async storedMaxAgeMs(): Promise<number | undefined> {
    const info = await (await this.nc.jetstreamManager()).streams.info(this.stream);
    const ns = info.config.max_age;
    return ns > 0 ? ns / 1_000_000 : undefined;
  }

  async storedWholeSince(): Promise<Date | undefined> {
    const { state } = await (await this.nc.jetstreamManager()).streams.info(this.stream);
    if (state.first_seq <= 1) return undefined;
    return state.messages > 0 ? new Date(state.first_ts) : new Date();
  }

  async publish(message: BusMessage): Promise<void> {
    try {
      await this.acks.publish(this.toWire(message.subject), message.data, publishHeaders(message.id, message.traceparent));
    } catch (err) {
      // Refused for want of a stream: made again for the retry (the relay's next pass). Before, every pass was refused
      // until a process restarted, and made it on its start.
      if (err instanceof Error && err.message === NO_STREAM) await this.restoreStream(err.message).catch(() => undefined);
      throw err;
    }
  }

  /**
   * The durable consumer of one subject, created (or found again) from the start of the stream:
   * acknowledged one by one, redelivered without end until its handler succeeds, less often the more it fails (redeliveryDelay).
   * Not AckPolicy.All (one acknowledgement per batch): an ack of sequence N also acknowledges
   * every message below N delivered to anyone, so a replica sharing the durable would acknowledge
   * another's batch not yet applied (lost if that one crashes), and a batch applied after a nak
   * would acknowledge the message nak'd before it came again.
   */
  private async durableConsumer(durable: string, subject: string, replaces: readonly string[] = [], fromNow = false, since?: Date) {
    if (fromNow && replaces.length) throw new Error(`${durable}: fromNow or replaces, not both`);
    const jsm = await this.nc.jetstreamManager();
    const config = {
      durable_name: durable,
      filter_subject: this.toWire(subject),
      ack_policy: AckPolicy.Explicit,
      // New: from the messages stored once it is made (made again with the same config, it keeps its place).
      // Made again after it was lost: from `since`.
      ...(fromNow && since ? { deliver_policy: DeliverPolicy.StartTime, opt_start_time: since.toISOString() } : { deliver_policy: fromNow ? DeliverPolicy.New : DeliverPolicy.All }),
      ack_wait: 30 * 1_000_000_000,
      max_deliver: -1,
    };
    // There already with its subject, it is kept as it is, its place with it: closed for another reason than its loss
    // (NATS restarting), or a `fromNow` durable made again from `since` (a start asking New would be refused its other
    // policy). One whose subject changed is added below, and refused loudly as before.
    const existing = since || fromNow ? await consumerInfo(jsm, this.stream, durable) : undefined;
    if (existing?.config.filter_subject === config.filter_subject) return this.nc.jetstream().consumers.get(this.stream, durable);
    if (!replaces.length) await jsm.consumers.add(this.stream, config);
    else {
      if (!(await consumerInfo(jsm, this.stream, durable))) {
        const start = await this.appliedBelow(jsm, replaces);
        // Another replica may make it meanwhile (from its own start): then that one is used.
        await jsm.consumers
          .add(this.stream, start > 1 ? { ...config, deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: start } : config)
          .catch(async (err) => {
            if (!(await consumerInfo(jsm, this.stream, durable))) throw err;
          });
      }
      for (const old of replaces) await jsm.consumers.delete(this.stream, old).catch((err) => (isNotFound(err) ? false : Promise.reject(err)));
    }
    return this.nc.jetstream().consumers.get(this.stream, durable);
  }

  /**
   * The first stream sequence some durable of `names` may not have applied: below it each has
   * acknowledged every message it reads. A durable with nothing pending has all that was stored
   * before it was asked (the stream's last sequence, read first); one that does not exist, nothing.
   */
  private async appliedBelow(jsm: JetStreamManager, names: readonly string[]): Promise<number> {
    const last = (await jsm.streams.info(this.stream)).state.last_seq;
    let below = Infinity;
    for (const name of names) {
      const info = await consumerInfo(jsm, this.stream, name);
      const done = !info ? 0 : info.num_pending === 0 && info.num_ack_pending === 0 ? last : info.ack_floor.stream_seq;
      below = Math.min(below, done + 1);
    }
    return below;
  }

  /**
   * Runs `work` over a durable's deliveries for as long as the subscription lasts. When NATS closes them because
   * the durable or its stream is gone (a server that lost its store, an operator's delete), both are made again,
   * a `fromNow` durable from a minute before (from then on, it would skip what was stored meanwhile), and the work
   * goes on. Before, nats.js looked for the durable without end: nothing was delivered until a restart.
   */
  private async keepConsuming(durable: string, open: (since?: Date) => Promise<QueuedDeliveries>, work: (deliveries: QueuedDeliveries) => Promise<void>) {
    let deliveries = await open();
    let stopping = false;
    let wake = () => {};
    const done = (async () => {
      for (let attempt = 0; ;) {
        await work(deliveries).catch((err: unknown) => stopping || this.logger.warn({ err, consumer: durable }, "a durable's messages were closed; making it again"));
        // Closed within the pull's expiry (30 s) of the loss: from a minute before, what was stored since is read.
        const since = new Date(Date.now() - 60_000);
        // The connection closed (the bus closed before its subscriptions stopped): nothing to make again.
        const over = () => stopping || this.nc.isClosed();
        while (!over()) {
          await new Promise<void>((resolve) => ((wake = resolve), setTimeout(resolve, Math.min(30_000, 500 * 2 ** Math.min(attempt++, 6))).unref()));
          if (over()) break;
          try {
            await this.restoreStream(`durable ${durable}'s messages closed`);
            deliveries = await open(since);
            // Stopped while it was being opened: stop() closed the old messages, so these are closed here.
            if (stopping) await deliveries.close();
            attempt = 0;
            break;
          } catch (err) {
            this.logger.warn({ err, consumer: durable }, "a durable could not be made again; retrying");
          }
        }
        if (over()) return;
      }
    })();
    return {
      stop: async () => {
        stopping = true;
        wake();
        await deliveries.close();
        await done;
      },
    };
  }

  async subscribe(options: SubscribeOptions) {
    const open = async (since?: Date) =>
      QueuedDeliveries.start(await this.durableConsumer(options.durable, options.subject, [], options.fromNow, since), 64, 64);
    return this.keepConsuming(options.durable, open, async (deliveries) => {
      while (await deliveries.waitForMore()) {
        const [m] = deliveries.take(1);
        const { id, traceparent } = eventHeaders(m);
        if (withoutEventId(m, id, options.durable, this.logger, options.metrics)) continue;
        try {
          await options.handler({
            id,
            subject: this.fromWire(m.subject),
            data: m.data,
            deliveryCount: deliveryCount(m),
            traceparent: traceparent || undefined,
          });
          m.ack();
        } catch (err) {
          this.logger.warn({ err, subject: m.subject, eventId: id, consumer: options.durable }, "event handler failed; will redeliver");
          countFailed(options.metrics, options.durable, 1, err);
          m.nak(waitAfter(err, this.redeliveryDelayMs, deliveryCount(m)));
        }
      }
    });
  }

  async subscribeBatches(options: BatchSubscribeOptions) {
    // Bounded: at most two batches wait unacknowledged in this process (and what the requests out bring).
    const open = async (since?: Date) => QueuedDeliveries.start(
      await this.durableConsumer(options.durable, options.subject, since ? [] : options.replaces, options.fromNow, since),
      Math.max(64, options.maxBatch), options.maxBatch * 2);
    return this.keepConsuming(options.durable, open, async (deliveries) => {
      while (await deliveries.waitForMore()) {
        const batch: JsMsg[] = [];
        const delivered: DeliveredMessage[] = [];
        for (const m of deliveries.take(options.maxBatch)) {
          const { id, traceparent } = eventHeaders(m);
          if (withoutEventId(m, id, options.durable, this.logger, options.metrics)) continue;
          batch.push(m);
          delivered.push({ id, subject: this.fromWire(m.subject), data: m.data, deliveryCount: deliveryCount(m), traceparent: traceparent || undefined });
        }
        if (!batch.length) continue;
        try {
          await options.handler(delivered);
          for (const m of batch) m.ack();
        } catch (err) {
          // Acknowledged: only what the handler says it applied; anything else comes again.
          const applied = err instanceof BatchPartlyApplied ? err.applied : undefined;
          const why = err instanceof BatchPartlyApplied ? err.reason : err;
          let redelivered = 0;
          for (const [i, m] of batch.entries()) {
            if (applied?.has(delivered[i].id.toLowerCase())) m.ack();
            else {
              m.nak(waitAfter(why, this.redeliveryDelayMs, delivered[i].deliveryCount));
              redelivered++;
            }
          }
          countFailed(options.metrics, options.durable, redelivered, why);
          this.logger.warn({ err: applied ? (err as BatchPartlyApplied).reason : err, consumer: options.durable, messages: batch.length, redelivered }, "batch handler failed; will redeliver");
        }
      }
    });
  }

  async readStored(options: ReadStoredOptions): Promise<number> {
    const js = this.nc.jetstream();
    const consumer = await js.consumers.get(this.stream, {
      filterSubjects: this.toWire(options.subject),
      deliver_policy: DeliverPolicy.StartTime,
      opt_start_time: options.since.toISOString(),
    });
    const lastSeq = (await (await this.nc.jetstreamManager()).streams.info(this.stream)).state.last_seq;
    if ((await consumer.info()).num_pending === 0) {
      await consumer.delete().catch(() => undefined);
      return 0;
    }
    let count = 0;
    const messages = await consumer.consume({ max_messages: 512 });
    try {
      for await (const m of messages) {
        const { id } = eventHeaders(m);
        // Skipped as live consumers skip it (withoutEventId): a rebuild counts what they applied.
        if (!isUuid(id)) this.logger.warn({ subject: m.subject, streamSeq: m.seq }, "stored message without an event id skipped");
        else {
          await options.handler({ id, subject: this.fromWire(m.subject), data: m.data, storedAt: new Date(Math.floor(m.info.timestampNanos / 1e6)) });
          count++;
        }
        if (m.info.pending === 0 || m.seq >= lastSeq) break;
      }
    } finally {
      await messages.close();
      await consumer.delete().catch(() => undefined);
    }
    return count;
  }

  notify(subject: string, data: Uint8Array): void {
    try {
      this.nc.publish(`${NOTIFY_TOKEN}.${this.toWire(subject)}`, data);
    } catch (err) {
      // Best effort by contract: a lost wake-up costs a listener's poll interval, nothing more.
      this.logger.debug({ err, subject }, "notification not sent");
    }
  }

  async listen(subject: string, handler: (data: Uint8Array) => void) {
    const sub = this.nc.subscribe(`${NOTIFY_TOKEN}.${this.toWire(subject)}`, {
      callback: (err, m) => {
        if (err) this.logger.warn({ err, subject }, "notification subscription failed");
        else handler(m.data);
      },
    });
    // Registered at the server before the caller relies on hearing others.
    await this.nc.flush();
    return {
      stop: async () => {
        sub.unsubscribe();
      },
    };
  }

  async close(): Promise<void> {
    await this.nc.drain();
    this.acks.close();
  }
}

/**
 * JetStream publishes and their acknowledgements, matched over one reply
 * subscription. nats.js's js.publish makes each a request of its own, and each
 * request also builds a "cancelled" error with its stack after its answer came:
 * measured, that took the client twice the CPU of the publish itself
 * (21-30 against 10-11 us a publish, eight at a time). A publish resolves once
 * the stream stored the message (or dropped a repeated id), and rejects on the
 * stream's error, on no stream taking the subject, on the connection closing
 * or after the timeout, as js.publish does. It also rejects at once while the
 * connection is down, and when it goes down: nats.js drops what was written
 * meanwhile on reconnecting, so such a publish could only time out, and its
 * sender (the outbox relay) can try again as soon as the server is back.
 */
class PublishAcks {
  private readonly inbox = createInbox();
  private readonly waiting = new Map<string, { resolve: () => void; reject: (err: Error) => void; timer: NodeJS.Timeout }>();
  private next = 0;
  private sub: Subscription | undefined;
  private closed = false;
  private connected = true;

  constructor(
    private readonly nc: NatsConnection,
    private readonly timeoutMs: number,
  ) {
    void (async () => {
      for await (const s of nc.status()) {
        if (s.type === "disconnect") {
          this.connected = false;
          this.rejectAll(new Error("connection to NATS lost before the publish was acknowledged"));
        } else if (s.type === "reconnect") this.connected = true;
      }
    })();
  }

  publish(subject: string, data: Uint8Array, h: MsgHdrs): Promise<void> {
    if (this.closed) return Promise.reject(new Error("bus is closed"));
    if (!this.connected) return Promise.reject(new Error("not connected to NATS"));
    // Subscribed before the first publish goes out on the same connection, so the server knows it first.
    this.sub ??= this.nc.subscribe(`${this.inbox}.*`, { callback: (err, m) => this.answered(err, m) });
    const token = (this.next++).toString(36);
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => this.settle(token, new Error(`no acknowledgement of a publish to ${subject} within ${this.timeoutMs} ms`)), this.timeoutMs);
      this.waiting.set(token, { resolve, reject, timer });
      try {
        this.nc.publish(subject, data, { reply: `${this.inbox}.${token}`, headers: h });
      } catch (err) {
        this.settle(token, err as Error);
      }
    });
  }

  private answered(err: NatsError | null, m: Msg): void {
    if (err) {
      // The subscription itself failed: no answer will come to anyone waiting.
      this.rejectAll(err);
      this.sub = undefined;
      return;
    }
    this.settle(m.subject.slice(this.inbox.length + 1), publishRefusal(m));
  }

  private settle(token: string, err?: Error): void {
    const w = this.waiting.get(token);
    if (!w) return; // answered after its timeout
    this.waiting.delete(token);
    clearTimeout(w.timer);
    if (err) w.reject(err);
    else w.resolve();
  }

  private rejectAll(err: Error): void {
    for (const token of [...this.waiting.keys()]) this.settle(token, err);
  }

  close(): void {
    this.closed = true;
    this.rejectAll(new Error("bus closed before the publish was acknowledged"));
  }
}

/** Why the stream did not take a publish, from its answer; undefined when it stored it (or dropped a repeated id). */
const NO_STREAM = "no stream takes this subject";

function publishRefusal(m: Msg): Error | undefined {
  // An empty answer with status 503: nothing (no stream) took the subject.
  if (m.data.length === 0) return new Error(m.headers?.code === 503 ? NO_STREAM : `publish answered ${m.headers?.code ?? "empty"}`);
  let ack: { stream?: string; error?: { code?: number; description?: string } };
  try {
    ack = JSON.parse(new TextDecoder().decode(m.data)) as typeof ack;
  } catch {
    return new Error("publish answered with something other than an acknowledgement");
  }
  if (ack.error) return new Error(`stream refused the publish: ${ack.error.description ?? ack.error.code}`);
  return ack.stream ? undefined : new Error("publish acknowledged by no stream");
}

/** What an in-process bus keeps, as a JetStream stream's limits would. */
export interface InProcessBusLimits {
  /** Messages kept; beyond it the oldest go (JetStream's limits retention, discard old). */
  maxMessages?: number;
  /** How long a message id is remembered to drop a re-publish (JetStream's duplicate window). */
  duplicateWindowMs?: number;
  /** Ids remembered at most, whatever their age. */
  maxIds?: number;
}

const IN_PROCESS_LIMITS: Required<InProcessBusLimits> = { maxMessages: 50_000, duplicateWindowMs: 120_000, maxIds: 100_000 };

/** Messages an in-process consumer holds for redelivery at most (each one that failed: a few, unless a bug fails many). */
const MAX_HELD_MESSAGES = 1_000;

/** The messages of a batch that a BatchPartlyApplied says were not applied. */
const notApplied = (messages: DeliveredMessage[], err: BatchPartlyApplied) => messages.filter((m) => !err.applied.has(m.id.toLowerCase()));

/**
 * The same contract inside one process: messages are kept (like a stream, within its
 * limits), each durable consumer reads them in order, a failed handler gets the message
 * again after a delay, and ids seen within the duplicate window are not stored twice.
 * Memory is bounded by the limits, as a stream's is, not by the life of the process.
 * It keeps messages by count, never by age (no storedMaxAgeMs), so the inboxes of the
 * services on it (the embedded platform's) are never pruned.
 */
export class InProcessBus implements EventBus {
  private readonly log: StoredMessage[] = [];
  /** Sequence number of log[0]: consumers' positions are sequences, so trimming the log moves nothing. */
  private base = 0;
  /** Id -> when it was first published, oldest first (a Map keeps insertion order). */
  private readonly seen = new Map<string, number>();
  private readonly consumers = new Map<string, { position: number; wake: () => void }>();
  private readonly limits: Required<InProcessBusLimits>;
  private closed = false;

  constructor(
    private readonly logger: Logger,
    private readonly redeliveryDelayMs = REDELIVERY_DELAY_MS,
    limits: InProcessBusLimits = {},
    /** Times the duplicate window (a test moves it instead of sleeping). */
    private readonly clock: Clock = systemClock,
  ) {
    this.limits = { ...IN_PROCESS_LIMITS, ...limits };
  }

  /** Messages and ids held now (for tests and metrics). */
  get held(): { messages: number; ids: number } {
    return { messages: this.log.length, ids: this.seen.size };
  }

  async publish(message: BusMessage): Promise<void> {
    if (this.closed) throw new Error("bus is closed");
    const now = this.clock.now();
    this.forgetOldIds(now);
    if (this.seen.has(message.id)) return;
    this.seen.set(message.id, now);
    // A copy, as a stream stores one: a Buffer's slice() would share its memory (pg's bytea values
    // and other small Buffers sit in node's 8 KiB pool slabs, which each stored message would pin).
    this.log.push({ ...message, data: new Uint8Array(message.data), storedAt: new Date() });
    this.trim();
    for (const c of this.consumers.values()) c.wake();
  }

  private forgetOldIds(now: number): void {
    for (const [id, at] of this.seen) {
      if (now - at < this.limits.duplicateWindowMs && this.seen.size < this.limits.maxIds) break;
      this.seen.delete(id);
    }
  }

  async storedWholeSince(): Promise<Date | undefined> {
    if (this.base === 0) return undefined;
    return this.log[0]?.storedAt ?? new Date();
  }

  /** Drops the oldest messages beyond maxMessages; a consumer that had not read them skips them, as on JetStream. */
  private trim(): void {
    const excess = this.log.length - this.limits.maxMessages;
    if (excess <= 0) return;
    this.log.splice(0, excess);
    this.base += excess;
    for (const [durable, c] of this.consumers) {
      if (c.position >= this.base) continue;
      this.logger.warn({ consumer: durable, skipped: this.base - c.position }, "in-process bus dropped messages a consumer had not read (maxMessages)");
      c.position = this.base;
    }
  }

  async subscribe(options: SubscribeOptions) {
    if (options.fromNow) this.startFromNow(options.durable);
    return this.consume(options.durable, options.subject, 1, (batch) => options.handler(batch[0]), options.metrics);
  }

  /**
   * Every matching message already stored, up to maxBatch, in one call: a
   * consumer then applies them in one transaction, as it does from JetStream.
   */
  async subscribeBatches(options: BatchSubscribeOptions) {
    if (options.fromNow && options.replaces?.length) throw new Error(`${options.durable}: fromNow or replaces, not both`);
    if (options.fromNow) this.startFromNow(options.durable);
    if (options.replaces?.length && !this.consumers.has(options.durable)) {
      // Where the earliest of those it takes over had got to (the start of what is kept for one there is not).
      const positions = options.replaces.map((d) => this.consumers.get(d)?.position ?? this.base);
      this.consumers.set(options.durable, { position: Math.min(...positions), wake: () => undefined });
    }
    for (const d of options.replaces ?? []) this.consumers.delete(d);
    return this.consume(options.durable, options.subject, Math.max(1, options.maxBatch), options.handler, options.metrics);
  }

  /** A durable not made yet starts after the messages stored so far (fromNow). */
  private startFromNow(durable: string): void {
    if (!this.consumers.has(durable)) this.consumers.set(durable, { position: this.base + this.log.length, wake: () => undefined });
  }

  /**
   * A durable consumer's loop. A failed batch is delivered again as it was
   * (the same messages, none added), after a redelivery delay that grows as it keeps failing (redeliveryDelay); of a batch
   * partly applied, only the messages not applied are (held, below). A message
   * without an event id is terminated (skipped, logged and counted once), as
   * the JetStream bus does (withoutEventId).
   */
  private consume(durable: string, subject: string, maxBatch: number, handler: (batch: DeliveredMessage[]) => Promise<void>, metrics: Metrics | undefined) {
    const state = this.consumers.get(durable) ?? { position: this.base, wake: () => undefined };
    this.consumers.set(durable, state);
    let stopped = false;
    let signal: (() => void) | undefined;
    state.wake = () => signal?.();
    const sleep = (ms?: number) =>
      new Promise<void>((resolve) => {
        const timer = ms === undefined ? undefined : setTimeout(resolve, ms);
        signal = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    const loop = (async () => {
      let deliveries = 0;
      /** The end of the batch that failed, while it is being delivered again. */
      let retryEnd: number | undefined;
      /** When the batch that failed is delivered again. */
      let retryDue = 0;
      /**
       * Messages of a batch partly applied that were not, delivered again on their own after the redelivery delay
       * while the consumer goes on past them, as JetStream does with those it is told to redeliver: one message that
       * always fails holds back none after it. Past MAX_HELD_MESSAGES, a batch partly applied is delivered again whole.
       */
      let held: { messages: DeliveredMessage[]; due: number } | undefined;
      while (!stopped && !this.closed) {
        if (held && Date.now() >= held.due) {
          // A batch's worth at a time, as from the log; the rest due at once after it.
          const again = held.messages.slice(0, maxBatch).map((m) => ({ ...m, deliveryCount: m.deliveryCount + 1 }));
          const rest = held.messages.slice(maxBatch);
          const { left, why } = await this.deliverHeld(again, durable, handler, metrics);
          const waiting = [...rest, ...left];
          // The rest at once only while some of them were not delivered again since those just were (one round
          // through the held ones); then the wait. At once for ever, two held that always fail took turns without
          // a pause and the log was never read again.
          const round = again[0].deliveryCount;
          const wait = rest.some((m) => m.deliveryCount < round) ? 0 : waitAfter(why, this.redeliveryDelayMs, Math.min(...waiting.map((m) => m.deliveryCount)));
          held = waiting.length ? { messages: waiting, due: Date.now() + wait } : undefined;
          continue;
        }
        if (retryEnd !== undefined && Date.now() < retryDue) {
          // Woken early (a publish, a held message due): the failed batch keeps its wait.
          await sleep(Math.min(retryDue, held?.due ?? Infinity) - Date.now());
          continue;
        }
        if (state.position < this.base) state.position = this.base;
        const found = this.nextBatch(state.position, subject, maxBatch, retryEnd);
        const { end } = found;
        const batch = this.withEventIds(found, durable, metrics, retryEnd === undefined);
        if (!batch.length) {
          // Nothing matched up to `end`: skip past it, or wait for more.
          state.position = Math.max(state.position, end);
          retryEnd = undefined;
          if (end - this.base >= this.log.length) await sleep(held ? Math.max(0, held.due - Date.now()) : undefined);
          continue;
        }
        deliveries++;
        try {
          // Delivered on a later tick, never inside publish(), as over a network.
          await new Promise((r) => setImmediate(r));
          await handler(batch.map((m) => ({ ...m, deliveryCount: deliveries })));
          // Not position = end: a trim during the handler may have moved the position on already.
          state.position = Math.max(state.position, end);
          deliveries = 0;
          retryEnd = undefined;
        } catch (err) {
          this.logger.warn({ err, subject: batch[0].subject, eventId: batch[0].id, messages: batch.length, consumer: durable }, "event handler failed; will redeliver");
          // A message alone in its batch failed as one that is part of a batch does: held aside, the rest delivered
          // past it (as JetStream delays it and goes on). Retried in place, it held back every message after it for
          // good, and the log's trim then moved the consumer past them unread.
          const alone = batch.length === 1;
          if ((err instanceof BatchPartlyApplied || alone) && (held?.messages.length ?? 0) < MAX_HELD_MESSAGES) {
            const { left: failed, why: reason } = failedOf(batch.map((m) => ({ ...m, deliveryCount: deliveries })), err);
            countFailed(metrics, durable, failed.length, reason);
            held = { messages: [...(held?.messages ?? []), ...failed], due: held?.due ?? Date.now() + waitAfter(reason, this.redeliveryDelayMs, deliveries) };
            state.position = Math.max(state.position, end);
            deliveries = 0;
            retryEnd = undefined;
            continue;
          }
          countFailed(metrics, durable, batch.length, err);
          retryEnd = end;
          retryDue = Date.now() + waitAfter(err, this.redeliveryDelayMs, deliveries);
        }
      }
    })();
    return {
      stop: async () => {
        stopped = true;
        signal?.();
        await loop;
      },
    };
  }

  /** Held messages delivered again: those still not applied (none once all are). */
  private async deliverHeld(messages: DeliveredMessage[], durable: string, handler: (batch: DeliveredMessage[]) => Promise<void>, metrics: Metrics | undefined): Promise<{ left: DeliveredMessage[]; why?: unknown }> {
    try {
      await new Promise((r) => setImmediate(r));
      await handler(messages);
      return { left: [] };
    } catch (err) {
      this.logger.warn({ err, subject: messages[0].subject, eventId: messages[0].id, messages: messages.length, consumer: durable }, "event handler failed; will redeliver");
      const { left, why } = failedOf(messages, err);
      countFailed(metrics, durable, left.length, why);
      return { left, why };
    }
  }

  /** The messages of a batch with an event id; the others terminated (logged and counted on their first delivery only). */
  private withEventIds(found: { batch: StoredMessage[]; seqs: number[] }, consumer: string, metrics: Metrics | undefined, first: boolean): StoredMessage[] {
    const { batch, seqs } = found;
    if (batch.every((m) => isUuid(m.id))) return batch;
    return batch.filter((m, i) => {
      if (isUuid(m.id)) return true;
      if (first) terminatedWithoutId({ consumer, subject: m.subject, streamSeq: seqs[i], msgId: m.id }, this.logger, metrics);
      return false;
    });
  }

  /** Up to maxBatch stored messages matching `subject` from sequence `from` (before `until` when set), and the sequence after the last one looked at. */
  private nextBatch(from: number, subject: string, maxBatch: number, until?: number): { batch: StoredMessage[]; seqs: number[]; end: number } {
    const batch: StoredMessage[] = [];
    const seqs: number[] = [];
    let seq = from;
    const last = Math.min(this.base + this.log.length, until ?? Infinity);
    while (seq < last && batch.length < maxBatch) {
      const m = this.log[seq - this.base];
      if (subjectMatches(subject, m.subject)) {
        batch.push(m);
        seqs.push(seq);
      }
      seq++;
    }
    return { batch, seqs, end: seq };
  }

  async readStored(options: ReadStoredOptions): Promise<number> {
    const upTo = this.log.length;
    let count = 0;
    for (let i = 0; i < upTo; i++) {
      const m = this.log[i];
      if (m.storedAt < options.since || !subjectMatches(options.subject, m.subject)) continue;
      // Skipped as live consumers skip it (withoutEventId), as on JetStream.
      if (!isUuid(m.id)) {
        this.logger.warn({ subject: m.subject, streamSeq: this.base + i }, "stored message without an event id skipped");
        continue;
      }
      await options.handler({ ...m, data: m.data.slice() });
      count++;
    }
    return count;
  }

  private readonly listeners = new Set<{ subject: string; handler: (data: Uint8Array) => void }>();

  notify(subject: string, data: Uint8Array): void {
    // Heard on a later tick, never inside notify(), as over a network.
    for (const l of this.listeners) if (l.subject === subject) setImmediate(() => l.handler(data.slice()));
  }

  async listen(subject: string, handler: (data: Uint8Array) => void) {
    const listener = { subject, handler };
    this.listeners.add(listener);
    return {
      stop: async () => {
        this.listeners.delete(listener);
      },
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    this.listeners.clear();
    for (const c of this.consumers.values()) c.wake();
  }
}
