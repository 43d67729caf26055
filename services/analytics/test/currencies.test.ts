// Which currencies a worker's, a venue's and the platform's screens and exports list
// (currenciesOf): one where a tip was paid, or money the screen shows is, never a currency
// whose only figure is another currency's card tip credited into it.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { fileURLToPath } from "node:url";
import { after, before, describe, test } from "node:test";
import { migrate } from "@ttip/runtime";
import { createTestDatabase, type TestDatabase } from "@ttip/runtime/testing";
import { Dim, NIL } from "../src/facts.js";
import { currenciesOf } from "../src/queries.js";

const MIGRATIONS = fileURLToPath(new URL("../migrations", import.meta.url));
const HOUR = "2026-10-15T09:00:00Z";
// Not whole days in Nairobi: hour rows for every dimension, the platform's too.
const RANGE = { from: new Date("2026-10-15T08:00:00Z"), to: new Date("2026-10-15T11:00:00Z") };

type Figures = Partial<Record<"succeeded" | "failed" | "amount_minor" | "net_minor" | "pooled_minor" | "payout_minor", number>>;

describe("currenciesOf: a currency where there are tips or money the screen shows (real PostgreSQL)", () => {
  let db: TestDatabase;

  before(async () => {
    db = await createTestDatabase();
    await migrate(db.pool, "analytics", MIGRATIONS);
    await db.pool.query(`CREATE TABLE analytics.rollups_202610 PARTITION OF analytics.rollups FOR VALUES FROM ('2026-10-01Z') TO ('2026-11-01Z')`);
  });
  after(() => db?.drop());

  const row = (dim: Dim, id: string, method: string, currency: string, f: Figures) => {
    const cols = Object.keys(f);
    return db.pool.query(
      `INSERT INTO analytics.rollups (dim, id, sub, grain, bucket, method, result_code, currency${cols.map((c) => `, ${c}`).join("")})
       VALUES ($1, $2, $3, 'h', $4, $5, '0', $6${cols.map((_, i) => `, $${i + 7}`).join("")})`,
      [dim, id, NIL, HOUR, method, currency, ...Object.values(f)],
    );
  };

  test("a USD card tip into a EUR wallet lists USD for the venue and the platform, USD and EUR for the worker; KES always first", async () => {
    const [eurWorker, venue, platform] = [randomUUID(), randomUUID(), randomUUID()];
    // The worker's USD 12.34 card tip (its tip currency's row: the tip, its volume, no net).
    await row(Dim.Worker, eurWorker, "card", "USD", { succeeded: 1, amount_minor: 12_34 });
    // The same tip's net, EUR 11.00 credited to the worker's EUR-only wallet: money of theirs in EUR, no tip.
    await row(Dim.Worker, eurWorker, "card", "EUR", { net_minor: 11_00 });
    // The venue's rows of that tip: the same two.
    await row(Dim.Venue, venue, "card", "USD", { succeeded: 1, amount_minor: 12_34 });
    await row(Dim.Venue, venue, "card", "EUR", { net_minor: 11_00 });
    // A GBP card tip that failed at the venue: no tip paid, no money.
    await row(Dim.Venue, venue, "card", "GBP", { failed: 1 });
    assert.deepEqual(await currenciesOf(db.pool, { dim: Dim.Worker, id: eurWorker }, RANGE), ["KES", "EUR", "USD"]);
    // The venue's screen shows tips and their volume: EUR has none (the version before listed EUR with 0 tips).
    assert.deepEqual(await currenciesOf(db.pool, { dim: Dim.Venue, id: venue }, RANGE), ["KES", "USD"]);

    // The platform (an id of its own, so other tests' rows are not in it): the same tip and net...
    await row(Dim.Platform, platform, "card", "USD", { succeeded: 1, amount_minor: 12_34 });
    await row(Dim.Platform, platform, "card", "EUR", { net_minor: 11_00 });
    // ...a pool share distributed in TZS (money the summary shows, no tip)...
    await row(Dim.Platform, platform, "pool", "TZS", { pooled_minor: 50_00 });
    // ...and a UGX payout (money paid out, no tip).
    await row(Dim.Platform, platform, "mpesa", "UGX", { payout_minor: 10_000 });
    assert.deepEqual(await currenciesOf(db.pool, { dim: Dim.Platform, id: platform }, RANGE), ["KES", "TZS", "UGX", "USD"]);
    // Outside the range: none but KES.
    assert.deepEqual(await currenciesOf(db.pool, { dim: Dim.Venue, id: venue }, { from: RANGE.to, to: new Date(RANGE.to.getTime() + 3_600_000) }), ["KES"]);
  });
});
