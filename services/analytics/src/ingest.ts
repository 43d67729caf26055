// The live path: durable JetStream consumers (one for payment's subjects, one for each other
// subject), each event applied once (the runtime's inbox, keyed by its subject) in the
// statement or transaction that adds its figures.
import { EventEmitter } from "node:events";
import { consumeEventBatches, type DeliveredMessage, type EventBus, type ServiceContext } from "@ttip/runtime";
import { addsAnything, type Applied, consumerName, factsOf, READERS, type Reader } from "./facts.js";
import { liveBatchCtes, RollupBatch } from "./store.js";

/**
 * Replays take this lock for their whole run, so no batch lands mid-rebuild; every live batch takes it
 * too, exclusively, to its end (in its inbox statement, before its rows): batches of every consumer and
 * replica write the rollups one at a time, so a batch adds to the rows that exist by a plain UPDATE
 * (store.ts, liveSql) without two batches ever waiting on each other's rows in two orders. They were
 * nearly serial already: every tip's batch updates the platform's hour and day rows, held to commit.
 */
export const REBUILD_LOCK = "ttip.analytics.rebuild";

/** Signals after each applied event (in this process), so live dashboards refresh at once. */
export const rollupChanges = new EventEmitter();
rollupChanges.setMaxListeners(0);

/**
 * A durable's batches begin at most one per this long: after a batch, its consumer waits out the
 * rest of the interval before it takes the next, so what arrives meanwhile is applied together.
 * Rows a batch shares (the platform's hour and day, a busy worker's hour) are written once a batch,
 * and each statement has its fixed cost: at a few hundred events a second, batches of ~5 tips
 * became ~40. The cost is staleness: figures show up to this much later (plus a batch's own time),
 * which dashboards refreshed by a person do not notice. Under load, when a batch takes longer than
 * this, nothing waits.
 */
export const BATCH_INTERVAL_MS = 200;

/**
 * The bus as consumeEventBatches uses it, each durable's batches paced (BATCH_INTERVAL_MS). The
 * wait comes after a batch is applied (its messages acknowledged after it, well within the ack
 * wait), so the batch it holds back is the next one, which grows meanwhile.
 */
function pacedBatches(bus: EventBus, intervalMs: number): EventBus {
  const subscribeBatches = bus.subscribeBatches?.bind(bus);
  if (!subscribeBatches || !(intervalMs > 0)) return bus;
  return {
    publish: (m) => bus.publish(m),
    subscribe: (o) => bus.subscribe(o),
    subscribeBatches: (o) =>
      subscribeBatches({
        ...o,
        handler: async (messages) => {
          const began = performance.now();
          await o.handler(messages);
          const rest = began + intervalMs - performance.now();
          if (rest > 0) await new Promise((r) => setTimeout(r, rest));
        },
      }),
    close: () => bus.close(),
  };
}

/**
 * `readers`: READERS; a test gives the layout of before (a durable each subject) to take over from.
 * `batchIntervalMs`: BATCH_INTERVAL_MS; 0 takes each batch as soon as the last is applied.
 */
export async function startConsumers(
  ctx: ServiceContext,
  readers: readonly Reader[] = READERS,
  { batchIntervalMs = BATCH_INTERVAL_MS }: { batchIntervalMs?: number } = {},
): Promise<() => Promise<void>> {
  const bus = pacedBatches(ctx.bus, batchIntervalMs);
  const ingested = ctx.metrics.counterFamily("ttip_analytics_events_ingested_total", "Events analytics added to its rollups, by subject.", ["subject"]);
  const lag = ctx.metrics.histogram(
    "ttip_analytics_event_lag_seconds",
    "From an event happening to its figures in the rollups (how stale dashboards are).",
    [],
    [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600],
  );
  const subs: { stop(): Promise<void> }[] = [];
  for (const reader of readers) {
    // Each event is decoded once: changesState (which every event delivered passes) keeps its
    // figures for handleBatch, which gets the same messages. Held weakly: a message the bus has
    // let go of (acknowledged, or one that changes nothing) takes its figures with it.
    const figures = new WeakMap<DeliveredMessage, Applied>();
    const figuresOf = (m: DeliveredMessage) => figures.get(m) ?? factsOf(m.subject, m.data);
    subs.push(
      await consumeEventBatches({
        bus,
        pool: ctx.pool,
        schema: "analytics",
        consumer: reader.durable,
        subject: reader.filter,
        // Each event keyed by its subject, as when every subject had a durable of its own: one the
        // durables taken over applied (or an older replica still applies) is found, not counted again.
        inboxKey: (m) => consumerName(m.subject),
        replaces: reader.replaces,
        logger: ctx.logger,
        metrics: ctx.metrics,
        maxBatch: 500,
        exclusiveLock: REBUILD_LOCK,
        // An event that adds nothing (a notification update the figures do not read, a payment event
        // they do not count) is acknowledged without an inbox row.
        changesState: (m) => {
          const applied = factsOf(m.subject, m.data);
          figures.set(m, applied);
          return addsAnything(applied);
        },
        // A batch's figures are summed first: the platform's row of the hour, which every
        // tip touches, is written once per batch, not once per event. In the inbox's own
        // statement (one round trip, no BEGIN or COMMIT) while every month it writes has its
        // partition; otherwise in a transaction whose last statement carries its COMMIT.
        effectCte: (messages, first) => liveBatchCtes(messages.map((m) => ({ id: m.id, applied: figuresOf(m) })), first),
        handleBatch: async (messages, tx) => {
          const batch = new RollupBatch();
          for (const m of messages) batch.add(figuresOf(m));
          await batch.write(tx, { endsTransaction: true });
        },
        // Counted once committed: a batch rolled back (say, its commit failed) and applied again counts once.
        afterCommit: (messages) => {
          countBySubject(messages, (subject, n) => ingested.inc({ subject }, n));
          const now = Date.now();
          for (const m of messages) {
            const at = figuresOf(m).at;
            if (at && at.getTime() > 0) lag.observe(Math.max(0, now - at.getTime()) / 1000);
          }
          setImmediate(() => rollupChanges.emit("change"));
        },
      }),
    );
  }
  return async () => {
    for (const s of subs) await s.stop();
  };
}

/** A batch's events counted per subject: one label lookup a subject, not one an event. */
function countBySubject(messages: DeliveredMessage[], count: (subject: string, n: number) => void): void {
  const counts = new Map<string, number>();
  for (const m of messages) counts.set(m.subject, (counts.get(m.subject) ?? 0) + 1);
  for (const [subject, n] of counts) count(subject, n);
}
