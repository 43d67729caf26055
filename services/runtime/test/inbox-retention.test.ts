// InboxRetention on PostgreSQL and JetStream: inbox rows go only once the stream can no longer
// deliver their events again (its max age plus a margin), in bounded batches, and never when the
// stream has no max age.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { connect } from "nats";
import { InProcessBus, JetStreamBus } from "../src/bus.js";
import { migrate } from "../src/db.js";
import { InboxRetention } from "../src/inbox-retention.js";
import { Metrics } from "../src/metrics.js";
import { consumeEventBatches } from "../src/outbox.js";
import { captureLogger, createTestDatabase, eventually, testEnv, uniqueName, type TestDatabase } from "../src/testing/index.js";

const { logger } = captureLogger("silent");
const HOUR_MS = 3_600_000;

describe("InboxRetention (PostgreSQL, JetStream)", () => {
  let db: TestDatabase;
  /** A stream that keeps messages one hour: with the default 24 h margin, rows older than 25 h go. */
  let bus: JetStreamBus;
  let stream: string;
  let prefix: string;
  before(async () => {
    db = await createTestDatabase();
    await migrate(db.pool, "retention", undefined);
    stream = uniqueName("R").toUpperCase();
    prefix = uniqueName("ev");
    bus = await JetStreamBus.connect({ servers: testEnv().natsUrl, stream, subjectPrefix: prefix, logger, redeliveryDelayMs: 50, limits: { maxAgeMs: HOUR_MS } });
  });
  after(async () => {
    await bus.close();
    await db.drop();
  });

  /** Inbox rows of `consumer` applied `hoursAgo` hours ago; answers their ids. */
  const applied = async (consumer: string, n: number, hoursAgo: number): Promise<string[]> => {
    const ids = Array.from({ length: n }, () => randomUUID());
    await db.pool.query(
      "INSERT INTO retention.inbox (consumer, event_id, subject, processed_at) SELECT $1, unnest($2::uuid[]), 'ttip.x.y', now() - make_interval(secs => $3)",
      [consumer, ids, hoursAgo * 3600],
    );
    return ids;
  };
  const held = async (consumer: string): Promise<string[]> =>
    (await db.pool.query<{ event_id: string }>("SELECT event_id FROM retention.inbox WHERE consumer = $1 ORDER BY event_id", [consumer])).rows.map((r) => r.event_id);

  test("the bus reports the stream's max age as the server has it, also to a process that set none", async () => {
    assert.equal(await bus.storedMaxAgeMs(), HOUR_MS);
    const other = await JetStreamBus.connect({ servers: testEnv().natsUrl, stream, subjectPrefix: prefix, logger });
    try {
      assert.equal(await other.storedMaxAgeMs(), HOUR_MS, "an existing stream's max age is kept and read");
    } finally {
      await other.close();
    }
  });

  test("rows older than the max age plus the margin go; newer ones stay, whatever their consumer", async () => {
    const old = [...(await applied("a", 5, 25.1)), ...(await applied("b", 3, 200))];
    const kept = [...(await applied("a", 4, 24.9)), ...(await applied("a", 2, 2)), ...(await applied("b", 1, 0))];
    const metrics = new Metrics();
    const retention = new InboxRetention({ pool: db.pool, schema: "retention", bus, logger, metrics });
    assert.equal(await retention.sweep(), old.length);
    const left = [...(await held("a")), ...(await held("b"))].sort();
    assert.deepEqual(left, [...kept].sort());
    assert.match(await metrics.registry.metrics(), new RegExp(`ttip_inbox_pruned_total\\{service="retention"\\} ${old.length}\\b`));
    assert.equal(await retention.sweep(), 0, "nothing more to delete");
    // A smaller margin moves the window: the rows 24.9 h old go as well, the younger stay.
    assert.equal(await new InboxRetention({ pool: db.pool, schema: "retention", bus, logger, marginMs: 20 * HOUR_MS }).sweep(), 4);
    assert.equal((await held("a")).length, 2);
    await db.pool.query("DELETE FROM retention.inbox");
  });

  test("each statement deletes at most batchSize rows, each sweep at most maxBatchesPerSweep statements", async () => {
    const old = await applied("c", 10, 48);
    const young = await applied("c", 2, 1);
    const retention = new InboxRetention({ pool: db.pool, schema: "retention", bus, logger, batchSize: 3, maxBatchesPerSweep: 1 });
    assert.equal(await retention.sweep(), 3, "one statement, three rows");
    const twice = new InboxRetention({ pool: db.pool, schema: "retention", bus, logger, batchSize: 3, maxBatchesPerSweep: 2 });
    assert.equal(await twice.sweep(), 6, "two statements of three");
    assert.equal(await twice.sweep(), 1, "the last one, then a short batch ends the sweep");
    assert.deepEqual(await held("c"), [...young].sort());
    assert.equal(old.length, 10);
    // A replica sweeping at the same time skips the rows another holds instead of waiting for them.
    await applied("c", 4, 48);
    const other = await db.pool.connect();
    try {
      await other.query("BEGIN");
      const locked = await other.query("SELECT ctid FROM retention.inbox WHERE consumer = 'c' AND processed_at < now() - interval '30 hours' LIMIT 2 FOR UPDATE");
      assert.equal(locked.rowCount, 2);
      assert.equal(await new InboxRetention({ pool: db.pool, schema: "retention", bus, logger }).sweep(), 2, "the two rows not locked");
      await other.query("ROLLBACK");
    } finally {
      other.release();
    }
    assert.equal(await new InboxRetention({ pool: db.pool, schema: "retention", bus, logger }).sweep(), 2);
    await db.pool.query("DELETE FROM retention.inbox");
  });

  test("an event delivered again inside the window is still dropped as a duplicate after a sweep", async () => {
    const id = randomUUID();
    const metrics = new Metrics();
    await db.pool.query("CREATE TABLE IF NOT EXISTS retention.applied (event_id uuid NOT NULL)");
    const sub = await consumeEventBatches({
      bus, pool: db.pool, schema: "retention", consumer: "d", subject: "ttip.x.d", logger, metrics,
      effectCte: (messages, first) => ({
        sql: `applied AS (INSERT INTO retention.applied SELECT e FROM unnest($${first}::uuid[]) AS e WHERE e IN (SELECT event_id FROM fresh))`,
        values: [messages.map((m) => m.id)],
      }),
    });
    try {
      const count = async () => (await db.pool.query<{ n: number }>("SELECT count(*)::int AS n FROM retention.applied WHERE event_id = $1", [id])).rows[0].n;
      await bus.publish({ id, subject: "ttip.x.d", data: new Uint8Array([1]) });
      await eventually("the event applied", async () => (await count()) === 1, 20_000);
      // Applied 20 h ago: older than the stream's max age, inside max age plus margin.
      await db.pool.query("UPDATE retention.inbox SET processed_at = now() - interval '20 hours' WHERE event_id = $1", [id]);
      const gone = await applied("d", 3, 30);
      assert.equal(await new InboxRetention({ pool: db.pool, schema: "retention", bus, logger }).sweep(), gone.length);
      // The same id published again once the stream's duplicate window let it through (as a relay
      // does after losing its delete): stored anew and delivered, only the inbox stops it.
      await shortenDuplicateWindow(stream);
      await new Promise((r) => setTimeout(r, 300));
      await bus.publish({ id, subject: "ttip.x.d", data: new Uint8Array([1]) });
      await eventually("the copy delivered and skipped", async () => /ttip_inbox_events_total\{consumer="d",outcome="duplicate"\} 1\b/.test(await metrics.registry.metrics()), 20_000);
      assert.equal(await count(), 1, "applied once");
    } finally {
      await sub.stop();
    }
  });

  test("a stream with no max age keeps every row", async () => {
    const ancient = await applied("e", 5, 24 * 365);
    const unlimited = await JetStreamBus.connect({ servers: testEnv().natsUrl, stream: uniqueName("U").toUpperCase(), subjectPrefix: uniqueName("ev"), logger });
    try {
      assert.equal(await unlimited.storedMaxAgeMs(), undefined);
      assert.equal(await new InboxRetention({ pool: db.pool, schema: "retention", bus: unlimited, logger, marginMs: 0 }).sweep(), 0);
    } finally {
      await unlimited.close();
    }
    // The embedded platform's in-process bus keeps messages by count, never by age.
    const inProcess = new InProcessBus(logger);
    assert.equal(await new InboxRetention({ pool: db.pool, schema: "retention", bus: inProcess, logger, marginMs: 0 }).sweep(), 0);
    await inProcess.close();
    assert.deepEqual(await held("e"), [...ancient].sort());
  });

  test("the background sweep runs on its interval and stops on stop()", async () => {
    await applied("f", 2, 48);
    const retention = new InboxRetention({ pool: db.pool, schema: "retention", bus, logger, intervalMs: 50 });
    retention.start();
    await eventually("swept in the background", async () => (await held("f")).length === 0, 10_000);
    await retention.stop();
    await applied("f", 2, 48);
    await new Promise((r) => setTimeout(r, 200));
    assert.equal((await held("f")).length, 2, "a stopped sweep deletes nothing");
  });
});

/** The stream drops a re-published id for 100 ms only (the app sets 10 min), so a test can publish one again. */
async function shortenDuplicateWindow(stream: string): Promise<void> {
  const nc = await connect({ servers: testEnv().natsUrl });
  try {
    const jsm = await nc.jetstreamManager();
    const info = await jsm.streams.info(stream);
    await jsm.streams.update(stream, { ...info.config, duplicate_window: 100 * 1_000_000 });
  } finally {
    await nc.close();
  }
}
