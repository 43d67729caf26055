// NATS's side of a run in process mode: the platform's writes to its NATS socket (each a
// system call and a wake-up of nats-server) and the messages it sent and received.
// BENCH_NATS_BY_SUBJECT=1 splits what was sent by event subject and by acknowledging consumer.
import type { Socket } from "node:net";
import type { JetStreamBus } from "@ttip/runtime";
import type { NatsConnection } from "nats";
import { fromBinary } from "@bufbuild/protobuf";
import { DeliveryUpdatedSchema } from "@ttip/proto/ttip/events/v1/events_pb.js";
import { countSocketWrites } from "./redis-stats.js";

export interface NatsCounts {
  writes: number;
  sent: number;
  received: number;
  /** Messages sent by kind (the subject's first tokens). */
  kinds: Map<string, number>;
}

/**
 * The subject's first tokens (four of a JetStream API call's), cut at the dot that ends them: this
 * runs in the platform's process for every message it publishes (~16 per tip), so its CPU is in the
 * platform's figures. Splitting the subject and joining its first tokens took ~0.4% of the platform's
 * event loop in tip-e2e's profile (bench/nats-kinds.ts).
 */
export function tokensKind(subject: string, _data?: unknown): string {
  let dot = -1;
  for (let tokens = subject.startsWith("$JS.API.") ? 4 : 2; tokens > 0; tokens--) {
    dot = subject.indexOf(".", dot + 1);
    if (dot < 0) return subject;
  }
  return subject.slice(0, dot);
}

/**
 * BENCH_NATS_BY_SUBJECT=1: an acknowledgement by its consumer ($JS.ACK.<stream>.<consumer>.…: who
 * acknowledges how much), a publish by its whole subject (which events are sent), numbers cut; a
 * notification's delivery fact by its channel and status too (its consumers read some of them only).
 */
function subjectKind(subject: string, data?: unknown): string {
  if (subject.startsWith("$JS.ACK.")) return `$JS.ACK ${subject.split(".")[3]}`;
  if (subject.startsWith("$JS.API.")) return tokensKind(subject);
  if (subject.endsWith(".notification.delivery_updated") && data instanceof Uint8Array) {
    const fact = fromBinary(DeliveryUpdatedSchema, data);
    return `${subject} ${fact.channel}/${fact.status}`;
  }
  return subject.replace(/\.\d+$/, ".N");
}

/** Counts the writes to the bus's NATS socket while `counting()` says so; with the messages sent (by kind) and received so far. */
export function countNatsWrites(bus: JetStreamBus, counting: () => boolean): () => NatsCounts {
  const nc = (bus as unknown as { nc: NatsConnection }).nc;
  const socket = (nc as unknown as { protocol: { transport: { socket: Socket } } }).protocol.transport.socket;
  const writes = countSocketWrites(socket, counting);
  // What is sent, by kind: the subject's first tokens ($JS.ACK.<stream>: acknowledgements, $JS.API.CONSUMER: pull requests, ttip: publishes).
  const kinds = new Map<string, number>();
  const kindOf = process.env.BENCH_NATS_BY_SUBJECT === "1" ? subjectKind : tokensKind;
  const protocol = (nc as unknown as { protocol: { publish(subject: string, ...rest: unknown[]): void } }).protocol;
  const publish = protocol.publish;
  protocol.publish = function (this: unknown, subject: string, ...rest: unknown[]) {
    if (counting()) {
      const kind = kindOf(subject, rest[0]);
      kinds.set(kind, (kinds.get(kind) ?? 0) + 1);
    }
    return publish.call(this, subject, ...rest);
  };
  return () => ({ writes: writes(), sent: nc.stats().outMsgs, received: nc.stats().inMsgs, kinds: new Map(kinds) });
}

/** "writes 1.03, messages sent 24.30 ($JS.ACK 13.00, ...), received 24.02" per tip, from two readings of countNatsWrites. */
export function natsPerTip(before: NatsCounts, after: NatsCounts, tips: number): string {
  const per = (n: number) => (n / Math.max(1, tips)).toFixed(2);
  const kinds = [...after.kinds].map(([kind, n]) => [kind, n - (before.kinds.get(kind) ?? 0)] as const).filter(([, n]) => n > 0).sort((a, b) => b[1] - a[1]);
  return `writes ${per(after.writes - before.writes)}, messages sent ${per(after.sent - before.sent)} (${kinds.map(([kind, n]) => `${kind} ${per(n)}`).join(", ")}), received ${per(after.received - before.received)}`;
}
