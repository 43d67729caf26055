import type { EventBus } from "../bus.js";

/**
 * Wraps a bus so that the first successful handling of each message "crashes" after the
 * handler committed and before the ack, and the bus delivers the message again: what an
 * idempotent consumer (its inbox) must absorb. Only `durable`'s messages when one is named.
 * The wrapper has no subscribeBatches, so batch consumers take one message at a time here.
 */
export function crashBeforeFirstAck(bus: EventBus, durable?: string): EventBus & { finished: number } {
  const acked = new Set<string>();
  const wrapped = {
    /** Handlings of the chosen messages that ran to their end (committed). */
    finished: 0,
    publish: (m) => bus.publish(m),
    close: () => bus.close(),
    // Wake-ups pass straight through (absent when the inner bus has none): only acks are tampered with.
    notify: bus.notify?.bind(bus),
    listen: bus.listen?.bind(bus),
    subscribe: (o) =>
      bus.subscribe({
        ...o,
        handler: async (m) => {
          await o.handler(m);
          if (durable !== undefined && o.durable !== durable) return;
          wrapped.finished++;
          if (!acked.has(m.id)) {
            acked.add(m.id);
            throw new Error("simulated crash after commit, before ack");
          }
        },
      }),
  } satisfies EventBus & { finished: number };
  return wrapped;
}
