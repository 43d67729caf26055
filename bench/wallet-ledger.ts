// The wallet benches' ledger: a durable PostgreSQL (fsync and synchronous commit on) with
// pg_stat_statements, wallet's schema, the platform's clearing and fee accounts and 200
// workers' wallets, and a tip's credit as payment posts one.
import { randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { AccountKind, EntryCauseSchema, OwnerKind } from "@ttip/proto/ttip/wallet/v1/wallet_pb.js";
import { createPool, migrate } from "@ttip/runtime";
import { startPostgres } from "@ttip/runtime/testing";
import { wallet } from "@ttip/wallet";
import { ensureAccount, type EntryInput } from "../services/wallet/src/ledger.js";

const WORKER_WALLETS = 200;

export async function startWalletLedger(poolSize: number) {
  const pg = await startPostgres({ durable: true, statementStats: true });
  const pool = createPool(pg.url, { max: poolSize });
  const stop = async () => {
    await pool.end();
    await pg.stop();
  };
  try {
    await migrate(pool, "wallet", wallet.migrations);
    await pool.query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements");
    const clearing = (await ensureAccount(pool, AccountKind.MPESA_CLEARING, OwnerKind.PLATFORM, "", "KES")).account_id;
    const fees = (await ensureAccount(pool, AccountKind.PLATFORM_FEES, OwnerKind.PLATFORM, "", "KES")).account_id;
    const workers: string[] = [];
    for (let i = 0; i < WORKER_WALLETS; i++) workers.push((await ensureAccount(pool, AccountKind.WORKER_WALLET, OwnerKind.WORKER, randomUUID(), "KES")).account_id);
    /** A KES 150 tip's credit to `worker`: 143 to the worker, 7 in fees. */
    const tipInput = (worker: string): EntryInput => ({
      idempotencyKey: `mpesa:${randomUUID()}`,
      cause: create(EntryCauseSchema, { cause: { case: "mpesaReceipt", value: randomUUID().slice(0, 10) } }),
      postings: [
        { accountId: clearing, amountMinor: -15_000n, currency: "KES" },
        { accountId: worker, amountMinor: 14_300n, currency: "KES" },
        { accountId: fees, amountMinor: 700n, currency: "KES" },
      ],
      description: "Tip by M-Pesa",
    });
    const randomWorker = () => workers[Math.floor(Math.random() * workers.length)];
    return {
      pool,
      workers,
      tipInput,
      randomWorker,
      /** PostgreSQL's CPU: the postmaster with its backends (/proc), for cpuMs. */
      postgres: new Map([["postgres", pg.pid]]),
      withBackends: new Set(["postgres"]),
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
