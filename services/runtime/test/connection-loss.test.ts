// A PostgreSQL restart or failover ends sessions in every state: opening,
// idle in the pool, checked out mid-statement, in migrate(). The process must
// ride it out (an 'error' event with no listener would kill it) and the next
// call must get a live connection. Sessions are ended with
// pg_terminate_backend, which sends what a restart sends (FATAL 57P01).
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { createPool, migrate, withTransaction } from "../src/db.js";
import { createTestDatabase, eventually, type TestDatabase } from "../src/testing/index.js";

let db: TestDatabase;
before(async () => {
  db = await createTestDatabase();
});
after(() => db.drop());

/** Ends the sessions named `applicationName` once one of them is in `state` (e.g. 'idle', 'active'). */
async function terminate(applicationName: string, state: string): Promise<void> {
  await eventually(`a session of ${applicationName} ${state}`, async () => {
    const { rows } = await db.pool.query(
      "SELECT pg_terminate_backend(pid) AS ended FROM pg_stat_activity WHERE application_name = $1 AND state = $2",
      [applicationName, state],
    );
    return rows.length > 0 && rows.every((r) => r.ended);
  }, { timeoutMs: 10_000, everyMs: 20 });
}

/**
 * A proxy to the test database that holds back the server's bytes on the
 * first connection until the server closes it, then writes them at once: the
 * client reads the end of its startup (ReadyForQuery) and the FATAL of a
 * restart in one chunk, as a busy process does when PostgreSQL shuts down just
 * as a connection opens. Later connections pass straight through.
 */
async function heldFirstConnection(): Promise<{ url: string; close: () => Promise<void> }> {
  const target = new URL(db.url);
  const sockets = new Set<net.Socket>();
  let first = true;
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(target.port), target.hostname);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on("error", () => undefined);
      s.on("close", () => sockets.delete(s));
    }
    client.pipe(upstream);
    client.on("close", () => upstream.destroy());
    if (!first) {
      upstream.pipe(client);
      return;
    }
    first = false;
    const held: Buffer[] = [];
    upstream.on("data", (chunk: Buffer) => held.push(chunk));
    upstream.on("end", () => client.end(Buffer.concat(held)));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const url = new URL(db.url);
  url.port = String((server.address() as net.AddressInfo).port);
  return {
    url: url.toString(),
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

test("a session ended as it opens (ReadyForQuery and FATAL read together): the process survives, the next call succeeds", async () => {
  const proxy = await heldFirstConnection();
  const pool = createPool(proxy.url, { max: 1, applicationName: "ttip-ends-as-it-opens" });
  try {
    const first = pool.query("SELECT 1 AS one").then(
      () => "answered",
      (err: Error) => err.message,
    );
    await terminate("ttip-ends-as-it-opens", "idle");
    assert.match(await first, /connection|terminat/i, "the call on the ended session fails");
    const { rows } = await pool.query<{ one: number }>("SELECT 1 AS one");
    assert.deepEqual(rows, [{ one: 1 }], "the next call gets a new session");
  } finally {
    await pool.end();
    await proxy.close();
  }
});

test("a session ended mid-statement: the statement fails, the call queued behind it gets a new session", async () => {
  const pool = createPool(db.url, { max: 1, applicationName: "ttip-ended-mid-statement" });
  try {
    const sleeping = pool.query("SELECT pg_sleep(30)").then(
      () => assert.fail("the statement of an ended session answered"),
      (err: Error) => err,
    );
    const queued = pool.query<{ one: number }>("SELECT 1 AS one");
    await terminate("ttip-ended-mid-statement", "active");
    assert.match((await sleeping).message, /terminating connection/);
    assert.deepEqual((await queued).rows, [{ one: 1 }], "not given the ended session");
  } finally {
    await pool.end();
  }
});

test("a transaction's session ended mid-statement: it fails, the transaction queued behind it gets a new session", async () => {
  const pool = createPool(db.url, { max: 1, applicationName: "ttip-tx-ended" });
  try {
    const sleeping = withTransaction(pool, (tx) => tx.query("SELECT pg_sleep(30)")).then(
      () => assert.fail("the transaction of an ended session committed"),
      (err: Error) => err,
    );
    const queued = withTransaction(pool, async (tx) => (await tx.query<{ one: number }>("SELECT $1::int AS one", [1])).rows);
    await terminate("ttip-tx-ended", "active");
    assert.match((await sleeping).message, /terminating connection/);
    assert.deepEqual(await queued, [{ one: 1 }], "not given the ended session");
  } finally {
    await pool.end();
  }
});

test("migrate()'s session ended mid-migration: migrate fails, the process survives, the pool serves the next call", async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), "ttip-migrations-"));
  await writeFile(path.join(dir, "0001_slow.sql"), "SELECT pg_sleep(30);");
  const pool = createPool(db.url, { max: 1, applicationName: "ttip-migrate-ended" });
  try {
    const migrating = migrate(pool, "ended_mid_migration", dir).then(
      () => assert.fail("the migration of an ended session applied"),
      (err: Error) => err,
    );
    await eventually("the slow migration running", async () => {
      const { rows } = await db.pool.query("SELECT 1 FROM pg_stat_activity WHERE application_name = $1 AND query LIKE '%pg_sleep(30)%'", ["ttip-migrate-ended"]);
      return rows.length > 0;
    }, { timeoutMs: 10_000, everyMs: 20 });
    await terminate("ttip-migrate-ended", "active");
    assert.match((await migrating).message, /0001_slow failed/);
    const { rows } = await pool.query<{ one: number }>("SELECT 1 AS one");
    assert.deepEqual(rows, [{ one: 1 }]);
  } finally {
    await pool.end();
    await rm(dir, { recursive: true, force: true });
  }
});
