// A tip's fee quote two ways, in one process on a real PostgreSQL: wallet's
// QuoteTipFees over gRPC (what payment asked on every CreateTip before; the
// yardstick) and payment's Ledger quoting from its copy of the fee schedules
// (what CreateTip does now for a worker whose KES wallet it knows). Prints per
// quote: this process's CPU (client and wallet's server both live here, as in
// `make run`), PostgreSQL commits and the ratio of the two.
//   node --import tsx bench/fee-quotes.ts [seconds=5] [concurrency=16]
import { randomUUID } from "node:crypto";
import { createClient } from "@connectrpc/connect";
import { AccountKind, PaymentRail } from "@ttip/proto/ttip/wallet/v1/wallet_pb.js";
import { WalletInternalService } from "@ttip/proto/ttip/wallet/v1/wallet_service_pb.js";
import { Ledger } from "../services/payment/src/ledger.js";
import { createLogger, createPeers, createPool, InProcessBus, MemoryCache, Metrics, startService } from "@ttip/runtime";
import { startPostgres } from "@ttip/runtime/testing";
import { wallet } from "@ttip/wallet";
import { closedLoop, percentiles } from "./load.js";

const seconds = Number(process.argv[2] ?? 5);
const concurrency = Number(process.argv[3] ?? 16);

const pg = await startPostgres({ durable: true });
const pool = createPool(pg.url, { max: 20 });
const logger = createLogger({ level: "silent" });
const urls = new Map<string, string>();
const peers = createPeers((name) => urls.get(name));
const ctx = { logger, pool, bus: new InProcessBus(logger), cache: new MemoryCache(), metrics: new Metrics(), peers };
const walletService = await startService(wallet, ctx);
urls.set("wallet", walletService.server.url);

try {
  const ledger = new Ledger(ctx);
  const internal = createClient(WalletInternalService, peers("wallet"));
  const workerId = randomUUID();
  await ledger.account(AccountKind.WORKER_WALLET, workerId); // its KES wallet, known to the ledger from now on
  const amount = { currency: "KES", amountMinor: 15_000n };
  const ways = {
    "wallet QuoteTipFees (before)": () => internal.quoteTipFees({ amount, rail: PaymentRail.MPESA, customerCoversFee: false, workerId }),
    "payment's copy (now)": () => ledger.quoteTip(amount.amountMinor, false),
  };
  const commits = async () => Number((await pool.query("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")).rows[0].xact_commit);
  const figures: Record<string, number> = {};
  for (const [name, quote] of Object.entries(ways)) {
    await closedLoop(concurrency, 1, quote); // warm-up
    const [cpu0, commits0] = [process.cpuUsage(), await commits()];
    const r = await closedLoop(concurrency, seconds, quote);
    const cpu = process.cpuUsage(cpu0);
    const perQuoteUs = (cpu.user + cpu.system) / r.calls;
    const commitsPerQuote = ((await commits()) - commits0 - 1) / r.calls; // less the reading statement's own
    figures[name] = perQuoteUs;
    console.log(`${name.padEnd(30)} ${r.perSecond.toFixed(0).padStart(6)} quotes/s  ${percentiles(r, 2)}  CPU ${perQuoteUs.toFixed(0)} µs/quote  PostgreSQL commits/quote ${commitsPerQuote.toFixed(2)}`);
  }
  const [before, now] = Object.values(figures);
  console.log(`CPU per quote, now / before: ${(now / before).toFixed(3)} (${((before - now) / 1000).toFixed(3)} ms saved per tip)`);
} finally {
  await walletService.close();
  peers.close();
  await pool.end();
  await pg.stop();
}
