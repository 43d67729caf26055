// A card tip's net is credited in the wallet's currency: migration 0003 moves the nets the version
// before kept in the tip currency's rows (a USD row holding KES) to the KES rows of the same key.
import assert from "node:assert/strict";
import { copyFile, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, describe, test } from "node:test";
import { migrate } from "@ttip/runtime";
import { createTestDatabase, type TestDatabase } from "@ttip/runtime/testing";

const MIGRATIONS = fileURLToPath(new URL("../migrations", import.meta.url));
const NIL = "00000000-0000-0000-0000-000000000000";
const KES_WALLET = "11111111-1111-4111-8111-111111111111";
const USD_WALLET = "22222222-2222-4222-8222-222222222222";

describe("migration 0003: card tips' nets move to their wallet currency's rows (real PostgreSQL)", () => {
  let db: TestDatabase;
  let before2: string;

  before(async () => {
    db = await createTestDatabase();
    // The schema as the version before left it: its migrations up to 0002.
    before2 = await mkdtemp(path.join(tmpdir(), "analytics-migrations-"));
    for (const f of ["0001_analytics.sql", "0002_rollups_update_room.sql"]) await copyFile(path.join(MIGRATIONS, f), path.join(before2, f));
    await migrate(db.pool, "analytics", before2);
    await db.pool.query(`CREATE TABLE analytics.rollups_202611 PARTITION OF analytics.rollups FOR VALUES FROM ('2026-11-01Z') TO ('2026-12-01Z')`);
  });
  after(async () => {
    if (before2) await rm(before2, { recursive: true, force: true });
    await db?.drop();
  });

  test("a foreign row's KES net joins the KES row (made where there was none), a net in the tip's own currency stays, nothing else changes", async () => {
    const row = (dim: number, id: string, grain: string, method: string, currency: string, tips: number, amount: number, fee: number, net: number) =>
      db.pool.query(
        `INSERT INTO analytics.rollups (dim, id, sub, grain, bucket, method, result_code, currency, succeeded, amount_minor, fee_minor, net_minor)
         VALUES ($1, $2, $3, $4, '2026-11-15T09:00:00Z', $5, '0', $6, $7, $8, $9, $10)`,
        [dim, id, NIL, grain, method, currency, tips, amount, fee, net],
      );
    // As the version before wrote them: a USD 12.34 card tip credited KES 1,500 to a KES wallet, in the USD row.
    await row(2, KES_WALLET, "h", "card", "USD", 1, 12_34, 62, 1_500_00);
    await row(2, KES_WALLET, "h", "card", "KES", 1, 400_00, 12_00, 388_00);
    await row(2, KES_WALLET, "h", "mpesa", "KES", 1, 500_00, 15_00, 485_00);
    // A worker whose only wallet is USD: the net is USD, where it belongs.
    await row(2, USD_WALLET, "h", "card", "USD", 1, 10_00, 50, 9_50);
    // The platform's day: a EUR and a USD tip credited in KES, both to the one KES row (no card KES row yet).
    await row(1, NIL, "d", "card", "USD", 1, 12_34, 62, 1_500_00);
    await row(1, NIL, "d", "card", "EUR", 1, 10_00, 50, 1_400_00);
    await migrate(db.pool, "analytics", MIGRATIONS);

    const { rows } = await db.pool.query<{ k: string }>(
      `SELECT concat_ws(' ', dim, grain, method, currency, succeeded, amount_minor, fee_minor, net_minor) AS k FROM analytics.rollups
        ORDER BY dim, id, method, currency`,
    );
    assert.deepEqual(rows.map((r) => r.k), [
      "1 d card EUR 1 1000 50 0",
      "1 d card KES 0 0 0 290000",
      "1 d card USD 1 1234 62 0",
      "2 h card KES 1 40000 1200 188800",
      "2 h card USD 1 1234 62 0",
      "2 h mpesa KES 1 50000 1500 48500",
      "2 h card USD 1 1000 50 950",
    ]);
  });
});
