// End-to-end M-Pesa tips per second against a real PostgreSQL (durable):
// CreateTip over gRPC -> STK push to the Daraja simulator -> its callback to
// the payment service's HTTP endpoint -> tip SUCCEEDED (the wallet entry is
// posted right after; the closing line checks every tip got one). The simulator
// answers at once (callback delay 0), so the figure is our own cost.
//   node --import tsx bench/payment-tips.ts [seconds=5] [concurrency=8,32]
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { startDarajaSimulator } from "@ttip/payment/testing";
import { createPool } from "@ttip/runtime";
import { startPostgres } from "@ttip/runtime/testing";
import { closedLoop, percentiles } from "./load.js";
import { mpesaTipper, startWalletAndPayment } from "./payment-config.js";

const seconds = Number(process.argv[2] ?? 5);
const concurrencies = (process.argv[3] ?? "8,32").split(",").map(Number);

const pg = await startPostgres({ durable: true });
const pool = createPool(pg.url, { max: 80 });
const sim = await startDarajaSimulator({ callbackDelayMs: 0 });
const services = await startWalletAndPayment(pool, sim);
const client = createClient(PaymentService, createGrpcTransport({ baseUrl: services.paymentUrl }));

try {
  const oneTip = mpesaTipper(client);
  for (const concurrency of concurrencies) {
    const r = await closedLoop(concurrency, seconds, oneTip);
    console.log(
      `concurrency ${String(concurrency).padStart(3)}: ${r.perSecond.toFixed(0).padStart(4)} tips/s (CreateTip until WatchTip says SUCCEEDED)` +
        `  ${percentiles(r)}  (${r.calls} tips)`,
    );
  }
  // Credits of the last tips may still be in flight.
  for (let i = 0; i < 50 && (await pool.query("SELECT 1 FROM payment.tips WHERE credit_entry_id IS NULL LIMIT 1")).rowCount; i++) {
    await new Promise((r) => setTimeout(r, 100));
  }
  const { rows } = await pool.query(
    `SELECT (SELECT count(*) FROM payment.tips WHERE status = 'succeeded') AS succeeded,
            (SELECT count(*) FROM payment.tips WHERE credit_entry_id IS NULL) AS uncredited,
            (SELECT count(*) FROM wallet.entries) AS entries`,
  );
  console.log(`tips succeeded ${rows[0].succeeded}, not yet credited ${rows[0].uncredited}, wallet entries ${rows[0].entries}`);
} finally {
  await services.close();
  await sim.close();
  await pool.end();
  await pg.stop();
}
