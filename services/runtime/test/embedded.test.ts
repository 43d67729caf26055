import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import pg from "pg";
import { startEmbeddedPostgres } from "../src/embedded.js";

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
