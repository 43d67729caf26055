import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import pg from "pg";
import { InProcessBus } from "../src/bus.js";
import { createPool, migrate } from "../src/db.js";
import { startEmbeddedPostgres } from "../src/embedded.js";
import { OutboxRelay, writeOutbox } from "../src/outbox.js";
import { captureLogger, eventually, initializedPgliteFolder } from "../src/testing/index.js";

const { logger } = captureLogger("silent");

test("embedded Postgres makes its data folder (a fresh clone has none) and keeps data across restarts", async () => {
  const root = await mkdtemp(path.join(os.tmpdir(), "ttip-pglite-"));
  const dataDir = path.join(root, ".data", "pglite");
  try {
    const query = async (sql: string) => {
      const postgres = await startEmbeddedPostgres(dataDir);
      const client = new pg.Client({ connectionString: postgres.url });
      await client.connect();
      try {
        return (await client.query(sql)).rows;
      } finally {
        await client.end();
        await postgres.close();
      }
    };
    await query("CREATE TABLE kept (n int); INSERT INTO kept VALUES (42)");
    assert.deepEqual(await query("SELECT n FROM kept"), [{ n: 42 }]);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});

test("embedded Postgres relays the outbox (BEGIN with the claim, the mark with COMMIT) on its one connection", async () => {
  // Already through PGlite's initdb (4 s of CPU): the first start is the test above's.
  const data = await initializedPgliteFolder();
  const postgres = await startEmbeddedPostgres(data.dir);
  const pool = createPool(postgres.url, { max: 1, preparedStatements: false });
  const bus = new InProcessBus(logger, 50);
  try {
    await migrate(pool, "relayed", undefined);
    const events = ["a", "b", "c"].map((n) => ({ id: randomUUID(), subject: `ttip.relayed.${n}`, data: new Uint8Array([n.charCodeAt(0)]) }));
    for (const e of events) await writeOutbox(pool, "relayed", e);
    const seen: string[] = [];
    const sub = await bus.subscribe({ durable: "seen", subject: "ttip.relayed.>", handler: async (m) => void seen.push(m.id) });
    const relay = new OutboxRelay({ pool, schema: "relayed", bus, logger, batchSize: 2 });
    assert.equal(await relay.flush(), 2);
    assert.equal(await relay.flush(), 1);
    assert.equal(await relay.flush(), 0);
    const { rows } = await pool.query<{ n: number }>("SELECT count(*)::int AS n FROM relayed.outbox WHERE published_at IS NULL");
    assert.equal(rows[0].n, 0);
    await eventually("all three delivered in order", () => seen.length === 3);
    assert.deepEqual(seen, events.map((e) => e.id));
    await sub.stop();
  } finally {
    await bus.close();
    await pool.end();
    await postgres.close();
    data.remove();
  }
});
