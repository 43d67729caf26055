// The live path: durable JetStream consumers (one for payment's subjects, one for each other
// subject), each event applied once (the runtime's inbox, keyed by its subject) in the
// statement or transaction that adds its figures.
import { EventEmitter } from "node:events";
import { consumeEventBatches, type DeliveredMessage, type ServiceContext } from "@ttip/runtime";
import { addsAnything, type Applied, consumerName, factsOf, READERS, type Reader } from "./facts.js";
import { liveBatchCtes, RollupBatch } from "./store.js";

/** Replays take this lock exclusively; every live batch takes it shared (in its inbox statement), so none lands mid-rebuild. */
export const REBUILD_LOCK = "ttip.analytics.rebuild";

/** Signals after each applied event (in this process), so live dashboards refresh at once. */
export const rollupChanges = new EventEmitter();
rollupChanges.setMaxListeners(0);

/** `readers`: READERS; a test gives the layout of before (a durable each subject) to take over from. */
export async function startConsumers(ctx: ServiceContext, readers: readonly Reader[] = READERS): Promise<() => Promise<void>> {
  const ingested = ctx.metrics.counter("ttip_analytics_events_ingested_total", "Events analytics added to its rollups, by subject.", ["subject"]);
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
        bus: ctx.bus,
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
        sharedLock: REBUILD_LOCK,
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
