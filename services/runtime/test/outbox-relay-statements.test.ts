// What a relay pass costs PostgreSQL: its claim and its mark are prepared statements
// with fixed texts, planned once per connection (the generic plan) whatever the batch's
// size, and a batch is two round trips (BEGIN with the claim, the mark with COMMIT).
// A published row is deleted, unless the database keeps them (KEEP_PUBLISHED).
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, test } from "node:test";
import type { BusMessage, EventBus } from "../src/bus.js";
import { createPool, migrate, withTransaction, type Pool } from "../src/db.js";
import { KEEP_PUBLISHED, OutboxRelay, publishedRowsStatement, writeOutbox } from "../src/outbox.js";
import { captureLogger, countWrites, createTestDatabase, eventually, keptPlans, type TestDatabase } from "../src/testing/index.js";

const { logger } = captureLogger("silent");
let db: TestDatabase;
before(async () => {
  db = await createTestDatabase();
  await migrate(db.pool, "payment", undefined);
});
after(() => db.drop());

/** A pool of one connection (every pass prepares on, and plans in, the same session), with KEEP_PUBLISHED as given. */
async function poolKeeping(keep: "on" | "off"): Promise<Pool> {
  await db.pool.query(`ALTER DATABASE ${new URL(db.url).pathname.slice(1)} SET ${KEEP_PUBLISHED} = ${keep}`);
  return createPool(db.url, { max: 1 });
}

/** Writes batches of 1 to 7 rows and relays each: what was published, in order, and how many passes. */
async function relayBatches(pool: Pool, passes: number): Promise<{ written: string[]; published: string[] }> {
  const published: string[] = [];
  const bus = { publish: async (m: BusMessage) => void published.push(m.id) } as unknown as EventBus;
  const relay = new OutboxRelay({ pool, schema: "payment", bus, logger, batchSize: 50 });
  const written: string[] = [];
  const client = await pool.connect();
  const counter = countWrites(client);
  client.release();
  try {
    for (let pass = 0; pass < passes; pass++) {
      // A text with the batch in it would be a new statement for each size.
      for (let i = 0; i <= pass % 7; i++) {
        const id = randomUUID();
        written.push(id);
        await writeOutbox(pool, "payment", { id, subject: "ttip.payment.x", data: new Uint8Array([i]) });
      }
      const before = counter.writes();
      assert.equal(await relay.flush(), (pass % 7) + 1);
      // The first pass reads KEEP_PUBLISHED once, in its transaction.
      assert.equal(counter.writes() - before, pass === 0 ? 3 : 2, `pass ${pass}: BEGIN with the claim, the mark with COMMIT`);
    }
  } finally {
    counter.stop();
  }
  return { written, published };
}

/** The relay's prepared statements on the pool's one connection, with their plans. */
async function relayStatements(pool: Pool) {
  const { rows } = await pool.query<{ statement: string; generic_plans: bigint; custom_plans: bigint }>(
    "SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements WHERE statement LIKE '%outbox%' AND statement NOT LIKE 'INSERT%' AND statement NOT LIKE '%current_setting%'",
  );
  return rows;
}

test("the relay deletes what it published; its claim and delete are prepared once and planned once per connection, in two round trips per batch, whatever the batch's size", async () => {
  const pool = await poolKeeping("off");
  try {
    const passes = 16;
    const { written, published } = await relayBatches(pool, passes);
    assert.deepEqual(published, written, "every row published once, in order");
    const left = await pool.query<{ n: number }>("SELECT count(*)::int AS n FROM payment.outbox");
    assert.equal(left.rows[0].n, 0, "published rows are deleted");
    // Idle: the next looks only ask whether there is anything.
    const idle = new OutboxRelay({ pool, schema: "payment", bus: {} as EventBus, logger });
    for (let i = 0; i < 3; i++) assert.equal(await idle.flush(), 0);
    const rows = await relayStatements(pool);
    const claim = rows.find((r) => r.statement.startsWith("SELECT seq"));
    const mark = rows.find((r) => r.statement.startsWith("DELETE"));
    const probe = rows.find((r) => r.statement.startsWith("SELECT 1"));
    assert.ok(claim && mark && probe && rows.length === 3, `claim, delete and idle probe prepared, one text each: ${rows.map((r) => r.statement).join(" | ")}`);
    // The idle relay claimed once before it only asked.
    for (const [r, calls] of [[claim, passes + 1], [mark, passes], [probe, 2]] as const) {
      // PostgreSQL plans the first five calls for their values, then keeps the generic plan if it costs no more.
      assert.ok(r.custom_plans <= 5n && Number(r.generic_plans + r.custom_plans) === calls, `${r.statement}: ${r.generic_plans} generic, ${r.custom_plans} custom plans`);
    }
  } finally {
    await pool.end();
  }
});

test(`with ${KEEP_PUBLISHED} on, published rows stay, marked published`, async () => {
  const pool = await poolKeeping("on");
  try {
    await pool.query("DELETE FROM payment.outbox");
    const { written, published } = await relayBatches(pool, 3);
    assert.deepEqual(published, written);
    const { rows } = await pool.query<{ event_id: string; published: boolean; attempts: number }>(
      "SELECT event_id, published_at IS NOT NULL AS published, attempts FROM payment.outbox ORDER BY seq",
    );
    assert.deepEqual(rows, written.map((id) => ({ event_id: id, published: true, attempts: 1 })));
    assert.ok((await relayStatements(pool)).some((r) => r.statement.startsWith("UPDATE")), "the mark is an UPDATE");
  } finally {
    await pool.end();
  }
});

test("an event's row costs PostgreSQL three WAL records: the row, seq's index and the unpublished rows' index", async () => {
  const events = 100;
  const { rows } = await db.pool.query(
    `EXPLAIN (ANALYZE, WAL, FORMAT JSON) INSERT INTO payment.outbox (event_id, subject, payload)
       SELECT gen_random_uuid(), 'ttip.payment.x', convert_to(repeat('x', 300), 'UTF8') FROM generate_series(1, $1::int)`,
    [events],
  );
  const records = Number(rows[0]["QUERY PLAN"][0].Plan["WAL Records"]);
  // A few more for new pages; a fourth index (event_id's, before) would make it 4 per row.
  assert.ok(records >= 3 * events && records < 3.5 * events, `${records} WAL records for ${events} rows`);
  await db.pool.query("DELETE FROM payment.outbox");
});

test("a database that deletes published rows, migrated, keeps one index of the outbox: an event's row costs two WAL records, and the claim reads the primary key; switched to keeping them, its relay makes the index again", async () => {
  const name = new URL(db.url).pathname.slice(1);
  const indexed = async (pool: Pool) => (await pool.query<{ present: boolean }>("SELECT to_regclass('wallet.outbox_unpublished') IS NOT NULL AS present")).rows[0].present;
  await db.pool.query(`ALTER DATABASE ${name} SET ${KEEP_PUBLISHED} = off`);
  const deleting = createPool(db.url, { max: 2 });
  try {
    await migrate(deleting, "wallet", undefined);
    assert.equal(await indexed(deleting), false, "outbox_unpublished dropped (it held what outbox_pkey holds)");
    const events = 100;
    const { rows } = await deleting.query(
      `EXPLAIN (ANALYZE, WAL, FORMAT JSON) INSERT INTO wallet.outbox (event_id, subject, payload)
         SELECT gen_random_uuid(), 'ttip.wallet.x', convert_to(repeat('x', 300), 'UTF8') FROM generate_series(1, $1::int)`,
      [events],
    );
    const records = Number(rows[0]["QUERY PLAN"][0].Plan["WAL Records"]);
    assert.ok(records >= 2 * events && records < 2.5 * events, `${records} WAL records for ${events} rows (three with the second index)`);
    // The claim as a connection keeps it (a generic plan), on a table grown past its statistics.
    await deleting.query("ANALYZE wallet.outbox");
    await deleting.query(`INSERT INTO wallet.outbox (event_id, subject, payload) SELECT gen_random_uuid(), 'ttip.wallet.x', '\\x00' FROM generate_series(1, 5000)`);
    const relay = new OutboxRelay({ pool: deleting, schema: "wallet", bus: {} as EventBus, logger });
    const { claim } = (relay as unknown as { statements: { claim: string } }).statements;
    const plans = await keptPlans(deleting, new Set(["outbox"]), (q) => q.query(claim, [100, "ttip.outbox_relay.wallet"]));
    assert.deepEqual(plans[0].reads.map((r) => [r["Node Type"], r["Index Name"]]), [["Index Scan", "outbox_pkey"]], "the claim reads the primary key in order, no table scan");
    await deleting.query("DELETE FROM wallet.outbox");
  } finally {
    await deleting.end();
  }
  await db.pool.query(`ALTER DATABASE ${name} SET ${KEEP_PUBLISHED} = on`);
  const keeping = createPool(db.url, { max: 2 });
  try {
    const published: string[] = [];
    const bus = { publish: async (m: BusMessage) => void published.push(m.id) } as unknown as EventBus;
    const relay = new OutboxRelay({ pool: keeping, schema: "wallet", bus, logger });
    const id = randomUUID();
    await writeOutbox(keeping, "wallet", { id, subject: "ttip.wallet.x", data: new Uint8Array([1]) });
    assert.equal(await relay.flush(), 1);
    const valid = () => keeping.query<{ valid: boolean }>("SELECT indisvalid AS valid FROM pg_index WHERE indexrelid = to_regclass('wallet.outbox_unpublished')").then((r) => r.rows[0]?.valid);
    await eventually("the relay made outbox_unpublished again, valid", valid);
    await relay.stop();
    assert.deepEqual(published, [id]);
    assert.equal(await indexed(keeping), true);
  } finally {
    await keeping.end();
  }
});

test("a database that keeps published rows, whose index of unpublished ones an interrupted build left invalid: its relay makes it again, valid", async () => {
  const keeping = await poolKeeping("on");
  try {
    await migrate(keeping, "notification", undefined);
    // What a concurrent build stopped part way leaves: an index of that name that no plan reads.
    await keeping.query("DROP INDEX notification.outbox_unpublished");
    for (const id of [randomUUID(), randomUUID()]) await writeOutbox(keeping, "notification", { id, subject: "ttip.notification.same", data: new Uint8Array([1]) });
    await assert.rejects(keeping.query("CREATE UNIQUE INDEX CONCURRENTLY outbox_unpublished ON notification.outbox (subject) WHERE published_at IS NULL"), /could not create unique index/);
    const validity = async () => (await keeping.query<{ valid: boolean }>("SELECT indisvalid AS valid FROM pg_index WHERE indexrelid = 'notification.outbox_unpublished'::regclass")).rows;
    assert.deepEqual(await validity(), [{ valid: false }], "the failed build's index is there, invalid");
    const bus = { publish: async () => undefined } as unknown as EventBus;
    const relay = new OutboxRelay({ pool: keeping, schema: "notification", bus, logger });
    assert.equal(await relay.flush(), 2);
    await eventually("made again (an invalid index taken for made is never made)", async () => (await validity())[0]?.valid);
    await relay.stop();
    const { rows } = await keeping.query<{ def: string }>("SELECT pg_get_indexdef('notification.outbox_unpublished'::regclass) AS def");
    assert.match(rows[0].def, /\(seq\) WHERE \(published_at IS NULL\)$/, "the relay's index, not the failed one");
  } finally {
    await keeping.end();
  }
});

test("the relay's delete (or mark) commits without waiting for the WAL flush, in its own transaction only", async () => {
  // The test server commits asynchronously everywhere; this database does not, as a durable one.
  await db.pool.query(`ALTER DATABASE ${new URL(db.url).pathname.slice(1)} SET synchronous_commit = on`);
  const pool = createPool(db.url, { max: 1 });
  try {
    for (const keep of [false, true]) {
      const ids = [randomUUID(), randomUUID()];
      for (const id of ids) await writeOutbox(pool, "payment", { id, subject: "ttip.payment.x", data: new Uint8Array([1]) });
      const seqs = (await pool.query<{ seq: bigint }>("SELECT seq FROM payment.outbox WHERE published_at IS NULL ORDER BY seq")).rows.map((r) => r.seq);
      const inside = await withTransaction(pool, async (tx) => {
        const before = (await tx.query<{ s: string }>("SELECT current_setting('synchronous_commit') AS s")).rows[0].s;
        const { rowCount } = await tx.query(publishedRowsStatement("payment", keep), [seqs]);
        const after = (await tx.query<{ s: string }>("SELECT current_setting('synchronous_commit') AS s")).rows[0].s;
        return { before, rowCount, after };
      });
      assert.deepEqual(inside, { before: "on", rowCount: 2, after: "off" }, `keep ${keep}`);
      const left = await pool.query<{ n: number; s: string }>("SELECT count(*)::int AS n, current_setting('synchronous_commit') AS s FROM payment.outbox WHERE published_at IS NULL");
      assert.deepEqual(left.rows[0], { n: 0, s: "on" }, "the rows are gone (or marked); the session's setting is back");
    }
  } finally {
    await pool.end();
  }
});

test("a database that kept published rows and was switched to deleting them: its relay deletes those rows too, in batches, beside publishing", async () => {
  const name = new URL(db.url).pathname.slice(1);
  await db.pool.query(`ALTER DATABASE ${name} SET ${KEEP_PUBLISHED} = on`);
  await migrate(db.pool, "analytics", undefined);
  // Published while kept: more than two of the relay's delete batches (1,000 each).
  const kept = 2_345;
  await db.pool.query(
    `INSERT INTO analytics.outbox (event_id, subject, payload, published_at, attempts)
       SELECT gen_random_uuid(), 'ttip.analytics.x', '\\x00', now(), 1 FROM generate_series(1, $1::int)`,
    [kept],
  );
  await db.pool.query(`ALTER DATABASE ${name} SET ${KEEP_PUBLISHED} = off`);
  const deleting = createPool(db.url, { max: 3 });
  try {
    const published: string[] = [];
    const bus = { publish: async (m: BusMessage) => void published.push(m.id) } as unknown as EventBus;
    const relay = new OutboxRelay({ pool: deleting, schema: "analytics", bus, logger });
    const id = randomUUID();
    await writeOutbox(deleting, "analytics", { id, subject: "ttip.analytics.x", data: new Uint8Array([1]) });
    assert.equal(await relay.flush(), 1);
    const left = () => deleting.query<{ n: number }>("SELECT count(*)::int AS n FROM analytics.outbox").then((r) => r.rows[0].n);
    await eventually("the rows published while kept are deleted", async () => (await left()) === 0);
    await relay.stop();
    assert.deepEqual(published, [id], "those rows are not published again");
    // Published from now on: deleted as the relay publishes them, as before.
    const next = new OutboxRelay({ pool: deleting, schema: "analytics", bus, logger });
    await writeOutbox(deleting, "analytics", { id: randomUUID(), subject: "ttip.analytics.x", data: new Uint8Array([2]) });
    assert.equal(await next.flush(), 1);
    await next.stop();
    assert.equal(await left(), 0);
  } finally {
    await deleting.end();
    await db.pool.query(`ALTER DATABASE ${name} SET ${KEEP_PUBLISHED} = on`);
  }
});

test("rows kept from before, deleted beside another replica's delete: a batch it shortened does not end the deleting; every such row goes", async () => {
  const name = new URL(db.url).pathname.slice(1);
  await db.pool.query(`ALTER DATABASE ${name} SET ${KEEP_PUBLISHED} = on`);
  await migrate(db.pool, "auth", undefined);
  const kept = 2_345;
  await db.pool.query(
    `INSERT INTO auth.outbox (event_id, subject, payload, published_at, attempts)
       SELECT gen_random_uuid(), 'ttip.auth.x', '\\x00', now(), 1 FROM generate_series(1, $1::int)`,
    [kept],
  );
  await db.pool.query(`ALTER DATABASE ${name} SET ${KEEP_PUBLISHED} = off`);
  const deleting = createPool(db.url, { max: 3 });
  const other = await db.pool.connect();
  const log = captureLogger("info");
  try {
    // Another replica's delete of some of the first batch's rows, under way: the relay's batch waits for it, then finds them gone.
    await other.query("BEGIN");
    await other.query("DELETE FROM auth.outbox WHERE seq IN (SELECT seq FROM auth.outbox ORDER BY seq LIMIT 10)");
    const bus = { publish: async () => undefined } as unknown as EventBus;
    const relay = new OutboxRelay({ pool: deleting, schema: "auth", bus, logger: log.logger });
    await writeOutbox(deleting, "auth", { id: randomUUID(), subject: "ttip.auth.x", data: new Uint8Array([1]) });
    assert.equal(await relay.flush(), 1);
    const waiting = () =>
      db.pool
        .query<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%DELETE FROM \"auth\".outbox%'")
        .then((r) => r.rows[0].n);
    await eventually("the relay's first batch waits for the other delete", async () => (await waiting()) === 1);
    await other.query("COMMIT");
    const done = () => log.records().find((r) => r.msg === "published rows kept from before deleted");
    await eventually("the relay's deleting ended", done);
    const { rows } = await deleting.query<{ n: number }>("SELECT count(*)::int AS n FROM auth.outbox");
    assert.equal(rows[0].n, 0, `rows kept from before left: ${JSON.stringify(done())}`);
    await relay.stop();
  } finally {
    await other.query("ROLLBACK").catch(() => undefined);
    other.release();
    await deleting.end();
    await db.pool.query(`ALTER DATABASE ${name} SET ${KEEP_PUBLISHED} = on`);
  }
});

test("a relay stopped while it makes the index of unpublished rows stops without waiting for the build (which waits for older transactions); the next start makes it", async () => {
  await poolKeeping("on").then((one) => one.end());
  // Three connections: the build's, the test's, and the one stop() cancels the build through.
  const keeping = createPool(db.url, { max: 3 });
  const blocker = await db.pool.connect();
  // The progress view is the server's, and every test database copied from one template has the same relids: this database's only.
  const building = () => keeping.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_progress_create_index WHERE datid = (SELECT oid FROM pg_database WHERE datname = current_database()) AND relid = 'venue.outbox'::regclass").then((r) => r.rows[0].n);
  const validity = async () => (await keeping.query<{ valid: boolean }>("SELECT indisvalid AS valid FROM pg_index WHERE indexrelid = to_regclass('venue.outbox_unpublished')")).rows;
  const bus = { publish: async () => undefined } as unknown as EventBus;
  try {
    await migrate(keeping, "venue", undefined);
    await keeping.query("DROP INDEX venue.outbox_unpublished");
    await writeOutbox(keeping, "venue", { id: randomUUID(), subject: "ttip.venue.x", data: new Uint8Array([1]) });
    // An open transaction that wrote to the outbox: a concurrent build waits for it to end.
    await blocker.query("BEGIN");
    await blocker.query("INSERT INTO venue.outbox (event_id, subject, payload) VALUES (gen_random_uuid(), 'ttip.venue.x', '\\x00')");
    const relay = new OutboxRelay({ pool: keeping, schema: "venue", bus, logger });
    assert.equal(await relay.flush(), 1);
    await eventually("the relay's build waits for the open transaction", async () => (await building()) === 1);
    await relay.stop(); // would wait for the open transaction, which ends only below
    // The build's backend sends its error before its abort clears the progress view: a moment later, not at once.
    await eventually("the build cancelled", async () => (await building()) === 0);
    assert.deepEqual(await validity(), [{ valid: false }], "an interrupted build's index, invalid");
    await blocker.query("ROLLBACK");
    const next = new OutboxRelay({ pool: keeping, schema: "venue", bus, logger });
    await writeOutbox(keeping, "venue", { id: randomUUID(), subject: "ttip.venue.x", data: new Uint8Array([2]) });
    assert.equal(await next.flush(), 1);
    await eventually("the next start makes it, valid", async () => (await validity())[0]?.valid);
    await next.stop();
  } finally {
    await blocker.query("ROLLBACK").catch(() => undefined);
    blocker.release();
    await keeping.end();
  }
});

test("a stop whose cancel of the index build is sent after the build ended cancels nothing else: the build's session is not used again, it ends", async () => {
  await poolKeeping("on").then((one) => one.end());
  const keeping = createPool(db.url, { max: 3 });
  const blocker = await db.pool.connect();
  /** The sessions (backend pids) taken from the pool, in order. */
  const taken: number[] = [];
  keeping.on("acquire", (client) => void taken.push((client as unknown as { processID: number }).processID));
  // stop()'s cancel is held until the test lets it go: as if it waited for a connection, under load.
  let asked!: () => void;
  const cancelAsked = new Promise<void>((resolve) => (asked = resolve));
  let letGo!: () => void;
  const gate = new Promise<void>((resolve) => (letGo = resolve));
  const query = keeping.query.bind(keeping) as (text: unknown, values?: unknown) => Promise<unknown>;
  (keeping as unknown as { query: typeof query }).query = (text, values) =>
    typeof text === "string" && text.includes("pg_cancel_backend") ? (asked(), gate.then(() => query(text, values))) : query(text, values);
  const validity = async () => (await db.pool.query<{ valid: boolean }>("SELECT indisvalid AS valid FROM pg_index WHERE indexrelid = to_regclass('qr.outbox_unpublished')")).rows;
  const bus = { publish: async () => undefined } as unknown as EventBus;
  try {
    await migrate(keeping, "qr", undefined);
    await keeping.query("DROP INDEX qr.outbox_unpublished");
    await writeOutbox(keeping, "qr", { id: randomUUID(), subject: "ttip.qr.x", data: new Uint8Array([1]) });
    // An open transaction that wrote to the outbox: the concurrent build waits for it to end.
    await blocker.query("BEGIN");
    await blocker.query("INSERT INTO qr.outbox (event_id, subject, payload) VALUES (gen_random_uuid(), 'ttip.qr.x', '\\x00')");
    const relay = new OutboxRelay({ pool: keeping, schema: "qr", bus, logger });
    assert.equal(await relay.flush(), 1);
    const builder = await eventually("the relay's build waits for the open transaction", async () =>
      (await db.pool.query<{ pid: number }>("SELECT pid FROM pg_stat_progress_create_index WHERE datid = (SELECT oid FROM pg_database WHERE datname = current_database()) AND relid = 'qr.outbox'::regclass")).rows[0]?.pid,
    );
    const stopping = relay.stop();
    await cancelAsked;
    const since = taken.length;
    const takenAgain = () => taken.slice(since).includes(builder);
    // The build ends before the cancel is sent.
    await blocker.query("ROLLBACK");
    await eventually("the build ended, its index valid", async () => (await validity())[0]?.valid);
    // Other callers' statements on the pool's connections while the cancel is held.
    for (let i = 0; i < 20 && !takenAgain(); i++) await Promise.all([keeping.query("SELECT 1"), keeping.query("SELECT 1"), keeping.query("SELECT 1")]);
    letGo();
    await stopping;
    assert.equal(takenAgain(), false, "the build's session was taken again before stop's cancel was sent: a statement run on it then would be cancelled");
    await eventually("the build's session ended", async () => (await db.pool.query("SELECT 1 FROM pg_stat_activity WHERE pid = $1", [builder])).rowCount === 0);
    assert.deepEqual(await validity(), [{ valid: true }]);
  } finally {
    letGo();
    await blocker.query("ROLLBACK").catch(() => undefined);
    blocker.release();
    await keeping.end();
  }
});

test("a stop during the index build on a pool of one connection (embedded mode's): its cancel is sent once the build lets the connection go, not given up at the pool's connect timeout while the build waits for it", async () => {
  const one = await poolKeeping("on");
  const blocker = await db.pool.connect();
  const bus = { publish: async () => undefined } as unknown as EventBus;
  let stopped = false;
  /** What became of stop()'s cancel: "sent", or its error. */
  let cancel: string | undefined;
  const query = one.query.bind(one) as (text: unknown, values?: unknown) => Promise<unknown>;
  (one as unknown as { query: typeof query }).query = (text, values) =>
    typeof text === "string" && text.includes("pg_cancel_backend")
      ? query(text, values).then((r) => ((cancel = "sent"), r), (err: Error) => ((cancel = err.message), Promise.reject(err)))
      : query(text, values);
  try {
    await migrate(one, "qr", undefined);
    await one.query("DROP INDEX IF EXISTS qr.outbox_unpublished");
    await writeOutbox(one, "qr", { id: randomUUID(), subject: "ttip.qr.x", data: new Uint8Array([1]) });
    await blocker.query("BEGIN");
    await blocker.query("INSERT INTO qr.outbox (event_id, subject, payload) VALUES (gen_random_uuid(), 'ttip.qr.x', '\\x00')");
    const relay = new OutboxRelay({ pool: one, schema: "qr", bus, logger });
    assert.equal(await relay.flush(), 1);
    await eventually("the relay's build waits for the open transaction", async () =>
      (await db.pool.query("SELECT 1 FROM pg_stat_progress_create_index WHERE datid = (SELECT oid FROM pg_database WHERE datname = current_database()) AND relid = 'qr.outbox'::regclass")).rowCount! > 0);
    const stopping = relay.stop().then(() => (stopped = true));
    // The cancel waits for the pool's one connection, which the build holds.
    await eventually("stop's cancel waiting for a connection", () => one.waitingCount > 0);
    await blocker.query("ROLLBACK");
    await eventually("the relay stopped after its build ended", () => stopped);
    await stopping;
    assert.equal(cancel, "sent", "stop's cancel waited for the connection the build held, which waited for the cancel");
    await eventually("the build's lock let go", async () =>
      (await db.pool.query("SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())")).rowCount === 0);
  } finally {
    await blocker.query("ROLLBACK").catch(() => undefined);
    blocker.release();
    // A stop that never ended holds the pool's connection: ending the pool would wait for it too.
    if (stopped) await one.end();
    else void one.end();
  }
});

test("a stop that comes while the index build is between its drop of the invalid index and its create does not wait for the create: none is started", async () => {
  const keeping = await poolKeeping("on");
  await keeping.end();
  const pool = createPool(db.url, { max: 3 });
  const blocker = await db.pool.connect();
  const schema = "outbox_build_stop";
  // The build's drop of the invalid index holds its answer until the test lets it go.
  let dropped!: () => void;
  const droppedOnce = new Promise<void>((resolve) => (dropped = resolve));
  let letGo!: () => void;
  const gate = new Promise<void>((resolve) => (letGo = resolve));
  pool.on("acquire", (client) => {
    const c = client as unknown as { query: (text: unknown, values?: unknown) => Promise<unknown>; held?: true };
    if (c.held) return;
    c.held = true;
    const query = c.query.bind(client);
    c.query = (text, values) =>
      typeof text === "string" && text.startsWith("DROP INDEX CONCURRENTLY") ? query(text, values).then(async (r) => (dropped(), await gate, r)) : query(text, values);
  });
  let cancelSent = false;
  const poolQuery = pool.query.bind(pool) as (text: unknown, values?: unknown) => Promise<unknown>;
  (pool as unknown as { query: typeof poolQuery }).query = (text, values) =>
    typeof text === "string" && text.includes("pg_cancel_backend") ? poolQuery(text, values).finally(() => (cancelSent = true)) : poolQuery(text, values);
  const building = () => db.pool.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_progress_create_index WHERE datid = (SELECT oid FROM pg_database WHERE datname = current_database()) AND relid = $1::regclass", [`${schema}.outbox`]).then((r) => r.rows[0].n);
  const index = () => db.pool.query<{ valid: boolean }>("SELECT indisvalid AS valid FROM pg_index WHERE indexrelid = to_regclass($1)", [`${schema}.outbox_unpublished`]).then((r) => r.rows);
  const bus = { publish: async () => undefined } as unknown as EventBus;
  let stopped = false;
  try {
    await migrate(pool, schema, undefined);
    // An interrupted build's invalid index, which the relay drops before making it again.
    await pool.query(`DROP INDEX ${schema}.outbox_unpublished`);
    for (const id of [randomUUID(), randomUUID()]) await writeOutbox(pool, schema, { id, subject: "ttip.x.same", data: new Uint8Array([1]) });
    await assert.rejects(pool.query(`CREATE UNIQUE INDEX CONCURRENTLY outbox_unpublished ON ${schema}.outbox (subject) WHERE published_at IS NULL`), /could not create unique index/);
    const relay = new OutboxRelay({ pool, schema, bus, logger });
    assert.equal(await relay.flush(), 2);
    await droppedOnce;
    // An open transaction that wrote to the outbox: a create started now would wait for it to end.
    await blocker.query("BEGIN");
    await blocker.query(`INSERT INTO ${schema}.outbox (event_id, subject, payload) VALUES (gen_random_uuid(), 'ttip.x.y', '\\x00')`);
    const stopping = relay.stop().then(() => (stopped = true));
    // Its cancel reaches a session between two statements, where PostgreSQL drops a cancel.
    await eventually("stop's cancel sent", () => cancelSent);
    letGo();
    await eventually("the relay stopped while the open transaction is still open", () => stopped);
    await stopping;
    assert.equal(await building(), 0, "no build was started after the stop");
    assert.deepEqual(await index(), [], "the invalid index dropped, none made: the next start makes it");
    await blocker.query("ROLLBACK");
    const next = new OutboxRelay({ pool, schema, bus, logger });
    await writeOutbox(pool, schema, { id: randomUUID(), subject: "ttip.x.y", data: new Uint8Array([2]) });
    assert.equal(await next.flush(), 1);
    await eventually("the next start makes it, valid", async () => (await index())[0]?.valid);
    await next.stop();
  } finally {
    letGo();
    await blocker.query("ROLLBACK").catch(() => undefined);
    blocker.release();
    if (stopped) await pool.end();
    else void pool.end();
  }
});
