// What a service's PostgreSQL pool size costs on these 2-core machines: the same M-Pesa tips
// (CreateTip -> STK push to the Daraja simulator -> its callback -> SUCCEEDED, the wallet entry
// posted) through wallet and payment served on pools of each size (one pool for the two, as a
// cluster's service holds DATABASE_POOL_MAX connections), all on one durable PostgreSQL in this
// process, in alternated rounds so that the machine's load meets every size alike. Per size
// (medians of the rounds): tips/s, CreateTip-to-SUCCEEDED p50/p99, PostgreSQL's CPU per tip (its
// server processes, /proc) and their context switches per tip, this process's CPU per tip, and the
// connections the pool opened. More connections than PostgreSQL's cores let more statements run at
// once, each switching away more often; fewer queue in the pool instead.
//   node --max-semi-space-size=32 --import tsx bench/pool-sizes.ts [seconds per size and round=4] [rounds=4] [concurrency=16] [sizes=3,5,10]
import { readFileSync } from "node:fs";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { startDarajaSimulator } from "@ttip/payment/testing";
import { createPool } from "@ttip/runtime";
import { startPostgres } from "@ttip/runtime/testing";
import { closedLoop } from "./load.js";
import { mpesaTipper, startWalletAndPayment } from "./payment-config.js";
import { childrenCpuMs } from "./process-cpu.js";

const seconds = Number(process.argv[2] ?? 4);
const rounds = Number(process.argv[3] ?? 4);
const concurrency = Number(process.argv[4] ?? 16);
const sizes = (process.argv[5] ?? "3,5,10").split(",").map(Number);

/** Context switches (voluntary and not) of each live child of `parent`, by pid. */
function childrenSwitches(parent: number): Map<number, number> {
  const out = new Map<number, number>();
  for (const pid of childrenCpuMs(parent).keys()) {
    try {
      const status = readFileSync(`/proc/${pid}/status`, "utf8");
      const n = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+)$`, "m").exec(status)?.[1] ?? 0);
      out.set(pid, n("voluntary_ctxt_switches") + n("nonvoluntary_ctxt_switches"));
    } catch {
      // exited meanwhile
    }
  }
  return out;
}

/** What the live processes added between two readings (a process started between them counts whole). */
const grown = (before: Map<number, number>, after: Map<number, number>) => [...after].reduce((n, [pid, v]) => n + v - (before.get(pid) ?? 0), 0);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** One round of one pool size: per tip unless named otherwise. */
type Round = { perSecond: number; p50: number; p99: number; pgMs: number; switches: number; ownMs: number };
type Setup = { size: number; pool: ReturnType<typeof createPool>; services: { close(): Promise<void> }; tip: () => Promise<void>; runs: Round[] };

const pg = await startPostgres({ durable: true });
const sim = await startDarajaSimulator({ callbackDelayMs: 0 });
const setups: Setup[] = [];
for (const size of sizes) {
  const pool = createPool(pg.url, { max: size, applicationName: `pool-${size}` });
  const services = await startWalletAndPayment(pool, sim);
  const client = createClient(PaymentService, createGrpcTransport({ baseUrl: services.paymentUrl }));
  setups.push({ size, pool, services, tip: mpesaTipper(client), runs: [] });
}

try {
  // Warm: V8 compiles the hot paths and each pool opens its connections.
  for (const s of setups) await closedLoop(concurrency, seconds, s.tip);
  for (let round = 0; round < rounds; round++) {
    // Each round starts with the next size, so none always follows the same one.
    for (let i = 0; i < setups.length; i++) {
      const s = setups[(round + i) % setups.length];
      const cpu0 = childrenCpuMs(pg.pid);
      const sw0 = childrenSwitches(pg.pid);
      const own0 = process.cpuUsage();
      const r = await closedLoop(concurrency, seconds, s.tip);
      const own = process.cpuUsage(own0);
      const tips = Math.max(1, r.calls);
      s.runs.push({
        perSecond: r.perSecond,
        p50: r.percentile(0.5),
        p99: r.percentile(0.99),
        pgMs: grown(cpu0, childrenCpuMs(pg.pid)) / tips,
        switches: grown(sw0, childrenSwitches(pg.pid)) / tips,
        ownMs: (own.user + own.system) / 1000 / tips,
      });
    }
  }
  const base = setups[setups.length - 1];
  const m = (s: Setup, k: keyof Round) => median(s.runs.map((r) => r[k]));
  console.log(`M-Pesa tips through wallet and payment, concurrency ${concurrency}, ${rounds} alternated rounds of ${seconds} s per pool size (medians); load average ${readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ")}`);
  for (const s of setups) {
    console.log(
      `  pool ${String(s.size).padStart(2)}: ${m(s, "perSecond").toFixed(0).padStart(4)} tips/s (${(m(s, "perSecond") / m(base, "perSecond")).toFixed(2)}x pool ${base.size})` +
        `  p50 ${m(s, "p50").toFixed(1)} ms p99 ${m(s, "p99").toFixed(1)} ms` +
        `  PostgreSQL CPU ${m(s, "pgMs").toFixed(2)} ms/tip (${(m(s, "pgMs") / m(base, "pgMs")).toFixed(2)}x), its context switches ${m(s, "switches").toFixed(1)}/tip` +
        `  this process ${m(s, "ownMs").toFixed(2)} ms/tip  connections opened ${s.pool.totalCount}` +
        `  (tips/s by round: ${s.runs.map((r) => r.perSecond.toFixed(0)).join(", ")})`,
    );
  }
} finally {
  for (const s of setups) {
    await s.services.close();
    await s.pool.end();
  }
  await sim.close();
  await pg.stop();
}
