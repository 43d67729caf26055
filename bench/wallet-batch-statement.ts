// PostEntries' batch statement (post-entries.ts postEntries) as two trees build it, on one durable
// PostgreSQL: the backend's CPU per entry (/proc), batches of tips' credits to 200 workers posted one
// after another on one connection, the two trees in alternating rounds, each batch with entries of
// its own. The other tree's statement is the yardstick.
//   BENCH_OTHER_WALLET=<another tree>/services/wallet/src/post-entries.ts node --import tsx bench/wallet-batch-statement.ts [entries a batch=8] [batches a round=200] [rounds=8]
// (a copy of another tree's post-entries.ts beside this file does too, its import of ./ledger.js pointed at this tree's.)
import { loadavg } from "node:os";
import path from "node:path";
import * as thisTree from "../services/wallet/src/post-entries.js";
import { processCpuMs } from "./process-cpu.js";
import { startWalletLedger } from "./wallet-ledger.js";

const size = Number(process.argv[2] ?? 8);
const batches = Number(process.argv[3] ?? 200);
const rounds = Number(process.argv[4] ?? 8);
const other = process.env.BENCH_OTHER_WALLET;
if (!other) throw new Error("BENCH_OTHER_WALLET=<another tree>/services/wallet/src/post-entries.ts names the yardstick");
type Tree = typeof thisTree;
const variants: [string, Tree][] = [["before", (await import(path.resolve(other))) as Tree], ["after", thisTree]];

const ledger = await startWalletLedger(1);
try {
  // The pool's one connection: every batch goes through it, each statement prepared once and run by its kept plan.
  const { rows: [{ pid }] } = await ledger.pool.query<{ pid: number }>("SELECT pg_backend_pid() AS pid");
  const batch = () => Array.from({ length: size }, () => ledger.tipInput(ledger.randomWorker()));
  const post = async (tree: Tree) => {
    const outcomes = await tree.postEntries(ledger.pool, batch());
    if (!outcomes.every((o) => "posted" in o)) throw new Error("an entry of the batch was refused");
  };
  // Warm both statements (prepared, generic plans kept) on tables analysed as a running ledger's are.
  for (let i = 0; i < 50; i++) for (const [, tree] of variants) await post(tree);
  await ledger.pool.query("ANALYZE");
  for (let i = 0; i < 20; i++) for (const [, tree] of variants) await post(tree);
  const cpu = new Map<string, number[]>();
  for (let r = 0; r < rounds; r++) {
    for (const [name, tree] of r % 2 ? [...variants].reverse() : variants) {
      const before = processCpuMs(pid);
      for (let i = 0; i < batches; i++) await post(tree);
      cpu.set(name, [...(cpu.get(name) ?? []), ((processCpuMs(pid) - before) * 1000) / batches / size]);
    }
  }
  const [b, a] = variants.map(([name]) => cpu.get(name)!);
  const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];
  console.log(`batches of ${size} entries, ${batches} a round: PostgreSQL CPU µs per entry, before ${b.map((x) => x.toFixed(0)).join(", ")}; after ${a.map((x) => x.toFixed(0)).join(", ")}`);
  console.log(`  after/before per round ${a.map((x, i) => (x / b[i]).toFixed(2)).join(", ")}; medians ${median(b).toFixed(0)} -> ${median(a).toFixed(0)} µs (${(median(a) / median(b)).toFixed(2)})`);
  console.log(`load average at the end ${loadavg().map((l) => l.toFixed(1)).join(" ")}`);
} finally {
  await ledger.stop();
}
