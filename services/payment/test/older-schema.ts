// The payment schema as it was before a migration: a test writes rows the way older code did, then migrates the rest.
import { copyFile, mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { migrate, type Pool } from "@ttip/runtime";

export const PAYMENT_MIGRATIONS = fileURLToPath(new URL("../migrations", import.meta.url));

/** Applies the payment migrations numbered below `before` ("0019"), and no later one. */
export async function migrateBefore(pool: Pool, before: string): Promise<void> {
  const older = await mkdtemp(path.join(tmpdir(), "payment-migrations-"));
  try {
    for (const name of (await readdir(PAYMENT_MIGRATIONS)).filter((n) => /^\d{4}_.*\.sql$/.test(n) && n < before)) {
      await copyFile(path.join(PAYMENT_MIGRATIONS, name), path.join(older, name));
    }
    await migrate(pool, "payment", older);
  } finally {
    await rm(older, { recursive: true, force: true });
  }
}
