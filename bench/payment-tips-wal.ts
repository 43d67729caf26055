// payment's WAL per M-Pesa tip, from the WAL itself (pg_walinspect between two flushed positions,
// bench/pg-wal.ts), on a durable PostgreSQL: CreateTip over gRPC -> STK push to the Daraja
// simulator -> its callback -> SUCCEEDED -> the wallet entry recorded, `tips` of them at
// `concurrency`, after a warm-up of as many. Per tip: WAL records and bytes in all; on payment.tips
// its row-lock records (Heap LOCK), its updates (HOT or not) and the entries written into its
// indexes; wallet.accounts' row-lock records; then the records by relation and kind.
// BENCH_OTHER_TREE=<another checkout of the repo> alternates rounds of that tree's payment module
// and migrations (before) with this one's (after), each on a PostgreSQL of its own: the yardstick in
// the same run. The counts do not depend on the machine's load (CPU does; none is printed).
// Reading the row-lock records: payment.tips has BEFORE UPDATE row triggers (0025, 0029), and
// PostgreSQL locks a row before running them, so each update of a tip writes a lock record (3 a tip)
// whether or not a statement locked the row first: the group statements' FOR UPDATE only takes it
// earlier (taken as advisory locks instead, the count stayed 3.3 a tip).
//   node --import tsx bench/payment-tips-wal.ts [tips=400] [rounds=2] [concurrency=16]
import { loadavg } from "node:os";
import path from "node:path";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import * as thisTree from "@ttip/payment";
import { startDarajaSimulator } from "@ttip/payment/testing";
import { createPool } from "@ttip/runtime";
import { startPostgres } from "@ttip/runtime/testing";
import { mpesaTipper, startWalletAndPayment } from "./payment-config.js";
import { quietWalSettings, walBetween, walFlushed, type WalPart } from "./pg-wal.js";

const tips = Number(process.argv[2] ?? 400);
const rounds = Number(process.argv[3] ?? 2);
const concurrency = Number(process.argv[4] ?? 16);
type PaymentExports = typeof thisTree;
const other = process.env.BENCH_OTHER_TREE;
const variants: [string, PaymentExports][] = other
  ? [["before", (await import(path.resolve(other, "services/payment/src/index.ts"))) as PaymentExports], ["after", thisTree]]
  : [["this tree", thisTree]];

/** What one round measured, per tip. */
interface Figures {
  records: number;
  bytes: number;
  written: number;
  fpis: number;
  tipsLocks: number;
  tipsUpdates: number;
  tipsHot: number;
  tipsIndexEntries: number;
  accountLocks: number;
  byRelationKind: WalPart[];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function round(module: PaymentExports): Promise<Figures> {
  const pg = await startPostgres({ durable: true });
  const pool = createPool(pg.url, { max: 40 });
  // Checkpoints (their full-page images) and autovacuum would fall in or out of a short run at random.
  await quietWalSettings((sql, values) => pool.query(sql, values));
  const sim = await startDarajaSimulator({ callbackDelayMs: 0 });
  const services = await startWalletAndPayment(pool, sim, module.createPaymentModule);
  const client = createClient(PaymentService, createGrpcTransport({ baseUrl: services.paymentUrl }));
  const oneTip = mpesaTipper(client);
  const run = async (count: number) => {
    let left = count;
    await Promise.all(Array.from({ length: concurrency }, async () => {
      while (left-- > 0) await oneTip();
    }));
    // Until every tip's wallet entry is recorded (payment.uncredited: decided, not yet recorded).
    while ((await pool.query("SELECT 1 FROM payment.uncredited LIMIT 1")).rowCount) await sleep(50);
  };
  try {
    await run(tips);
    await pool.query("ANALYZE");
    const from = await walFlushed((s, v) => pool.query(s, v));
    await run(tips);
    const to = await walFlushed((s, v) => pool.query(s, v));
    const wal = await walBetween((s, v) => pool.query(s, v), from, to, 1_000);
    const count = (f: (p: WalPart) => boolean) => wal.byRelationKind.filter(f).reduce((s, p) => s + p.records, 0) / tips;
    const onTips = (p: WalPart) => p.name.startsWith("payment.tips ");
    const tipsIndex = (p: WalPart) => /^payment\.tips_\S+ Btree INSERT_LEAF/.test(p.name) && !p.name.startsWith("payment.tips_checkout_ids");
    return {
      records: wal.all.records / tips,
      bytes: wal.all.bytes / tips,
      written: wal.written / tips,
      fpis: wal.all.fpis / tips,
      tipsLocks: count((p) => onTips(p) && p.name.endsWith("Heap LOCK")),
      tipsUpdates: count((p) => onTips(p) && / Heap (HOT_)?UPDATE$/.test(p.name)),
      tipsHot: count((p) => onTips(p) && p.name.endsWith("Heap HOT_UPDATE")),
      tipsIndexEntries: count(tipsIndex),
      accountLocks: count((p) => p.name.startsWith("wallet.accounts ") && p.name.endsWith("Heap LOCK")),
      byRelationKind: wal.byRelationKind.sort((a, b) => b.records - a.records),
    };
  } finally {
    await services.close();
    await sim.close();
    await pool.end();
    await pg.stop();
  }
}

const f2 = (v: number) => v.toFixed(2);
const results: [string, Figures][] = [];
console.log(`${tips} tips a round after as many warming up, concurrency ${concurrency}, durable PostgreSQL; load average ${loadavg().map((l) => l.toFixed(1)).join(" ")}`);
for (let r = 0; r < rounds; r++) {
  // Alternated: before, after, after, before, ...
  for (const [name, module] of r % 2 === 0 ? variants : [...variants].reverse()) {
    const f = await round(module);
    results.push([name, f]);
    console.log(
      `${name} (round ${r + 1}): per tip ${f2(f.records)} WAL records, ${f.bytes.toFixed(0)} bytes (${f.written.toFixed(0)} written, ${f2(f.fpis)} full-page images); ` +
        `payment.tips: ${f2(f.tipsLocks)} row-lock records, ${f2(f.tipsUpdates)} updates (${f2(f.tipsHot)} HOT), ${f2(f.tipsIndexEntries)} index entries; ` +
        `wallet.accounts: ${f2(f.accountLocks)} row-lock records`,
    );
  }
}
for (const [name] of variants) {
  const last = results.filter(([n]) => n === name).at(-1)![1];
  console.log(`\n${name}, last round: WAL records per tip by relation and kind (bytes per tip)`);
  for (const p of last.byRelationKind.filter((p) => p.records / tips >= 0.05)) {
    console.log(`  ${f2(p.records / tips).padStart(6)}  ${(p.bytes / tips).toFixed(0).padStart(6)}  ${p.name}`);
  }
}
process.exit(0);
