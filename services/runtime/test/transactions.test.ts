import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { createServer } from "node:http";
import { after, before, test } from "node:test";
import pg from "pg";
import { commitWith, createPool, migrate, onOutboxCommitted, withTransaction, withTransactionBracketed, type Pool, type PoolClient } from "../src/db.js";
import { outboxCte, writeOutbox } from "../src/outbox.js";
import { inConsumerSpan, startTracing } from "../src/tracing.js";
import { countWrites, createTestDatabase, type TestDatabase } from "../src/testing/index.js";

let db: TestDatabase;
before(async () => {
  db = await createTestDatabase();
  await db.pool.query("CREATE TABLE counters (id int PRIMARY KEY, n int NOT NULL)");
  await db.pool.query("INSERT INTO counters VALUES (1, 0), (2, 0)");
  await db.pool.query("CREATE TABLE notes (id int PRIMARY KEY, body text NOT NULL)");
  await migrate(db.pool, "announcing", undefined);
});
after(() => db.drop());

/** Runs `fn` in a transaction on a pool of one connection, counting the writes to its socket. */
async function counted<T>(pool: Pool, fn: (client: PoolClient) => Promise<T>): Promise<{ result: T; writes: number }> {
  const client = await pool.connect();
  const counter = countWrites(client);
  client.release();
  try {
    return { result: await withTransaction(pool, fn), writes: counter.writes() };
  } finally {
    counter.stop();
  }
}

/** A pool of one connection, so every transaction reuses the one before it left. */
async function withOneConnection(fn: (pool: Pool) => Promise<void>): Promise<void> {
  const pool = createPool(db.url, { max: 1 });
  try {
    await fn(pool);
    const { rows } = await pool.query<{ status: string }>("SELECT state AS status FROM pg_stat_activity WHERE pid = pg_backend_pid()");
    assert.equal(rows[0].status, "active", "the connection is out of any transaction at the end");
  } finally {
    await pool.end();
  }
}

const counter = async (id: number) => (await db.pool.query<{ n: number }>("SELECT n FROM counters WHERE id = $1", [id])).rows[0].n;

test("BEGIN travels with the first statement: one round trip fewer per transaction, none for an empty one", () =>
  withOneConnection(async (pool) => {
    const two = await counted(pool, async (tx) => {
      const { rows } = await tx.query<{ n: number }>("UPDATE counters SET n = n + $2 WHERE id = $1 RETURNING n", [2, 5]);
      const { rows: seen } = await tx.query<{ n: number }>("SELECT n FROM counters WHERE id = $1", [2]);
      return [rows[0].n, seen[0].n];
    });
    assert.deepEqual(two.result, [5, 5], "each statement's own answer, not BEGIN's");
    assert.equal(two.writes, 3, "BEGIN with the UPDATE, the SELECT, COMMIT");
    const one = await counted(pool, async (tx) => (await tx.query<{ n: number }>("SELECT n FROM counters WHERE id = $1", [2])).rows[0].n);
    assert.deepEqual(one, { result: 5, writes: 2 });
    // Without parameters (the simple protocol): BEGIN shares the statement's message.
    const simple = await counted(pool, async (tx) => (await tx.query<{ n: number }>("SELECT n FROM counters WHERE id = 2")).rows);
    assert.deepEqual(simple, { result: [{ n: 5 }], writes: 2 });
    assert.deepEqual(await counted(pool, async () => "nothing"), { result: "nothing", writes: 0 });
  }));

test("pipelinedBegin: false sends BEGIN alone", async () => {
  const pool = createPool(db.url, { max: 1, pipelinedBegin: false });
  try {
    const { result, writes } = await counted(pool, async (tx) => (await tx.query<{ n: number }>("SELECT n FROM counters WHERE id = $1", [2])).rows.length);
    assert.deepEqual({ result, writes }, { result: 1, writes: 3 });
  } finally {
    await pool.end();
  }
});

test("the first statement is inside the transaction: a rollback undoes it, whichever protocol carried it", () =>
  withOneConnection(async (pool) => {
    const before = await counter(1);
    for (const update of ["UPDATE counters SET n = n + 100 WHERE id = 1", "UPDATE counters SET n = n + $1 WHERE id = 1"]) {
      await assert.rejects(
        withTransaction(pool, async (tx) => {
          await tx.query(update, update.includes("$1") ? [100] : undefined);
          throw new Error("business rule failed");
        }),
        /business rule failed/,
      );
    }
    assert.equal(await counter(1), before);
  }));

test("an error in the first statement rolls back and leaves the connection usable", () =>
  withOneConnection(async (pool) => {
    await pool.query("INSERT INTO notes VALUES ($1, $2)", [1, "first"]);
    for (const [text, values] of [
      ["INSERT INTO notes VALUES ($1, $2)", [1, "again"]],
      ["INSERT INTO notes VALUES (1, 'again')", undefined],
    ] as const) {
      await assert.rejects(
        withTransaction(pool, async (tx) => {
          await tx.query(text, values as unknown[] | undefined);
          await tx.query("INSERT INTO notes VALUES ($1, $2)", [2, "never"]);
        }),
        (err: pg.DatabaseError) => err.code === "23505",
      );
      const { rows } = await withTransaction(pool, (tx) => tx.query<{ body: string }>("SELECT body FROM notes ORDER BY id"));
      assert.deepEqual(rows, [{ body: "first" }]);
    }
  }));

test("a first statement refused whole (a syntax error: BEGIN in its message never ran) leaves BEGIN owed: what follows is still inside the transaction", () =>
  withOneConnection(async (pool) => {
    await assert.rejects(
      withTransaction(pool, async (tx) => {
        await assert.rejects(tx.query("SELEC 1"), (err: pg.DatabaseError) => err.code === "42601");
        await tx.query("INSERT INTO notes VALUES ($1, $2)", [3, "rolled back"]).catch(() => undefined);
        throw new Error("business rule failed");
      }),
      /business rule failed/,
    );
    const { rows } = await pool.query("SELECT 1 FROM notes WHERE id = 3");
    assert.equal(rows.length, 0, "the INSERT ran in the transaction that was rolled back, not on its own");
  }));

test("a first statement that fails to prepare can be prepared again once it is valid", () =>
  withOneConnection(async (pool) => {
    await db.pool.query("CREATE TABLE late (id int PRIMARY KEY)");
    await db.pool.query("INSERT INTO late VALUES (1)");
    const text = "SELECT label FROM late WHERE id = $1";
    await assert.rejects(withTransaction(pool, (tx) => tx.query(text, [1])), (err: pg.DatabaseError) => err.code === "42703");
    await db.pool.query("ALTER TABLE late ADD COLUMN label text NOT NULL DEFAULT 'ready'");
    const { rows } = await withTransaction(pool, (tx) => tx.query<{ label: string }>(text, [1]));
    assert.deepEqual(rows, [{ label: "ready" }]);
  }));

/** withTransactionBracketed on `pool` (one connection): the writes it made and its answer. */
async function bracketed<T>(pool: Pool, opening: [string, unknown[]], closing: [string, unknown[]] | undefined, result: T): Promise<{ result: T; writes: number }> {
  const client = await pool.connect();
  const counter = countWrites(client);
  client.release();
  try {
    const answer = await withTransactionBracketed(pool, { text: opening[0], values: opening[1] }, async () => ({
      closing: closing && { text: closing[0], values: closing[1] },
      result,
    }));
    return { result: answer, writes: counter.writes() };
  } finally {
    counter.stop();
  }
}

test("a bracketed transaction is two round trips, BEGIN with its first statement and COMMIT with its last, both prepared", () =>
  withOneConnection(async (pool) => {
    await db.pool.query("UPDATE counters SET n = 0 WHERE id = 1");
    const opening: [string, unknown[]] = ["UPDATE counters SET n = n + $2 WHERE id = $1", [1, 1]];
    const closing: [string, unknown[]] = ["UPDATE counters SET n = n * $2 WHERE id = $1", [1, 10]];
    assert.deepEqual(await bracketed(pool, opening, closing, "done"), { result: "done", writes: 2 });
    assert.equal(await counter(1), 10, "both statements committed");
    // Without a closing statement: COMMIT alone.
    assert.deepEqual(await bracketed(pool, opening, undefined, 1), { result: 1, writes: 2 });
    assert.equal(await counter(1), 11);
    const { rows } = await pool.query<{ statement: string }>("SELECT statement FROM pg_prepared_statements");
    for (const [text] of [opening, closing]) assert.ok(rows.some((r) => r.statement === text), `${text} is prepared: ${rows.map((r) => r.statement).join(" | ")}`);
  }));

test("a bracketed transaction whose last statement fails commits nothing, COMMIT unsent; nor does one whose COMMIT fails", () =>
  withOneConnection(async (pool) => {
    await db.pool.query("UPDATE counters SET n = 0 WHERE id = 1");
    const opening: [string, unknown[]] = ["UPDATE counters SET n = n + $2 WHERE id = $1", [1, 1]];
    await assert.rejects(bracketed(pool, opening, ["UPDATE counters SET n = n / $2 WHERE id = $1", [1, 0]], 0), /division by zero/);
    assert.equal(await counter(1), 0, "the first statement rolled back with the last");
    // A deferred constraint fails at COMMIT, after the last statement succeeded: the answer is that failure.
    await pool.query("CREATE TEMP TABLE IF NOT EXISTS deferred_notes (id int UNIQUE DEFERRABLE INITIALLY DEFERRED)");
    await assert.rejects(
      bracketed(pool, ["INSERT INTO deferred_notes VALUES ($1)", [7]], ["INSERT INTO deferred_notes VALUES ($1)", [7]], 0),
      /duplicate key value violates unique constraint/,
    );
    assert.equal((await pool.query("SELECT count(*)::int AS n FROM deferred_notes")).rows[0].n, 0);
    // The connection goes on: the same statements again, now committed.
    assert.deepEqual(await bracketed(pool, opening, ["UPDATE counters SET n = n * $2 WHERE id = $1", [1, 3]], "ok"), { result: "ok", writes: 2 });
    assert.equal(await counter(1), 3);
  }));

test("commitWith: COMMIT travels with the transaction's last statement, one round trip fewer; nothing may follow it", () =>
  withOneConnection(async (pool) => {
    await db.pool.query("UPDATE counters SET n = 0 WHERE id IN (1, 2)");
    const two = await counted(pool, async (tx) => {
      await tx.query("UPDATE counters SET n = n + $2 WHERE id = $1", [1, 4]);
      return (await commitWith<{ n: number }>(tx, "UPDATE counters SET n = n + $2 WHERE id = $1 RETURNING n", [2, 6])).rows[0].n;
    });
    assert.deepEqual(two, { result: 6, writes: 2 }, "BEGIN with the first statement, the last with COMMIT: the statement's own answer");
    assert.deepEqual([await counter(1), await counter(2)], [4, 6], "both committed");
    // The only statement of its transaction goes alone: no BEGIN, no COMMIT.
    const one = await counted(pool, async (tx) => (await commitWith<{ n: number }>(tx, "UPDATE counters SET n = n + $2 WHERE id = $1 RETURNING n", [1, 1])).rows[0].n);
    assert.deepEqual(one, { result: 5, writes: 1 });
    // A statement after it would run outside the transaction: it fails, unsent; what committed stays.
    await assert.rejects(
      withTransaction(pool, async (tx) => {
        await tx.query("UPDATE counters SET n = n + $2 WHERE id = $1", [1, 100]);
        await commitWith(tx, "UPDATE counters SET n = n + $2 WHERE id = $1", [2, 100]);
        await tx.query("UPDATE counters SET n = n + $2 WHERE id = $1", [1, 1000]);
      }),
      /commitWith/,
    );
    assert.deepEqual([await counter(1), await counter(2)], [105, 106], "committed with the last statement, the one after it never ran");
    // On the pool (no transaction of withTransaction's) it is a statement like any other.
    assert.equal((await commitWith<{ n: number }>(pool, "SELECT n FROM counters WHERE id = $1", [2])).rows[0].n, 106);
  }));

test("commitWith: a last statement that fails commits nothing; as the only statement it leaves the connection out of any transaction", () =>
  withOneConnection(async (pool) => {
    await db.pool.query("UPDATE counters SET n = 0 WHERE id = 1");
    await assert.rejects(
      withTransaction(pool, async (tx) => {
        await tx.query("UPDATE counters SET n = n + $2 WHERE id = $1", [1, 1]);
        await commitWith(tx, "UPDATE counters SET n = n / $2 WHERE id = $1", [1, 0]);
      }),
      /division by zero/,
    );
    assert.equal(await counter(1), 0, "the first statement rolled back with the last");
    const failedAlone = await pool.connect();
    const writes = countWrites(failedAlone);
    failedAlone.release();
    await assert.rejects(withTransaction(pool, (tx) => commitWith(tx, "UPDATE counters SET n = n / $2 WHERE id = $1", [1, 0])), /division by zero/);
    assert.equal(writes.writes(), 1, "no ROLLBACK sent after a statement that ran alone");
    writes.stop();
    // The connection goes on (withOneConnection checks it is out of any transaction at the end).
    await withTransaction(pool, async (tx) => {
      await tx.query("UPDATE counters SET n = n + $2 WHERE id = $1", [1, 2]);
      await commitWith(tx, "UPDATE counters SET n = n * $2 WHERE id = $1", [1, 5]);
    });
    assert.equal(await counter(1), 10);
  }));

test("commitWith: a last statement without parameters ending in a line comment commits, and its connection goes back out of any transaction", () =>
  withOneConnection(async (pool) => {
    await db.pool.query("UPDATE counters SET n = 0 WHERE id IN (1, 2)");
    // Without parameters it goes by the simple protocol, COMMIT in the same message: a comment
    // running to the end of the text must not swallow it.
    await withTransaction(pool, async (tx) => {
      await tx.query("UPDATE counters SET n = n + $2 WHERE id = $1", [1, 3]);
      await commitWith(tx, "UPDATE counters SET n = n + 4 WHERE id = 2 -- the last of the transaction", []);
    });
    assert.deepEqual([await counter(1), await counter(2)], [3, 4], "both committed, seen from another connection");
    // The same for a bracketed transaction's closing statement.
    await bracketed(pool, ["UPDATE counters SET n = n + $2 WHERE id = $1", [1, 3]], ["UPDATE counters SET n = n + 4 WHERE id = 2 -- closing", []], "ok");
    assert.deepEqual([await counter(1), await counter(2)], [6, 8], "the bracketed transaction committed too");
    const client = await pool.connect();
    try {
      assert.equal(client.getTransactionStatus(), "I", "the connection came back out of any transaction");
    } finally {
      client.release();
    }
  }));

test("two transactions on one row: the second's first statement waits for the first's commit", async () => {
  const n0 = await counter(1);
  let release!: () => void;
  const held = new Promise<void>((r) => (release = r));
  let locked!: () => void;
  const lockTaken = new Promise<void>((r) => (locked = r));
  const first = withTransaction(db.pool, async (tx) => {
    const { rows } = await tx.query<{ n: number }>("SELECT n FROM counters WHERE id = $1 FOR UPDATE", [1]);
    locked();
    await held;
    await tx.query("UPDATE counters SET n = $2 WHERE id = $1", [1, rows[0].n + 1]);
  });
  await lockTaken;
  let secondRead: number | undefined;
  const second = withTransaction(db.pool, async (tx) => {
    const { rows } = await tx.query<{ n: number; pid: number }>("SELECT n FROM counters WHERE id = $1 FOR UPDATE", [1]);
    secondRead = rows[0].n;
    await tx.query("UPDATE counters SET n = $2 WHERE id = $1", [1, rows[0].n + 1]);
  });
  // The second waits on the first's row lock, which only a transaction still open holds.
  for (let i = 0; i < 500; i++) {
    const { rows } = await db.pool.query("SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%FOR UPDATE%'");
    if (rows.length) break;
    await new Promise((r) => setTimeout(r, 10));
  }
  assert.equal(secondRead, undefined, "the second read nothing while the first held the row");
  release();
  await Promise.all([first, second]);
  assert.equal(secondRead, n0 + 1, "the second read the first's committed write");
  assert.equal(await counter(1), n0 + 2);
  // Many read-then-write increments at once: each first statement is under its transaction's lock.
  await Promise.all(
    Array.from({ length: 20 }, () =>
      withTransaction(db.pool, async (tx) => {
        const { rows } = await tx.query<{ n: number }>("SELECT n FROM counters WHERE id = $1 FOR UPDATE", [1]);
        await tx.query("UPDATE counters SET n = $2 WHERE id = $1", [1, rows[0].n + 1]);
      }),
    ),
  );
  assert.equal(await counter(1), n0 + 22);
});

test("while tracing, the transaction's set_config still runs first: outbox rows take its trace", async () => {
  const collector = createServer((req, res) => req.resume().on("end", () => res.end("{}")));
  await new Promise<void>((r) => collector.listen(0, "127.0.0.1", r));
  const tracing = await startTracing({ endpoint: `http://127.0.0.1:${(collector.address() as { port: number }).port}`, serviceName: "test", exportDelayMs: 60_000 });
  try {
    const traceId = "4bf92f3577b34da6a3ce929d0e0e4736";
    const id = randomUUID();
    await inConsumerSpan("consume test", [`00-${traceId}-00f067aa0ba902b7-01`], () =>
      withTransaction(db.pool, (tx) => tx.query("INSERT INTO announcing.outbox (event_id, subject, payload) VALUES ($1, 'ttip.t.x', '\x01')", [id])),
    );
    const { rows } = await db.pool.query<{ traceparent: string }>("SELECT traceparent FROM announcing.outbox WHERE event_id = $1", [id]);
    assert.match(rows[0].traceparent ?? "", new RegExp(`^00-${traceId}-`));
  } finally {
    await tracing.stop();
    collector.close();
  }
});

test("onOutboxCommitted tells of outbox rows once their transaction has committed, and never of rolled back ones", async () => {
  const told: string[] = [];
  const stop = onOutboxCommitted((schema) => told.push(schema));
  try {
    const event = () => ({ id: randomUUID(), subject: "ttip.announcing.x", data: new Uint8Array([1]) });
    await withTransaction(db.pool, async (tx) => {
      await writeOutbox(tx, "announcing", event());
      await tx.query("SELECT 1");
      assert.deepEqual(told, [], "not before COMMIT");
    });
    assert.deepEqual(told, ["announcing"]);
    await assert.rejects(
      withTransaction(db.pool, async (tx) => {
        await writeOutbox(tx, "announcing", event());
        throw new Error("rolled back");
      }),
    );
    await assert.rejects(withTransaction(db.pool, async (tx) => {
      await writeOutbox(tx, "announcing", event());
      await tx.query("SELECT 1/0");
    }));
    assert.deepEqual(told, ["announcing"]);
    // One statement on its own (autocommit): told when it returns.
    const cte = outboxCte("announcing", [event()], 1);
    await db.pool.query(`WITH ${cte.sql} SELECT 1`, cte.values);
    assert.deepEqual(told, ["announcing", "announcing"]);
    // A service's own statement, the schema unquoted.
    await db.pool.query("WITH a AS (insert into announcing.outbox (event_id, subject, payload) VALUES ($1, 'ttip.announcing.x', '\\x01')) SELECT 1", [randomUUID()]);
    assert.deepEqual(told, ["announcing", "announcing", "announcing"]);
  } finally {
    stop();
  }
});
