// Accounts as the handlers read them; the ledger's own reads and writes (ensureAccount, getAccount,
// postings) live in ledger.ts.
import { AccountKind, OwnerKind } from "@ttip/proto/ttip/wallet/v1/wallet_pb.js";
import type { Queryable } from "@ttip/runtime";
import { ACCOUNT_COLUMNS, type AccountRow } from "../ledger.js";

/** The worker's wallets, one per currency (or the one in `currency`). */
export async function workerWallets(db: Queryable, workerId: string, currency: string): Promise<AccountRow[]> {
  const { rows } = await db.query<AccountRow>(
    `SELECT ${ACCOUNT_COLUMNS} FROM wallet.accounts WHERE kind = $1 AND owner_kind = $2 AND owner_id = $3 AND ($4 = '' OR currency = $4) ORDER BY currency`,
    [AccountKind.WORKER_WALLET, OwnerKind.WORKER, workerId, currency],
  );
  return rows;
}

/** Up to `limit` accounts after `afterId` ("" = from the start), by id; kind 0 and owner "" match all. */
export async function accountsPage(db: Queryable, kind: number, ownerId: string, afterId: string, limit: number): Promise<AccountRow[]> {
  const { rows } = await db.query<AccountRow>(
    `SELECT ${ACCOUNT_COLUMNS} FROM wallet.accounts
      WHERE ($1 = 0 OR kind = $1) AND ($2 = '' OR owner_id = $2) AND ($3 = '' OR account_id > $3::uuid)
      ORDER BY account_id LIMIT $4`,
    [kind, ownerId, afterId, limit],
  );
  return rows;
}
