// A small tips table for the benches of the database client (bench/pg-describe.ts,
// bench/pg-statement-writes.ts): 14 columns of the kinds a tip's row has (uuids, text, int8, int4,
// timestamptz, a NULL), and the named statement that reads one row of it by id.
import type { Pool } from "@ttip/runtime";

/** One tip's row by id: 14 columns. */
export const READ_TIP = `SELECT tip_id, worker_id, venue_id, qr_code_id, status, amount_minor, fee_minor, currency, rating,
    message, mpesa_receipt, result_code, created_at, completed_at FROM tips WHERE tip_id = $1`;

/** Creates the table with `rows` tips in it; answers their ids. */
export async function createTipsTable(pool: Pool, rows: number): Promise<string[]> {
  await pool.query(`CREATE TABLE tips (tip_id uuid PRIMARY KEY DEFAULT gen_random_uuid(), worker_id uuid NOT NULL, venue_id uuid NOT NULL,
    qr_code_id uuid NOT NULL, status text NOT NULL, amount_minor int8 NOT NULL, fee_minor int8 NOT NULL, currency text NOT NULL,
    rating int4, message text, mpesa_receipt text, result_code text, created_at timestamptz NOT NULL DEFAULT now(), completed_at timestamptz)`);
  const inserted = await pool.query<{ tip_id: string }>(
    `INSERT INTO tips (worker_id, venue_id, qr_code_id, status, amount_minor, fee_minor, currency, rating, message, mpesa_receipt, completed_at)
     SELECT gen_random_uuid(), gen_random_uuid(), gen_random_uuid(), 'succeeded', 50000, 1000, 'KES', 5, 'asante sana', 'TLK3A9XY2Z', now()
     FROM generate_series(1, $1::int) RETURNING tip_id`,
    [rows],
  );
  return inserted.rows.map((r) => r.tip_id);
}
